"""Record scripted-expert demonstrations as a LeRobot-format (v3.0) dataset.

Each frame holds what a LeRobot SO-101 recording holds::

    observation.images.front  uint8 (H, W, 3)  front camera, before the action
    observation.state         float32 (6,)     measured joint angles (rad)
    action                    float32 (6,)     joint position targets sent (rad)
    task                      str              the instruction

The dataset is written with ``sigma_model.data.lerobot_format.LeRobotDatasetWriter``
(which mirrors LeRobot's ``create / add_frame / save_episode / finalize``).
Without it, :func:`episode_frames` still yields the per-frame dicts.

Command line (``sigma-sim-record``)::

    sigma-sim-record --root data/so101_sim --episodes 100 --seed 0

Episode ``i`` uses seed ``seed + i`` (cube pose) and alternates the placement
region (left, right, left, ...); the instruction wording is drawn from
:data:`sigma_sim.so101_env.INSTRUCTIONS` with the same seed. Episodes the
expert fails (rare) are skipped unless ``--keep-failed``; the next seed is
used instead, so the dataset still has ``--episodes`` episodes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from sigma_sim.expert import EpisodeResult, ExpertConfig, ScriptedExpert, expert_episode
from sigma_sim.so101_env import INSTRUCTIONS, JOINT_NAMES, SimConfig, SO101PickPlaceEnv

__all__ = [
    "IMAGE_KEY",
    "STATE_KEY",
    "ACTION_KEY",
    "ENV_STATE_KEY",
    "RecordSummary",
    "dataset_features",
    "episode_frames",
    "instruction_for_episode",
    "main",
    "record_dataset",
    "to_lerobot_frame",
]

IMAGE_KEY = "observation.images.front"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
ENV_STATE_KEY = "observation.environment_state"
ROBOT_TYPE = "so101_follower"
DEFAULT_REPO_ID = "sigma/so101_pick_place_sim"
#: LeRobot's SO-101 names its motor features "<joint>.pos".
MOTOR_NAMES = [f"{name}.pos" for name in JOINT_NAMES]


def dataset_features(image_height: int = 96, image_width: int = 96, env_state: bool = False) -> dict:
    """LeRobot feature spec of the recorded dataset."""
    features = {
        IMAGE_KEY: {
            "dtype": "image",
            "shape": (image_height, image_width, 3),
            "names": ["height", "width", "channels"],
        },
        STATE_KEY: {"dtype": "float32", "shape": (len(JOINT_NAMES),), "names": list(MOTOR_NAMES)},
        ACTION_KEY: {"dtype": "float32", "shape": (len(JOINT_NAMES),), "names": list(MOTOR_NAMES)},
    }
    if env_state:
        features[ENV_STATE_KEY] = {
            "dtype": "float32",
            "shape": (7,),
            "names": ["cube_x", "cube_y", "cube_z", "cube_qw", "cube_qx", "cube_qy", "cube_qz"],
        }
    return features


def to_lerobot_frame(
    obs: dict[str, np.ndarray], action: np.ndarray | None = None, env_state: bool = False
) -> dict[str, np.ndarray]:
    """Map an :class:`SO101PickPlaceEnv` observation (+ action) to LeRobot feature keys."""
    frame = {
        IMAGE_KEY: obs["image"],
        STATE_KEY: np.asarray(obs["joint_positions"], dtype=np.float32),
    }
    if action is not None:
        frame[ACTION_KEY] = np.asarray(action, dtype=np.float32)
    if env_state:
        frame[ENV_STATE_KEY] = np.concatenate([obs["cube_pos"], obs["cube_quat"]]).astype(np.float32)
    return frame


def instruction_for_episode(episode_index: int, seed: int) -> str:
    """Instruction of episode ``episode_index``: regions alternate, wording drawn from ``seed``."""
    regions = list(INSTRUCTIONS)
    texts = INSTRUCTIONS[regions[episode_index % len(regions)]]
    return texts[int(np.random.default_rng(seed).integers(len(texts)))]


def episode_frames(
    env: SO101PickPlaceEnv,
    seed: int,
    instruction: str | None = None,
    expert: ScriptedExpert | None = None,
    env_state: bool = False,
    action_noise: float = 0.0,
) -> Iterator[tuple[dict[str, np.ndarray], str]]:
    """Yield ``(frame, task)`` for one expert episode; returns its :class:`EpisodeResult`.

    ``frame`` is ``{"observation.images.front": HxWx3 uint8, "observation.state":
    float32[6], "action": float32[6]}`` (plus the environment state if asked),
    ready for ``LeRobotDatasetWriter.add_frame(frame, task=task)``; ``action_noise``
    as in :func:`sigma_sim.expert.expert_episode`.
    """
    if not env.config.render_observations:
        raise ValueError("recording needs an env with render_observations=True")
    gen = expert_episode(env, seed=seed, instruction=instruction, expert=expert, action_noise=action_noise)
    while True:
        try:
            obs, action, _ = next(gen)
        except StopIteration as stop:
            return stop.value
        yield to_lerobot_frame(obs, action, env_state=env_state), env.instruction


@dataclass
class RecordSummary:
    """What :func:`record_dataset` did."""

    root: str
    episodes: int
    frames: int
    attempted: int
    failed_seeds: list[int] = field(default_factory=list)
    success_rate: float = 1.0
    seconds: float = 0.0
    fps: int = 30
    instructions: dict[str, int] = field(default_factory=dict)


def record_dataset(
    root: str | Path,
    num_episodes: int,
    seed: int = 0,
    repo_id: str = DEFAULT_REPO_ID,
    sim_config: SimConfig | None = None,
    keep_failed: bool = False,
    env_state: bool = False,
    overwrite: bool = False,
    max_seed_tries: int | None = None,
    progress: bool = False,
    action_noise: float = 0.0,
    expert_config: ExpertConfig | None = None,
) -> RecordSummary:
    """Record ``num_episodes`` expert episodes into a LeRobot v3.0 dataset at ``root``.

    Args:
        root: Dataset directory (must not exist or be empty unless ``overwrite``).
        num_episodes: Episodes to store.
        seed: First episode seed; episode attempts use ``seed, seed + 1, ...``.
        repo_id: LeRobot ``repo_id`` written to the metadata.
        sim_config: Simulation settings (image size, control rate, ...).
        keep_failed: Store episodes the expert failed too (default: skip them).
        env_state: Also store ``observation.environment_state`` (cube pose).
        overwrite: Replace an existing dataset at ``root``.
        max_seed_tries: Give up after this many attempts (default ``2 * num_episodes + 10``).
        progress: Print one line per episode to stderr.
        action_noise: DART noise (rad) on the executed arm targets; the dataset keeps the clean ones.
        expert_config: Expert tuning (default :class:`ExpertConfig()`).
    """
    from sigma_model.data.lerobot_format import LeRobotDatasetWriter

    sim_config = sim_config or SimConfig()
    if not sim_config.render_observations:
        raise ValueError("recording needs render_observations=True")
    fps = int(round(sim_config.control_hz))
    if abs(fps - sim_config.control_hz) > 1e-9:
        raise ValueError("LeRobot datasets need an integer fps: use an integer control_hz")
    env = SO101PickPlaceEnv(sim_config)
    expert = ScriptedExpert(env, expert_config)
    writer = LeRobotDatasetWriter.create(
        root,
        repo_id=repo_id,
        fps=fps,
        features=dataset_features(sim_config.image_height, sim_config.image_width, env_state),
        robot_type=ROBOT_TYPE,
        overwrite=overwrite,
    )
    max_tries = max_seed_tries or 2 * num_episodes + 10
    summary = RecordSummary(root=str(root), episodes=0, frames=0, attempted=0, fps=fps)
    t0 = time.perf_counter()
    try:
        ep_seed = seed
        while summary.episodes < num_episodes and summary.attempted < max_tries:
            instruction = instruction_for_episode(summary.episodes, ep_seed)
            gen = episode_frames(env, ep_seed, instruction, expert=expert, env_state=env_state,
                                 action_noise=action_noise)
            n = 0
            while True:
                try:
                    frame, task = next(gen)
                except StopIteration as stop:
                    result: EpisodeResult = stop.value
                    break
                writer.add_frame(frame, task=task)
                n += 1
            summary.attempted += 1
            if result.success or keep_failed:
                writer.save_episode()
                summary.episodes += 1
                summary.frames += n
                summary.instructions[instruction] = summary.instructions.get(instruction, 0) + 1
            else:
                writer.clear_episode_buffer()
            if not result.success:
                summary.failed_seeds.append(ep_seed)
            if progress:
                print(
                    f"[sigma-sim-record] seed {ep_seed}: {'ok' if result.success else 'FAILED'} "
                    f"{n} frames, {instruction!r} ({summary.episodes}/{num_episodes})",
                    file=sys.stderr,
                    flush=True,
                )
            ep_seed += 1
    finally:
        writer.finalize()
        env.close()
    summary.seconds = time.perf_counter() - t0
    summary.success_rate = 1.0 - len(summary.failed_seeds) / max(1, summary.attempted)
    if summary.episodes < num_episodes:
        raise RuntimeError(
            f"only {summary.episodes}/{num_episodes} successful episodes in {summary.attempted} tries"
        )
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sigma-sim-record",
        description="Record scripted SO-101 pick-and-place demonstrations (MuJoCo) as a LeRobot v3.0 dataset.",
    )
    p.add_argument("--root", required=True, help="output dataset directory")
    p.add_argument("--episodes", type=int, default=50, help="number of episodes to store (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (default 0)")
    p.add_argument("--repo-id", default=DEFAULT_REPO_ID, help=f"LeRobot repo_id (default {DEFAULT_REPO_ID})")
    p.add_argument("--fps", type=int, default=30, help="control rate = dataset fps (default 30)")
    p.add_argument("--image-size", type=int, default=96, help="square camera image size (default 96)")
    p.add_argument("--env-state", action="store_true", help="also store the cube pose")
    p.add_argument("--keep-failed", action="store_true", help="store failed expert episodes too")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--quiet", action="store_true", help="no per-episode progress lines")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sigma-sim-record``; prints a JSON summary on stdout."""
    args = build_parser().parse_args(argv)
    if args.episodes <= 0:
        raise SystemExit("--episodes must be positive")
    config = SimConfig(control_hz=float(args.fps), image_width=args.image_size, image_height=args.image_size)
    summary = record_dataset(
        args.root,
        args.episodes,
        seed=args.seed,
        repo_id=args.repo_id,
        sim_config=config,
        keep_failed=args.keep_failed,
        env_state=args.env_state,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(json.dumps(asdict(summary), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
