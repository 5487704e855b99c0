# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Pair the camera frames of a robot recording with what the robot knew and did.

:func:`iter_paired_frames`: each camera frame gets the newest valid joint state and commanded
action (``action_align="latest"``: the newest at or before the frame; ``"next"``: the first at or
after it) and the current instruction, following the Sigma nodes' rules (a frame whose joint state
is older than ``max_age_s`` has no state, an invalid joint state invalidates the last one;
invalid as the perception node judges it: not finite, or beyond the joint limits by more than the
tolerance, the nodes' defaults (each joint's built-in limits by name) unless given; instructions are normalised as
the language node does). Frames are grouped into episodes that end at an instruction change or a
time gap between camera frames larger than ``gap_s``.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sigma_model.safety import KNOWN_JOINT_LIMITS, JointLimits

from sigma_ros.bag_io import (
    ROLE_ORDER,
    DEFAULT_JOINT_NAMES,
    DEFAULT_TOPICS,
    MSG_TYPES,
    ROLES,
    BagError,
    BagReader,
    RawMessage,
    bag_info,
)
from sigma_ros.bag_messages import action_to_vector, stamp_ns_of
from sigma_ros.conversions import (
    ConversionError,
    clean_instruction,
    image_to_array,
    joint_state_to_vector,
)


# --------------------------------------------------------------------------------- topic roles
@dataclass
class RobotTopics:
    """Topic names of a robot recording.

    None = find it (the default name, else the one topic of the role's message type).
    """

    camera: str | None = None
    joint_states: str | None = None
    instruction: str | None = None
    action: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {r: getattr(self, r) for r in ROLES}

    def resolve(self, available: Mapping[str, str], source: str = "recording",
                required: Sequence[str] = ("camera", "joint_states")) -> "RobotTopics":
        """Concrete names for ``available`` (topic -> type); raises BagError naming ``source``."""
        out = {}
        for role in ROLES:
            given = getattr(self, role)
            types = MSG_TYPES[role]
            if given:
                name = given if given.startswith("/") else "/" + given
                if name not in available:
                    raise BagError(f"{source}: {role} topic {name} not found (topics: {_fmt_topics(available)})")
                if available[name] not in types:
                    raise BagError(f"{source}: {role} topic {name} has type {available[name]}, expected "
                                   f"{' or '.join(types)}")
                out[role] = name
                continue
            default = DEFAULT_TOPICS[role]
            if available.get(default) in types:
                out[role] = default
                continue
            candidates = sorted(t for t, ty in available.items() if ty in types)
            if role == "camera" and len(candidates) > 1:
                colour = [t for t in candidates if "depth" not in t.lower()]
                candidates = colour if colour else candidates
            if role == "action" and len(candidates) > 1:
                candidates = [t for t in candidates if t not in (out.get("joint_states"),)]
            if len(candidates) == 1:
                out[role] = candidates[0]
            elif len(candidates) > 1:
                raise BagError(f"{source}: several {role} topics {candidates}: choose one "
                               f"(--{role.replace('_', '-')}-topic)")
            else:
                out[role] = None
        missing = [r for r in required if out.get(r) is None]
        if missing:
            raise BagError(f"{source}: no {', '.join(missing)} topic ("
                           + "; ".join(f"{r}: {' or '.join(MSG_TYPES[r])}" for r in missing)
                           + f"); topics: {_fmt_topics(available)}")
        return RobotTopics(**out)


def _fmt_topics(available: Mapping[str, str]) -> str:
    return ", ".join(f"{t} ({ty})" for t, ty in sorted(available.items())) or "none"


# ---------------------------------------------------------------------------------- pairing
@dataclass
class PairedFrame:
    """One camera frame with what the robot knew and did at that time (see module docstring)."""

    index: int  # camera message ordinal in the recording (all camera messages count)
    t_ns: int  # bag receive time of the frame
    stamp_ns: int  # the image's header stamp
    image: np.ndarray | None  # HxWx3 uint8 RGB (None: undecodable frame, or decode_images=False)
    state: np.ndarray | None  # float64 [J] joint positions (None: no valid state within max_age_s)
    action: np.ndarray | None  # float64 [J] commanded targets (None: none yet / stale)
    instruction: str | None  # normalised instruction in force (None: none yet)
    episode: int = 0
    instruction_seq: int = 0  # instruction changes (to a different text) so far, as the language node counts them
    state_t_ns: int | None = None
    action_t_ns: int | None = None
    encoding: str = ""
    raw: RawMessage | None = None  # the camera message (keep_raw=True)

    @property
    def usable(self) -> bool:
        """Has image, state, action and instruction (a training / evaluation sample)."""
        return self.image is not None and self.state is not None and self.action is not None \
            and self.instruction is not None


@dataclass
class PairingStats:
    camera_frames: int = 0
    invalid_images: int = 0
    invalid_joint_states: int = 0
    invalid_actions: int = 0
    invalid_instructions: int = 0
    frames_without_state: int = 0
    frames_without_action: int = 0
    frames_without_instruction: int = 0
    episodes: int = 0
    joint_names: list[str] = field(default_factory=list)
    action_type: str = ""
    topics: dict[str, str | None] = field(default_factory=dict)
    camera_period_s: float | None = None
    gap_s: float | None = None
    joint_limits: dict[str, list[float]] | None = None  # the joint-state plausibility check applied (None: none)
    errors: list[str] = field(default_factory=list)  # first few conversion errors

    def note(self, text: str) -> None:
        if len(self.errors) < 10:
            self.errors.append(text)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def estimate_period_s(times_ns: Sequence[int]) -> float | None:
    """Median positive interval between consecutive times (s), None with fewer than two."""
    dts = [(b - a) / 1e9 for a, b in zip(times_ns, times_ns[1:]) if b > a]
    return float(statistics.median(dts)) if dts else None


def default_gap_s(period_s: float | None) -> float:
    """Episode-splitting gap: 5 camera periods, at least 0.5 s."""
    return max(0.5, 5.0 * period_s) if period_s else 1.0


def resolve_joint_names(reader: BagReader, topics: RobotTopics, joint_names: Sequence[str] | None) -> list[str]:
    """Joint order.

    given, else DEFAULT_JOINT_NAMES when the joint states name them all, else the names of the first joint state (or
    joint_0..n-1 when it has none).
    """
    if joint_names:
        return [str(j) for j in joint_names]
    msg = reader.first(topics.joint_states) if topics.joint_states else None
    names = list(getattr(msg, "name", []) or []) if msg is not None else []
    if names and all(j in names for j in DEFAULT_JOINT_NAMES):
        return list(DEFAULT_JOINT_NAMES)
    if names:
        return names
    n = len(getattr(msg, "position", [])) if msg is not None else 0
    if n == len(DEFAULT_JOINT_NAMES) or n == 0:
        return list(DEFAULT_JOINT_NAMES)
    return [f"joint_{i}" for i in range(n)]


def node_joint_limits(joint_names: Sequence[str]) -> JointLimits | None:
    """Return the nodes' default joint-state check (built-in limits by name, 0.1 rad tolerance).

    None when a joint has no built-in limits (another robot's recording: its limits are not known here; a conversion
    keeps its joint states, an evaluation passes the limits of its graph).
    """
    return JointLimits(joint_names=joint_names) if all(j in KNOWN_JOINT_LIMITS for j in joint_names) else None


def time_groups(messages: Iterable[RawMessage]) -> Iterator[list[RawMessage]]:
    """Consecutive messages that share one receive time, as lists."""
    group: list[RawMessage] = []
    for m in messages:
        if group and m.t_ns != group[0].t_ns:
            yield group
            group = []
        group.append(m)
    if group:
        yield group


def iter_paired_frames(
    reader: BagReader,
    topics: RobotTopics | None = None,
    joint_names: Sequence[str] | None = None,
    *,
    action_align: str = "latest",
    max_age_s: float | None = 1.0,
    gap_s: float | None = None,
    decode_images: bool = True,
    keep_raw: bool = False,
    max_frames: int | None = None,
    stats: PairingStats | None = None,
    require_action: bool = True,
    joint_limits: JointLimits | None = None,
) -> Iterator[PairedFrame]:
    """Every camera frame of the recording, paired (see the module docstring), in time order.

    ``max_age_s`` (None/0: no limit) applies to the joint state and, with ``"latest"``, to the
    command; ``gap_s`` None: :func:`default_gap_s` of the camera period; ``joint_limits`` None:
    :func:`node_joint_limits`.
    """
    if action_align not in ("latest", "next"):
        raise ValueError(f"action_align must be 'latest' or 'next', got {action_align!r}")
    stats = stats if stats is not None else PairingStats()
    topics = (topics or RobotTopics()).resolve(
        reader.topics,
        reader.name,
        ("camera", "joint_states", "action") if require_action else ("camera", "joint_states"),
    )
    joints = resolve_joint_names(reader, topics, joint_names)
    stats.joint_names = list(joints)
    limits = joint_limits if joint_limits is not None else node_joint_limits(joints)
    stats.joint_limits = None if limits is None else {
        "lower": limits.lower.tolist(), "upper": limits.upper.tolist(),
        "tolerance": limits.measurement_tolerance.tolist()}
    stats.topics = topics.as_dict()
    stats.action_type = reader.topics.get(topics.action, "") if topics.action else ""
    if gap_s is None:
        period = estimate_period_s([m.t_ns for m in reader.messages([topics.camera])])
        stats.camera_period_s = period
        gap_s = default_gap_s(period)
    stats.gap_s = float(gap_s)
    max_age_ns = None if not max_age_s else int(max_age_s * 1e9)
    gap_ns = int(gap_s * 1e9) if gap_s and gap_s > 0 else None
    role_of = {getattr(topics, r): r for r in ROLES if getattr(topics, r)}

    state: tuple[int, np.ndarray] | None = None
    action: tuple[int, np.ndarray] | None = None
    instruction: str | None = None
    pending: list[PairedFrame] = []  # "next": frames waiting for their command
    prev_t: int | None = None
    prev_seq = -1
    instr_seq = 0
    episode = -1
    count = 0

    def fresh(item, t_ns):
        if item is None:
            return None
        if max_age_ns is not None and t_ns - item[0] > max_age_ns:
            return None
        return item

    # same-instant messages: instruction and state before the frame; the command before it for
    # "latest", after it for "next" (both inclusive)
    order = dict(ROLE_ORDER, action=4) if action_align == "next" else ROLE_ORDER
    for group in time_groups(reader.messages(list(role_of))):
        group.sort(key=lambda m: order[role_of[m.topic]])
        for m in group:
            role = role_of[m.topic]
            if role == "joint_states":
                msg = reader.decode(m)
                try:
                    vec = joint_state_to_vector(msg, joints)
                    if limits is not None:
                        vec, fault = limits.check(vec)
                        if fault:
                            raise ConversionError(f"joint_states: {fault}")
                    state = (m.t_ns, vec)
                except ConversionError as err:
                    state = None  # as the perception node: a faulty reading invalidates the last state
                    stats.invalid_joint_states += 1
                    stats.note(f"t={m.t_ns}: {err}")
            elif role == "action":
                msg = reader.decode(m)
                try:
                    vec = action_to_vector(msg, m.msgtype, joints)
                except ConversionError as err:
                    stats.invalid_actions += 1
                    stats.note(f"t={m.t_ns}: {err}")
                    continue
                action = (m.t_ns, vec)
                if pending:
                    for f in pending:
                        f.action, f.action_t_ns = vec, m.t_ns
                    for f in pending:
                        yield f
                    pending.clear()
            elif role == "instruction":
                msg = reader.decode(m)
                try:
                    text = clean_instruction(msg.data, 2000)
                    if text != instruction:  # a repeated instruction keeps the language node's memory
                        instruction, instr_seq = text, instr_seq + 1
                except ConversionError as err:
                    stats.invalid_instructions += 1  # the language node rejects it and keeps the last one
                    stats.note(f"t={m.t_ns}: {err}")
            else:  # camera
                if max_frames is not None and count >= max_frames:
                    continue
                msg = reader.decode(m)
                image = None
                if decode_images:
                    try:
                        image = image_to_array(msg, "camera")
                        if not image.flags.writeable:  # a view of the message buffer
                            image = image.copy()
                    except ConversionError as err:
                        stats.invalid_images += 1
                        stats.note(f"t={m.t_ns}: {err}")
                if prev_t is None or instr_seq != prev_seq or (gap_ns is not None and m.t_ns - prev_t > gap_ns):
                    episode += 1
                prev_t, prev_seq = m.t_ns, instr_seq
                st = fresh(state, m.t_ns)
                frame = PairedFrame(
                    index=count, t_ns=m.t_ns, stamp_ns=stamp_ns_of(msg), image=image,
                    state=None if st is None else st[1], action=None, instruction=instruction, episode=episode,
                    instruction_seq=instr_seq,
                    state_t_ns=None if st is None else st[0], encoding=str(getattr(msg, "encoding", "")),
                    raw=m if keep_raw else None,
                )
                count += 1
                stats.camera_frames += 1
                if action_align == "latest":
                    ac = fresh(action, m.t_ns)
                    if ac is not None:
                        frame.action, frame.action_t_ns = ac[1], ac[0]
                    yield frame
                else:
                    pending.append(frame)
    for f in pending:  # "next": no command after these frames
        yield f
    stats.episodes = episode + 1


def read_paired_frames(path: str | os.PathLike, topics: RobotTopics | None = None,
                       joint_names: Sequence[str] | None = None, backend: str = "auto", **kwargs
                       ) -> tuple[list[PairedFrame], PairingStats, dict[str, Any]]:
    """All paired frames of a recording, their stats, and info about the recording."""
    stats = PairingStats()
    with BagReader(path, backend) as reader:
        frames = list(iter_paired_frames(reader, topics, joint_names, stats=stats, **kwargs))
        info = bag_info(reader)
    for f in frames:
        stats.frames_without_state += f.state is None
        stats.frames_without_action += f.action is None
        stats.frames_without_instruction += f.instruction is None
    return frames, stats, info
