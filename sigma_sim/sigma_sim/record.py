# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Record scripted-expert demonstrations as a LeRobot (v3.0) dataset, with LeRobot's ``LeRobotDataset``.

Each frame holds what a LeRobot SO-101 recording holds::

    observation.images.front  uint8 (H, W, 3)  front camera, before the action
    observation.state         float32 (6,)     measured joint angles (rad)
    action                    float32 (6,)     joint position targets sent (rad)
    task                      str              the instruction

The dataset is written with LeRobot's ``LeRobotDataset.create / add_frame / save_episode /
finalize`` (``sigma_model.data.lerobot_io``); camera frames are PNG images, or AV1 video with
``--video=true``. :func:`episode_frames` yields the per-frame dicts.

Command line (``sigma-sim-record``; every RecordConfig field is ``--field=value``, draccus,
:mod:`sigma_model.cli`)::

    sigma-sim-record --root=data/so101_sim --episodes=100 --seed=0

Episode ``i`` uses seed ``seed + i`` (cube pose) and alternates the placement
region (left, right, left, ...); the instruction wording is drawn from
:data:`sigma_sim.so101_env.INSTRUCTIONS` with the same seed. Episodes the
expert fails (rare) are skipped unless ``--keep_failed=true``; the next seed is
used instead, so the dataset still has ``--episodes`` episodes.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import sys
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from sigma_model.cli import fail, parse_cli

from sigma_sim.expert import ExpertConfig, ScriptedExpert, expert_episode
from sigma_sim.instructions import INSTRUCTIONS, episode_wording
from sigma_sim.so101_env import JOINT_NAMES, SimConfig, SO101PickPlaceEnv

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
PROG = "sigma-sim-record"
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
    """Instruction of episode ``episode_index``: regions alternate, template wording drawn from ``seed``."""
    return episode_wording(episode_index, seed, INSTRUCTIONS)


def episode_frames(
    env: SO101PickPlaceEnv,
    seed: int,
    instruction: str | None = None,
    expert: ScriptedExpert | None = None,
    env_state: bool = False,
    action_noise: float = 0.0,
    lead=None,
    lead_steps: int = 0,
) -> Iterator[tuple[dict[str, np.ndarray], str]]:
    """Yield ``(frame, task)`` for one expert episode; returns its :class:`EpisodeResult`.

    ``frame`` is ``{"observation.images.front": HxWx3 uint8, "observation.state":
    float32[6], "action": float32[6]}`` (plus the environment state if asked),
    ready for ``LeRobotDataset.add_frame({**frame, "task": task})``; ``action_noise``, ``lead``
    and ``lead_steps`` as in :func:`sigma_sim.expert.expert_episode`.
    """
    if not env.config.render_observations:
        raise ValueError("recording needs an env with render_observations=True")
    gen = expert_episode(env, seed=seed, instruction=instruction, expert=expert, action_noise=action_noise,
                         lead=lead, lead_steps=lead_steps)
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


# One simulator + expert per recording process (the main one, or each worker).
_WORKER: dict[str, object] = {}


def _init_simulator(
    sim_config: SimConfig, expert_config: ExpertConfig | None, lead_checkpoint: str | None = None
) -> None:
    env = SO101PickPlaceEnv(sim_config)
    _WORKER.update(env=env, expert=ScriptedExpert(env, expert_config), lead=None)
    if lead_checkpoint:
        import torch

        from sigma_model import load_checkpoint
        from sigma_sim.closed_loop import SigmaPolicy

        torch.set_num_threads(1)
        _WORKER["lead"] = SigmaPolicy(load_checkpoint(lead_checkpoint))


def lead_steps_for(seed: int, max_steps: int) -> int:
    """Ticks a lead policy acts before the expert takes over (episode ``seed``).

    0 (a plain demonstration) for a third of the episodes, else uniform in 1..max_steps.
    """
    if max_steps <= 0:
        return 0
    rng = np.random.default_rng(seed + 5_555_555)
    plain = rng.random() < 1 / 3
    steps = int(rng.integers(1, max_steps + 1))
    return 0 if plain else steps


def _simulate_episode(seed: int, index: int, env_state: bool, action_noise: float, lead_max_steps: int = 0):
    """All ``(frame, task)`` pairs of one expert episode and its :class:`EpisodeResult`."""
    env, instruction = _WORKER["env"], instruction_for_episode(index, seed)
    policy, lead, steps = _WORKER["lead"], None, 0
    if policy is not None:
        from sigma_sim.closed_loop import ClosedLoopConfig, episode_safety_filter, filtered_command

        policy.reset(instruction, seed)
        safety, ticks = episode_safety_filter(ClosedLoopConfig()), itertools.count(1)
        steps = lead_steps_for(seed, lead_max_steps)

        def lead(obs):  # the policy as the closed-loop evaluation runs it, safety filter included
            return filtered_command(safety, policy.act(obs), obs["joint_positions"], next(ticks) * env.control_dt)[0]
    gen = episode_frames(env, seed, instruction, expert=_WORKER["expert"], env_state=env_state,
                         action_noise=action_noise, lead=lead, lead_steps=steps)
    frames = []
    while True:
        try:
            frames.append(next(gen))
        except StopIteration as stop:
            return frames, stop.value


def _episodes(init: tuple, options: tuple, seed: int, workers: int, keep_failed: bool, summary: "RecordSummary",
              num_episodes: int, max_tries: int):
    """Yield ``(seed, frames, result)`` in seed order until the summary has enough episodes.

    ``init`` are :func:`_init_simulator`'s arguments, ``options`` the per-episode ones of
    :func:`_simulate_episode` after (seed, index). An episode's instruction depends on how many
    episodes were stored before it, so the workers run ahead assuming every in-flight episode
    succeeds; after a skipped failure the in-flight episodes are simulated again with their
    corrected index (failures are rare).
    """
    if workers == 1:
        _init_simulator(*init)
        try:
            ep_seed = seed
            while summary.episodes < num_episodes and summary.attempted < max_tries:
                yield ep_seed, *_simulate_episode(ep_seed, summary.episodes, *options)
                ep_seed += 1
        finally:
            _WORKER.pop("env").close()
            _WORKER.clear()
        return
    context = multiprocessing.get_context("spawn")  # fresh GL state per process
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_simulator, initargs=init) as pool:
        pending: deque[tuple[int, Future]] = deque()  # (seed, simulation)

        def submit(ep_seed: int) -> None:
            index = summary.episodes + len(pending)
            pending.append((ep_seed, pool.submit(_simulate_episode, ep_seed, index, *options)))

        next_seed = seed
        while True:
            while (len(pending) < 2 * workers and summary.attempted + len(pending) < max_tries
                   and summary.episodes + len(pending) < num_episodes):
                submit(next_seed)
                next_seed += 1
            if not pending:
                return
            ep_seed, future = pending.popleft()
            frames, result = future.result()
            yield ep_seed, frames, result
            if not (result.success or keep_failed):
                stale = list(pending)
                pending.clear()
                for s, f in stale:
                    f.cancel()
                    submit(s)


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
    workers: int = 1,
    lead_checkpoint: str | Path | None = None,
    lead_max_steps: int = 150,
    video: bool = False,
) -> RecordSummary:
    """Record ``num_episodes`` expert episodes into a LeRobot v3.0 dataset at ``root`` (``LeRobotDataset``).

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
        workers: Simulate episodes in this many processes (the dataset is the same as with one).
        lead_checkpoint: A Sigma checkpoint that acts first in each episode (for
            :func:`lead_steps_for` ticks, up to ``lead_max_steps``, not recorded) before the expert
            takes over: DAgger-style demonstrations of recovering from the policy's own mistakes.
        video: Store the camera as AV1 video instead of PNG images (smaller, slower to read).
    """
    from sigma_model.data.lerobot_io import (
        create_lerobot_dataset, finalize_lerobot_dataset, quiet_progress, replacing_dataset,
    )

    sim_config = sim_config or SimConfig()
    if not sim_config.render_observations:
        raise ValueError("recording needs render_observations=True")
    fps = int(round(sim_config.control_hz))
    if abs(fps - sim_config.control_hz) > 1e-9:
        raise ValueError("LeRobot datasets need an integer fps: use an integer control_hz")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if lead_checkpoint is not None:
        lead_checkpoint = str(lead_checkpoint)
    with replacing_dataset(root, overwrite) as partial_root:  # the dataset before stays until this one is complete
        dataset = create_lerobot_dataset(
            partial_root,
            repo_id=repo_id,
            fps=fps,
            features=dataset_features(sim_config.image_height, sim_config.image_width, env_state),
            robot_type=ROBOT_TYPE,
            video=video,
        )
        max_tries = max_seed_tries or 2 * num_episodes + 10
        summary = RecordSummary(root=str(root), episodes=0, frames=0, attempted=0, fps=fps)
        t0 = time.perf_counter()
        try:
            with quiet_progress():
                episodes = _episodes((sim_config, expert_config, lead_checkpoint),
                                     (env_state, action_noise, lead_max_steps), seed, workers, keep_failed, summary,
                                     num_episodes, max_tries)
                for ep_seed, frames, result in episodes:
                    summary.attempted += 1
                    if result.success or keep_failed:
                        for frame, task in frames:
                            dataset.add_frame({**frame, "task": task})
                        dataset.save_episode()
                        summary.episodes += 1
                        summary.frames += len(frames)
                        summary.instructions[result.instruction] = summary.instructions.get(result.instruction, 0) + 1
                    if not result.success:
                        summary.failed_seeds.append(ep_seed)
                    if progress:
                        print(
                            f"[sigma-sim-record] seed {ep_seed}: {'ok' if result.success else 'FAILED'} "
                            f"{len(frames)} frames, {result.instruction!r} ({summary.episodes}/{num_episodes})",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            finalize_lerobot_dataset(dataset)
        summary.seconds = time.perf_counter() - t0
        summary.success_rate = 1.0 - len(summary.failed_seeds) / max(1, summary.attempted)
        if summary.episodes < num_episodes:
            raise RuntimeError(
                f"only {summary.episodes}/{num_episodes} successful episodes in {summary.attempted} tries"
            )
    return summary


@dataclass
class RecordConfig:
    """sigma-sim-record: scripted SO-101 pick-and-place demonstrations (MuJoCo) as a LeRobot v3.0 dataset."""

    root: str | None = None  # output dataset directory; required
    episodes: int = 50  # number of episodes to store
    seed: int = 0  # seed of the first episode
    repo_id: str = DEFAULT_REPO_ID  # LeRobot repo_id
    fps: int = 30  # control rate = dataset fps
    image_size: int = 96  # square camera image size
    env_state: bool = False  # also store the cube pose
    keep_failed: bool = False  # store failed expert episodes too
    overwrite: bool = False  # replace an existing dataset
    workers: int = 1  # simulate episodes in this many processes
    # a Sigma checkpoint that acts first in each episode before the expert takes over (DAgger)
    lead_checkpoint: str | None = None
    lead_max_steps: int = 150  # longest lead in ticks
    video: bool = False  # store the camera as AV1 video instead of PNG images (smaller, slower to read)
    quiet: bool = False  # no per-episode progress lines

    def __post_init__(self) -> None:
        if not self.root:
            raise ValueError("--root is required")
        if self.episodes <= 0 or self.fps <= 0 or self.image_size <= 0 or self.workers <= 0:
            raise ValueError("--episodes, --fps, --image_size and --workers must be positive")
        if self.lead_max_steps <= 0:
            raise ValueError(f"--lead_max_steps must be positive, got {self.lead_max_steps}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0 (episode seeds are seed + i), got {self.seed}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sigma-sim-record``; prints a JSON summary on stdout."""
    cfg = parse_cli(RecordConfig, argv, PROG, description=__doc__)
    sim_config = SimConfig(control_hz=float(cfg.fps), image_width=cfg.image_size, image_height=cfg.image_size)
    try:
        summary = record_dataset(
            cfg.root,
            cfg.episodes,
            seed=cfg.seed,
            repo_id=cfg.repo_id,
            sim_config=sim_config,
            keep_failed=cfg.keep_failed,
            env_state=cfg.env_state,
            overwrite=cfg.overwrite,
            progress=not cfg.quiet,
            workers=cfg.workers,
            lead_checkpoint=cfg.lead_checkpoint,
            lead_max_steps=cfg.lead_max_steps,
            video=cfg.video,
        )
    except (FileExistsError, ValueError) as err:
        fail(PROG, err)
    print(json.dumps(asdict(summary), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
