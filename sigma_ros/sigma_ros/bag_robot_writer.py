"""Write robot recordings: :class:`RobotBagWriter` (camera, joint states, instruction, commands)
and :func:`write_synthetic_robot_bag` (a small synthetic recording for tests and benchmarks)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from sigma_model.safety import SO101_LOWER_LIMITS, SO101_UPPER_LIMITS

from sigma_ros.bag_io import (
    ACTION_TYPES,
    DEFAULT_JOINT_NAMES,
    DEFAULT_TOPICS,
    ROLES,
    BagWriter,
)
from sigma_ros.bag_messages import (
    make_action,
    make_image,
    make_joint_state,
    make_string,
)
from sigma_ros.bag_pairing import RobotTopics


class RobotBagWriter:
    """Writes a robot recording (camera, joint states, instruction, commands) to a new bag.

    Topics are created on their first message, so a recording without instructions has no
    instruction topic.
    """

    def __init__(self, path: str | os.PathLike, storage: str = "sqlite3", topics: RobotTopics | None = None,
                 joint_names: Sequence[str] = DEFAULT_JOINT_NAMES, action_type: str = "joint_trajectory",
                 backend: str = "auto", overwrite: bool = False, frame_id: str = "camera") -> None:
        if action_type not in ACTION_TYPES and action_type not in ACTION_TYPES.values():
            raise ValueError(f"action_type must be one of {sorted(ACTION_TYPES)}, got {action_type!r}")
        self.action_msgtype = ACTION_TYPES.get(action_type, action_type)
        t = topics or RobotTopics()
        self.topics = RobotTopics(**{r: _abs(getattr(t, r) or DEFAULT_TOPICS[r]) for r in ROLES})
        self.joint_names = list(joint_names)
        self.frame_id = frame_id
        self.writer = BagWriter(path, storage, backend, overwrite)
        self.path = self.writer.path

    def image(self, t_ns: int, rgb: np.ndarray, stamp_ns: int | None = None, encoding: str = "rgb8") -> None:
        self.writer.write(self.topics.camera, t_ns, make_image(rgb, t_ns if stamp_ns is None else stamp_ns,
                                                                self.frame_id, encoding))

    def joint_state(self, t_ns: int, positions: Sequence[float], stamp_ns: int | None = None,
                    names: Sequence[str] | None = None) -> None:
        self.writer.write(self.topics.joint_states, t_ns,
                          make_joint_state(positions, self.joint_names if names is None else names,
                                           t_ns if stamp_ns is None else stamp_ns))

    def instruction(self, t_ns: int, text: str) -> None:
        self.writer.write(self.topics.instruction, t_ns, make_string(text))

    def action(self, t_ns: int, positions: Sequence[float], stamp_ns: int | None = None) -> None:
        self.writer.write(self.topics.action, t_ns,
                          make_action(positions, self.joint_names, t_ns if stamp_ns is None else stamp_ns,
                                      self.action_msgtype))

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "RobotBagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.writer.__exit__(*exc)


def _abs(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def write_synthetic_robot_bag(
    path: str | os.PathLike,
    storage: str = "sqlite3",
    *,
    n_frames: int = 20,
    camera_hz: float = 10.0,
    joint_hz: float = 50.0,
    image_size: int | tuple[int, int] = 32,
    instructions: Sequence[tuple[float, str]] = ((0.0, "pick up the red cube"),),
    gaps: Sequence[tuple[int, float]] = (),
    action_type: str = "joint_trajectory",
    joint_names: Sequence[str] = DEFAULT_JOINT_NAMES,
    start_ns: int = 1_700_000_000 * 1_000_000_000,
    camera_offset_s: float = 0.005,
    seed: int = 0,
    topics: RobotTopics | None = None,
    backend: str = "auto",
    overwrite: bool = False,
) -> dict[str, Any]:
    """A small synthetic robot recording (for tests, benchmarks, demos).

    Camera frames at ``camera_hz`` (random smooth RGB images), joint states and commands at
    ``joint_hz`` (sinusoids; the command leads the state by 0.1 s), instructions at the given times
    (s from the start). ``gaps``: (frame index, seconds) pauses inserted before those frames.
    Camera frames sit ``camera_offset_s`` after a joint sample, so "latest" pairing is unambiguous.
    Returns a description (times, counts).
    """
    rng = np.random.default_rng(seed)
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    n_j = len(joint_names)
    phase = rng.uniform(0, 2 * np.pi, n_j)
    lower, upper = np.resize(SO101_LOWER_LIMITS, n_j), np.resize(SO101_UPPER_LIMITS, n_j)
    centre, amp = (lower + upper) / 2, np.minimum(rng.uniform(0.1, 0.5, n_j), (upper - lower) / 2)

    def q(t: float) -> np.ndarray:  # within the SO-101 joint ranges
        return centre + amp * np.sin(2 * np.pi * 0.3 * t + phase)

    gap_before = dict(gaps)
    cam_times = []
    t = 0.1
    for k in range(n_frames):
        t += gap_before.get(k, 0.0)
        cam_times.append(t + camera_offset_s)
        t += 1.0 / camera_hz
    end = cam_times[-1] + 1.0 / camera_hz if cam_times else 0.0
    base = rng.integers(0, 256, (max(2, h // 4), max(2, w // 4), 3)).astype(np.float32)
    events: list[tuple[float, int, str, Any]] = []
    for k, tc in enumerate(cam_times):
        shift = np.roll(base, k, axis=1)
        img = np.kron(shift, np.ones((4, 4, 1)))[:h, :w]
        noise = rng.integers(0, 24, (h, w, 3))
        events.append((tc, 3, "camera", np.clip(img + noise, 0, 255).astype(np.uint8)))
    n_joint = int(end * joint_hz) + 1
    for i in range(n_joint):
        tj = i / joint_hz
        events.append((tj, 1, "joint", q(tj)))
        events.append((tj, 2, "action", q(tj + 0.1)))
    for ti, text in instructions:
        events.append((float(ti), 0, "instruction", text))
    events.sort(key=lambda e: (e[0], e[1]))
    counts = {"camera": 0, "joint": 0, "action": 0, "instruction": 0}
    with RobotBagWriter(path, storage, topics, joint_names, action_type, backend, overwrite) as w:
        for te, _, kind, value in events:
            t_ns = start_ns + int(round(te * 1e9))
            if kind == "camera":
                w.image(t_ns, value)
            elif kind == "joint":
                w.joint_state(t_ns, value)
            elif kind == "action":
                w.action(t_ns, value)
            else:
                w.instruction(t_ns, value)
            counts[kind] += 1
    return {"path": str(path), "storage": storage, "camera_times_s": cam_times, "counts": counts,
            "start_ns": start_ns, "joint_names": list(joint_names)}
