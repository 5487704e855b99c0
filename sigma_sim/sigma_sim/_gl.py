# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Headless OpenGL backend selection for MuJoCo offscreen rendering.

MuJoCo (and PyOpenGL) read ``MUJOCO_GL`` / ``PYOPENGL_PLATFORM`` once, when
``mujoco`` is first imported, so the choice has to be made before that import.
``sigma_sim/__init__.py`` calls :func:`select_gl_backend` first thing.

Order of preference when ``MUJOCO_GL`` is not set by the user:

1. ``egl``    (Debian packages ``libegl1`` + ``libgl1``, which pull in Mesa's
   ``libegl-mesa0`` and the llvmpipe driver ``libgl1-mesa-dri``; uses a GPU
   when the driver offers one)
2. ``osmesa`` (Debian package ``libosmesa6``; pure software)

A user-provided ``MUJOCO_GL`` is always respected. ``MUJOCO_GL=glfw`` needs a
display and is never picked automatically.
"""

from __future__ import annotations

import ctypes.util
import importlib
import importlib.util
import os
import subprocess
import sys

_PREFERENCE = ("egl", "osmesa")
_LIBRARY = {"egl": "EGL", "osmesa": "OSMesa"}


_EGL_VENDOR_DIRS = ("/usr/share/glvnd/egl_vendor.d", "/etc/glvnd/egl_vendor.d", "/usr/local/share/glvnd/egl_vendor.d")


def _egl_vendor_present() -> bool:
    """LibEGL (glvnd) only works with a vendor library (Mesa: libegl-mesa0, or NVIDIA)."""
    if os.environ.get("__EGL_VENDOR_LIBRARY_FILENAMES") or os.environ.get("__EGL_VENDOR_LIBRARY_DIRS"):
        return True
    for d in _EGL_VENDOR_DIRS:
        try:
            if any(name.endswith(".json") for name in os.listdir(d)):
                return True
        except OSError:
            continue
    return ctypes.util.find_library("EGL_mesa") is not None


def _library_present(backend: str) -> bool:
    if ctypes.util.find_library(_LIBRARY[backend]) is None:
        return False
    return backend != "egl" or _egl_vendor_present()


def select_gl_backend() -> str | None:
    """Set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) to a headless backend if unset.

    Only library presence is checked here (cheap, no subprocess); use
    :func:`probe_gl_backend` to verify that a context can actually be created.

    Returns:
        The backend now in ``MUJOCO_GL`` (``None`` if none was found).
    """
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    if "mujoco" in sys.modules:
        # mujoco was imported first and picked GLFW, which needs a display.
        return _switch_loaded_mujoco()
    for backend in _PREFERENCE:
        if _library_present(backend):
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    return None


def _switch_loaded_mujoco() -> str | None:
    """Point an already imported mujoco at a headless GL backend (if still possible).

    ``mujoco.Renderer`` looks up ``mujoco.rendering.classic.gl_context.GLContext``
    when it is constructed, so swapping that class works as long as PyOpenGL has
    not been imported yet (its platform is fixed at import).
    """
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or "OpenGL" in sys.modules:
        return None
    try:
        from mujoco.rendering.classic import gl_context
    except ImportError:  # pragma: no cover - other mujoco layouts
        return None
    for backend in _PREFERENCE:
        if not _library_present(backend):
            continue
        try:
            module = __import__(f"mujoco.{backend}", fromlist=["GLContext"])
        except Exception:  # pragma: no cover
            continue
        gl_context.GLContext = module.GLContext
        os.environ["MUJOCO_GL"] = backend
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
        return backend
    return None


def load_llvm_users_first() -> None:
    """Load triton's LLVM before the first GL context, when triton is installed.

    Mesa's software renderer (llvmpipe, behind both EGL and OSMesa) loads the system libLLVM
    into the process; triton's ``libtriton`` (its own LLVM), loaded after it, crashes the process
    with a segmentation fault. ``import torchvision`` loads it (through ``torch._dynamo``), and
    LeRobot's datasets and policies import torchvision, so a process that renders and then reads a
    LeRobot dataset would crash; loaded in this order, both work.
    """
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    try:
        importlib.import_module("triton._C.libtriton")
    except Exception:  # noqa: BLE001 - a broken triton install is torch's concern, not rendering's
        pass


_PROBE_CODE = r"""
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size="1"/></worldbody></mujoco>')
d = mujoco.MjData(m)
r = mujoco.Renderer(m, 8, 8)
r.update_scene(d)
assert r.render().shape == (8, 8, 3)
"""


def probe_gl_backend(backend: str | None = None, timeout: float = 60.0) -> bool:
    """Return True if MuJoCo can render offscreen with ``backend`` (default: current).

    Runs in a subprocess, because a failed GL initialisation can leave the
    current process unable to try another backend.
    """
    backend = backend or os.environ.get("MUJOCO_GL") or "egl"
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE_CODE],
            env=env,
            capture_output=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0
