# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Convert robot rosbag2 recordings to LeRobot datasets and back.

Datasets are written and read with LeRobot's ``LeRobotDataset``.

``sigma-bag-to-lerobot --bag=BAG --output=OUT``: every camera frame paired with the newest joint state and
commanded action (and the instruction in force as the task; see :mod:`sigma_ros.bag_io`) becomes
one LeRobot frame (``observation.images.front``, ``observation.state``, ``action``; names
``<joint>.pos``, as a LeRobot SO-101 recording). Episodes end at an instruction change or a time
gap between camera frames. The fps is the camera's (median frame interval), unless given;
timestamps are ``frame_index / fps`` as LeRobot's recorder writes them (``--timestamps=recorded``:
the recorded time since the episode start). Frames without a joint state or command within
``--max_age_s``, or without an instruction (unless ``--default_task``), are skipped and counted.
The dataset is what ``sigma-preprocess`` / ``sigma-train`` read, so a robot's bags become
training data. ``meta/sigma_bag_conversion.json`` records the source (topics, joint names, command
type, every frame's recorded time in ns) so the way back restores the recording's timing exactly.

``sigma-lerobot-to-bag --dataset=ROOT --bag=BAG`` (a dataset root or hub id): each frame becomes a camera Image
(rgb8), a JointState and a command (JointTrajectory or Float64MultiArray) stamped at the frame's
time, and each episode (and task change) starts with its instruction (std_msgs/String) 10 ms before
its first frame. Frames keep their recorded times when the dataset came from a bag (and was not
edited since), else episodes follow each other with a gap longer than the splitting gap, so
converting back gives the same episodes.

    sigma-bag-to-lerobot --bag=robot_bag/ --output=data/robot_lerobot --repo_id=me/robot
    sigma-lerobot-to-bag --dataset=data/so101_sim --bag=sim_bag/ --storage=mcap

Every field of the commands' configs (BagToLeRobotConfig, LeRobotToBagConfig) is ``--field=value``,
the topics ``--topics.<role>=NAME`` (draccus, :mod:`sigma_model.cli`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sigma_model.cli import check_choice, parse_cli

from sigma_ros.bag_io import (
    ACTION_TYPES, BACKENDS, DEFAULT_JOINT_NAMES, FLOAT64_ARRAY_TYPE, STORAGES, BagError, BagReader, bag_info,
)
from sigma_ros.bag_pairing import PairingStats, RobotTopics, default_gap_s, estimate_period_s, iter_paired_frames
from sigma_ros.bag_robot_writer import RobotBagWriter

log = logging.getLogger(__name__)

IMAGE_KEY = "observation.images.front"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
CONVERSION_META = "meta/sigma_bag_conversion.json"
INSTRUCTION_LEAD_NS = 10_000_000  # an episode's instruction comes 10 ms before its first frame
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000
TIMESTAMPS = ("fps", "recorded")  # frame_index / fps, or the recorded time since the episode start


@dataclass
class ConversionSummary:
    source: str
    target: str
    episodes: int = 0
    frames: int = 0
    tasks: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    fps: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _motor_names(joints: Sequence[str]) -> list[str]:
    return [f"{j}.pos" for j in joints]


def _joint_names_from_features(names: Sequence[str] | None, n: int) -> list[str]:
    if names and len(names) == n and all(isinstance(x, str) for x in names):
        return [x[:-4] if x.endswith(".pos") else x for x in names]
    if n == len(DEFAULT_JOINT_NAMES):
        return list(DEFAULT_JOINT_NAMES)
    return [f"joint_{i}" for i in range(n)]


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == tuple(size):
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR), dtype=np.uint8)


# ----------------------------------------------------------------------------- bag -> LeRobot
def bag_to_lerobot(
    bag: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    repo_id: str | None = None,
    topics: RobotTopics | None = None,
    joint_names: Sequence[str] | None = None,
    fps: int | None = None,
    gap_s: float | None = None,
    max_age_s: float | None = 1.0,
    action_align: str = "latest",
    default_task: str | None = None,
    image_size: tuple[int, int] | None = None,
    min_episode_frames: int = 1,
    robot_type: str | None = None,
    max_frames: int | None = None,
    timestamps: str = "fps",
    overwrite: bool = False,
    backend: str = "auto",
) -> ConversionSummary:
    """Convert a robot recording into a LeRobot v3.0 dataset at ``out_root`` with ``LeRobotDataset``.

    See the module docstring.

    ``timestamps``: ``"fps"`` (frame_index / fps, as LeRobot's recorder writes them; the recorded
    times are kept in meta/sigma_bag_conversion.json) or ``"recorded"`` (time since the episode's
    first frame).
    """
    check_choice("timestamps", timestamps, TIMESTAMPS)
    from sigma_model.data.lerobot_io import (
        create_lerobot_dataset, finalize_lerobot_dataset, quiet_progress, replacing_dataset,
    )

    out_root = Path(out_root)
    summary = ConversionSummary(source=str(bag), target=str(out_root))
    skipped = {"no_image": 0, "no_state": 0, "no_action": 0, "no_instruction": 0, "short_episode": 0}
    stats = PairingStats()
    dataset = None
    episode_times: list[list[int]] = []  # recorded times (ns) of the saved episodes' frames
    with replacing_dataset(out_root, overwrite, keep=(bag,)) as partial_root:  # in place once complete
        with BagReader(bag, backend) as reader, quiet_progress(), contextlib.ExitStack() as finish:
            resolved = (topics or RobotTopics()).resolve(reader.topics, reader.name,
                                                         ("camera", "joint_states", "action"))
            period = estimate_period_s([m.t_ns for m in reader.messages([resolved.camera])])
            if fps is None:
                fps = max(1, int(round(1.0 / period))) if period else 30
            if gap_s is None:
                gap_s = default_gap_s(period)
            cur_episode = None
            ep_start = None
            ep_times: list[int] = []
            shape = None

            def close_episode() -> None:
                if dataset is None or not ep_times:
                    return
                if len(ep_times) < min_episode_frames:
                    dataset.clear_episode_buffer()
                    skipped["short_episode"] += len(ep_times)
                else:
                    dataset.save_episode()
                    episode_times.append(list(ep_times))
                ep_times.clear()

            for frame in iter_paired_frames(reader, resolved, joint_names, action_align=action_align,
                                            max_age_s=max_age_s, gap_s=gap_s, max_frames=max_frames, stats=stats):
                task = frame.instruction if frame.instruction is not None else default_task
                reason = ("no_image" if frame.image is None else "no_state" if frame.state is None
                          else "no_action" if frame.action is None else "no_instruction" if task is None else None)
                if reason:
                    skipped[reason] += 1
                    continue
                if dataset is None:
                    n = len(stats.joint_names)
                    shape = tuple(image_size) if image_size else frame.image.shape[:2]
                    features = {
                        IMAGE_KEY: {"dtype": "image", "shape": (int(shape[0]), int(shape[1]), 3),
                                    "names": ["height", "width", "channels"]},
                        STATE_KEY: {"dtype": "float32", "shape": (n,), "names": _motor_names(stats.joint_names)},
                        ACTION_KEY: {"dtype": "float32", "shape": (n,), "names": _motor_names(stats.joint_names)},
                    }
                    dataset = create_lerobot_dataset(partial_root, repo_id or f"local/{Path(bag).name}", int(fps),
                                                     features, robot_type)
                    finish.callback(finalize_lerobot_dataset, dataset)
                if frame.episode != cur_episode:
                    close_episode()
                    cur_episode, ep_start = frame.episode, frame.t_ns
                img = frame.image
                if img.shape[:2] != tuple(shape):
                    if not image_size:
                        raise BagError(f"{reader.name}: camera frame {frame.index} is {img.shape[1]}x{img.shape[0]}, "
                                       f"earlier frames {shape[1]}x{shape[0]}: pass an image size to resize them")
                if image_size:
                    img = _resize(img, tuple(image_size))
                dataset.add_frame({IMAGE_KEY: img, STATE_KEY: frame.state.astype(np.float32),
                                   ACTION_KEY: frame.action.astype(np.float32), "task": task})
                if timestamps == "recorded":  # LeRobot writes frame_index / fps; its add_frame refuses a "timestamp"
                    dataset.episode_buffer["timestamp"][-1] = (frame.t_ns - ep_start) / 1e9
                ep_times.append(int(frame.t_ns))
            close_episode()
            info = bag_info(reader)
        if dataset is None:
            raise BagError(f"{bag}: no usable camera frame (each needs a joint state and a command within "
                           f"max_age_s={max_age_s} and an instruction or a default task); skipped: {skipped}")
        meta = dataset.meta
        summary.episodes, summary.frames = int(meta.total_episodes), int(meta.total_frames)
        summary.tasks = [] if meta.tasks is None else [str(t) for t in meta.tasks.index]
        summary.skipped, summary.fps = skipped, int(fps)
        summary.details = {
            "bag": info, "pairing": stats.as_dict(), "action_align": action_align, "max_age_s": max_age_s,
            "gap_s": gap_s, "timestamps": timestamps,
        }
        conversion = {
            "source_bag": str(bag), "storage": info["storage"], "topics": stats.topics,
            "joint_names": stats.joint_names, "action_type": stats.action_type, "fps": int(fps),
            "timestamps": timestamps, "action_align": action_align, "max_age_s": max_age_s, "gap_s": gap_s,
            "skipped": skipped, "image_key": IMAGE_KEY, "total_frames": summary.frames,
            "episodes": [{"episode_index": i, "start_ns": t[0], "frame_t_ns": t} for i, t in enumerate(episode_times)],
        }
        (partial_root / CONVERSION_META).write_text(json.dumps(conversion, indent=2) + "\n")
    return summary


# ----------------------------------------------------------------------------- LeRobot -> bag
def lerobot_to_bag(
    root: str | os.PathLike,
    bag: str | os.PathLike,
    *,
    storage: str = "sqlite3",
    action_type: str | None = None,
    topics: RobotTopics | None = None,
    joint_names: Sequence[str] | None = None,
    image_key: str | None = None,
    start_ns: int | None = None,
    episode_gap_s: float | None = None,
    episodes: Sequence[int] | None = None,
    overwrite: bool = False,
    backend: str = "auto",
) -> ConversionSummary:
    """Write a LeRobot dataset (local root or hub id) as a robot recording.

    The dataset is read with ``LeRobotDataset``; see the module docstring.
    """
    from sigma_model.data.lerobot_source import load_lerobot_dataset
    from sigma_model.data.windows import pick_rgb_from_example

    source = load_lerobot_dataset(root, episodes=episodes)
    features = source.features
    meta_path = source.meta.root / CONVERSION_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    camera = image_key or meta.get("image_key") or (IMAGE_KEY if IMAGE_KEY in features else None)
    if camera is None:
        cams = source.meta.camera_keys
        if not cams:
            raise ValueError(f"{root}: the dataset has no image feature")
        camera = cams[0]
    for key in (STATE_KEY, ACTION_KEY):
        if key not in features:
            raise ValueError(f"{root}: the dataset has no {key!r} feature")
    n = int(features[STATE_KEY]["shape"][0])
    if int(features[ACTION_KEY]["shape"][0]) != n:
        raise ValueError(f"{root}: {STATE_KEY} and {ACTION_KEY} have different sizes")
    joints = list(joint_names) if joint_names else (
        list(meta["joint_names"]) if meta.get("joint_names") and len(meta["joint_names"]) == n
        else _joint_names_from_features(features[STATE_KEY].get("names"), n))
    if len(joints) != n:
        raise ValueError(f"{len(joints)} joint names for {n} joints")
    if action_type is None:
        action_type = "float64_multi_array" if meta.get("action_type") == FLOAT64_ARRAY_TYPE else "joint_trajectory"
    if topics is None:
        saved = meta.get("topics") or {}
        topics = RobotTopics(**{k: saved.get(k) for k in ("camera", "joint_states", "instruction", "action")})
    fps = source.fps
    recorded: dict[int, list[int]] = {}
    if meta.get("episodes") and int(meta.get("total_frames", -1)) == source.meta.total_frames:
        lengths = source.meta.episodes["length"]
        for e in meta["episodes"]:
            ep = int(e["episode_index"])
            if 0 <= ep < len(lengths) and len(e.get("frame_t_ns") or []) == int(lengths[ep]):
                recorded[ep] = [int(t) for t in e["frame_t_ns"]]
    elif meta.get("episodes"):
        log.warning(
            "%s: %s does not match the dataset (edited?): using the dataset's timestamps", root, CONVERSION_META
        )
    lead_ns = min(INSTRUCTION_LEAD_NS, 500_000_000 // max(1, fps))
    if episode_gap_s is None:
        episode_gap_s = max(2.0, 10.0 / fps)
    gap_ns = int(episode_gap_s * 1e9)
    summary = ConversionSummary(source=str(root), target=str(bag), fps=fps)
    t_next = DEFAULT_START_NS if start_ns is None else int(start_ns)
    cur_ep = None
    ep_start = 0
    last_t = None
    task_now = None
    eps_seen: list[int] = []
    tasks: list[str] = []
    with RobotBagWriter(bag, storage, topics, joints, action_type, backend, overwrite) as w:
        for frame in source:
            ep = int(frame["episode_index"])
            if ep != cur_ep:
                ep_start = t_next if last_t is None else max(t_next, last_t + gap_ns)
                cur_ep = ep
                task_now = None
                eps_seen.append(ep)
            times = recorded.get(ep) if start_ns is None else None
            if times is not None:
                t_ns = times[int(frame["frame_index"])]
            else:
                t_ns = ep_start + int(round(float(frame["timestamp"]) * 1e9))
            if last_t is not None and t_ns <= last_t:
                t_ns = last_t + 1
            task = str(frame.get("task", ""))
            if task != task_now:
                if task:
                    w.instruction(t_ns - lead_ns, task)
                task_now = task
                if task not in tasks:
                    tasks.append(task)
            state = np.asarray(frame[STATE_KEY], dtype=np.float64)
            action = np.asarray(frame[ACTION_KEY], dtype=np.float64)
            w.joint_state(t_ns, state)
            w.action(t_ns, action)
            w.image(t_ns, pick_rgb_from_example(frame, camera).permute(1, 2, 0).numpy())
            last_t = t_ns
            t_next = t_ns + gap_ns
            summary.frames += 1
    if summary.frames == 0:
        raise ValueError(f"{root}: no frames to convert")
    summary.episodes, summary.tasks = len(eps_seen), tasks
    summary.details = {"storage": storage, "action_type": ACTION_TYPES.get(action_type, action_type),
                       "joint_names": joints, "topics": w.topics.as_dict(), "image_key": camera}
    return summary


# ----------------------------------------------------------------------------- command lines
@dataclass
class RecordingOptions:
    """The robot recording's side of a conversion: its topics, joint order and bag library."""

    # topic names (default: the Sigma graph's names, else the one topic of the type): camera
    # (sensor_msgs/Image), joint_states (sensor_msgs/JointState), instruction (std_msgs/String), action
    # (the commands: JointTrajectory or Float64MultiArray)
    topics: RobotTopics = field(default_factory=RobotTopics)
    joint_names: list[str] | None = None  # joint order of states/actions (default: SO-101's if present, else the bag's)
    backend: str = "auto"  # bag library: auto (rosbag2_py if importable, else rosbags), rosbag2_py or rosbags
    overwrite: bool = False  # replace an existing output

    def __post_init__(self) -> None:
        check_choice("--backend", self.backend, BACKENDS)


@dataclass
class BagToLeRobotConfig(RecordingOptions):
    """sigma-bag-to-lerobot: a robot rosbag2 recording (sqlite3 or MCAP) as a LeRobot v3.0 dataset."""

    bag: str | None = None  # rosbag2 directory (or a single .db3 / .mcap file); required
    output: str | None = None  # LeRobot dataset root to create; required
    repo_id: str | None = None  # dataset repo id (default local/<bag name>)
    fps: int | None = None  # dataset fps (default: the camera rate)
    # a pause between camera frames longer than this starts an episode (default 5 frame periods, >= 0.5 s)
    gap_s: float | None = None
    max_age_s: float = 1.0  # joint states / commands older than this are not paired (0: no limit)
    action_align: str = "latest"  # a frame's command: latest (newest at/before it) or next (first at/after it)
    default_task: str | None = None  # task of frames before any instruction (default: skip them)
    image_size: tuple[int, int] | None = None  # resize images to [H,W]
    min_episode_frames: int = 1  # drop shorter episodes
    robot_type: str | None = None
    max_frames: int | None = None  # convert at most this many camera frames
    # frame timestamps: fps (frame_index / fps, LeRobot's convention; the recorded times go to
    # meta/sigma_bag_conversion.json) or recorded (the recorded time since the episode start)
    timestamps: str = "fps"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.bag and self.output):
            raise ValueError("--bag and --output are required")
        check_choice("--action_align", self.action_align, ("latest", "next"))
        check_choice("--timestamps", self.timestamps, TIMESTAMPS)
        if self.gap_s is not None and not self.gap_s > 0:  # NaN too
            raise ValueError(f"--gap_s must be > 0, got {self.gap_s}")
        if not self.max_age_s >= 0:
            raise ValueError(f"--max_age_s must be >= 0 (0: no limit), got {self.max_age_s}")
        if self.min_episode_frames < 1 or (self.max_frames is not None and self.max_frames < 1):
            raise ValueError(f"--min_episode_frames and --max_frames must be >= 1, got {self.min_episode_frames} and "
                             f"{self.max_frames}")


@dataclass
class LeRobotToBagConfig(RecordingOptions):
    """sigma-lerobot-to-bag: a LeRobot dataset as a rosbag2 robot recording (camera, joint states, commands, tasks)."""

    dataset: str | None = None  # LeRobot dataset root (meta/info.json) or hub id; required
    bag: str | None = None  # rosbag2 directory to create; required
    storage: str = "sqlite3"  # sqlite3 or mcap
    # command message type, joint_trajectory or float64_multi_array (default: the source bag's when the
    # dataset came from one, else joint_trajectory)
    action_type: str | None = None
    image_key: str | None = None  # camera feature (default observation.images.front / the first one)
    # time of the first frame (ns since epoch; default: the source bag's times, else 1.7e18)
    start_ns: int | None = None
    episode_gap_s: float | None = None  # pause between episodes (default max(2 s, 10 frames))
    episodes: list[int] | None = None  # convert only these episode indices, e.g. [0,3]

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.dataset and self.bag):
            raise ValueError("--dataset and --bag are required")
        check_choice("--storage", self.storage, STORAGES)
        if self.action_type is not None:
            check_choice("--action_type", self.action_type, sorted(ACTION_TYPES))
        if self.episode_gap_s is not None and not self.episode_gap_s > 0:  # NaN too
            # a gap <= 0 would run the episodes together: sigma-bag-to-lerobot splits them at the gaps
            raise ValueError(f"--episode_gap_s must be > 0, got {self.episode_gap_s}")
        if self.start_ns is not None and self.start_ns < 0:
            raise ValueError(f"--start_ns must be >= 0 (ns since the epoch), got {self.start_ns}")


def bag_to_lerobot_main(argv: list[str] | None = None) -> int:
    prog = "sigma-bag-to-lerobot"
    cfg = parse_cli(BagToLeRobotConfig, argv, prog, description=__doc__)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        s = bag_to_lerobot(cfg.bag, cfg.output, repo_id=cfg.repo_id, topics=cfg.topics, joint_names=cfg.joint_names,
                           fps=cfg.fps, gap_s=cfg.gap_s, max_age_s=cfg.max_age_s, action_align=cfg.action_align,
                           default_task=cfg.default_task, image_size=cfg.image_size,
                           min_episode_frames=cfg.min_episode_frames, robot_type=cfg.robot_type,
                           max_frames=cfg.max_frames, timestamps=cfg.timestamps, overwrite=cfg.overwrite,
                           backend=cfg.backend)
    except (BagError, ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    skipped = ", ".join(f"{k} {v}" for k, v in s.skipped.items() if v) or "none"
    print(f"{s.target}: {s.episodes} episodes, {s.frames} frames at {s.fps} fps, {len(s.tasks)} tasks "
          f"(skipped frames: {skipped})")
    return 0


def lerobot_to_bag_main(argv: list[str] | None = None) -> int:
    prog = "sigma-lerobot-to-bag"
    cfg = parse_cli(LeRobotToBagConfig, argv, prog, description=__doc__)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from sigma_model.data.lerobot_source import DatasetUnavailableError

    try:
        s = lerobot_to_bag(cfg.dataset, cfg.bag, storage=cfg.storage, action_type=cfg.action_type,
                           topics=cfg.topics if any(cfg.topics.as_dict().values()) else None,
                           joint_names=cfg.joint_names, image_key=cfg.image_key, start_ns=cfg.start_ns,
                           episode_gap_s=cfg.episode_gap_s, episodes=cfg.episodes, overwrite=cfg.overwrite,
                           backend=cfg.backend)
    except (BagError, DatasetUnavailableError, ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"{s.target}: {s.episodes} episodes, {s.frames} frames ({s.details['storage']}, "
          f"{s.details['action_type']}, topics {s.details['topics']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(bag_to_lerobot_main())
