# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Simulated SO-101 as a ROS 2 node: ``sigma-robot`` on the simulated robot, plus episodes.

The robot side is the robot bridge (:class:`sigma_ros.robot_node.RobotNode`) driving the LeRobot
robot ``sigma_so101_sim`` (:mod:`lerobot_robot_sigma_sim`, the MuJoCo scene of
:mod:`sigma_sim.so101_env` behind the interface of ``so101_follower``): the same units
conversion, safety filter, topics and command handling as on a real arm. This node adds what only
a simulator has (default names from :mod:`sigma_ros.graph`, remappable):

publishes (besides the robot node's ``joint_states`` and ``camera/image_raw``)
    ``audio``                 sigma_ros_msgs/AudioChunk, silent (or low noise) mono 16 kHz, every
                              ``audio_chunk_s``
    ``sim/env_state``         std_msgs/Float64MultiArray, PRIVILEGED simulator state: the cube pose
                              (``sigma_sim.closed_loop.cube_env_state``, ``env_state_encoding``) just
                              before every camera frame, for models trained with ``env_state_dim = 7``
    ``sim/episode_status``    std_msgs/String, JSON: episode, seed, instruction, target, step,
                              time, success, done, was_lifted, cube_pos (at ``status_hz`` and on
                              every episode event)
subscribes
    ``sim/reset``             std_msgs/String: JSON ``{"seed": int, "instruction": str}`` (both
                              optional) starts a new episode

Stepping (``step_mode``): ``timer`` ticks at ``control_hz * real_time_factor`` (1.0 = real time),
each tick one control period of physics; ``on_command`` steps once per received motor command
(lock-step with the controller), the timer only keeping the sensors alive while no command steps the physics
(the episode holds, or a controller with ``sync_plans`` and ``silent_while_waiting`` waits for its next plan:
the simulation pauses meanwhile, as the in-process evaluation does; ``sigma-demo --step_mode=on_command``);
commands that arrive while an episode holds (before its start, after its end) step nothing: those of its first plan
step it in order when it is released (``release_episode(since=...)``), the others are dropped.
After a reset the sim publishes sensors without stepping for ``reset_hold_s``, so the graph plans
for the new scene before the arm moves.

In the same process, episodes are a handshake by episode id (thread-safe, what ``sigma-demo``
uses): ``request_reset`` returns the id the new episode gets, ``wait_episode_started`` waits for it
to start, ``wait_episode_result`` returns the final status of that episode (``results``).

``python -m sigma_ros.sim_node --ros-args -p seed:=3 -p instruction:="move the cube to the left"``
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import numpy as np

from sigma_ros import qos
from sigma_ros.node_base import Param, run_node, topic
from sigma_ros.robot_node import ROBOT_PARAMS, RobotNode

STEP_MODES = ("timer", "on_command")
EPISODE_STATUS_TOPIC = "sim/episode_status"
ENV_STATE_TOPIC = "sim/env_state"
RESET_TOPIC = "sim/reset"

SIM_PARAMS: tuple[Param, ...] = (
    Param("control_hz", 30.0, "Physics steps per simulated second (control period of the arm)", min=1.0, max=1000.0),
    Param("real_time_factor", 1.0, "Timer mode: wall-clock speed of the simulation (1.0 = real time)",
          min=0.01, max=100.0),
    Param("step_mode", "timer", "timer (wall-clock stepping) or on_command (one step per motor command)",
          choices=STEP_MODES),
    Param("camera_hz", 30.0, "Camera frame rate (frames per simulated second)", min=0.1, max=1000.0),
    Param("image_size", 96, "Square camera image size (pixels)", min=8, max=4096),
    Param("audio_chunk_s", 0.1, "Audio chunk length (s); chunks are published at 1 / audio_chunk_s Hz",
          min=0.001, max=10.0),
    Param("audio_sample_rate", 16000, "Audio sample rate (Hz)", min=1, max=192000),
    Param("audio_noise", 0.0, "Standard deviation of the synthetic audio (0 = silence)", min=0.0, max=1.0),
    Param("seed", 0, "Seed of the first episode (cube pose, instruction wording)", min=0, max=2**31 - 1),
    Param("instruction", "", "Instruction of the first episode (empty: drawn from the seed)"),
    Param("max_episode_s", 15.0, "An episode ends (done, failed) after this much simulated time", min=0.01, max=1e6),
    Param("success_hold_s", 0.17, "The task must stay solved this long for the episode to succeed", min=0.0, max=60.0),
    Param("reset_hold_s", 0.5, "After a reset, publish sensors without stepping for this long (wall-clock s)",
          min=0.0, max=60.0),
    Param("env_state_encoding", "cube_pose_normalized_v1", "Encoding of sim/env_state (raw = x, y, z, qw, qx, qy, qz)"),
    Param("auto_reset", False, "Start the next episode (seed + 1) automatically when one is done"),
    Param("status_hz", 2.0, "Episode status rate (Hz)", min=0.1, max=100.0),
)


class SimNode(RobotNode):
    """The simulated SO-101 (see the module docstring). ``env``: the ``SO101PickPlaceEnv`` to use."""

    # the robot is the simulator: no robot.* parameters, the rate is control_hz * real_time_factor
    PARAMS = tuple(p for p in ROBOT_PARAMS if not p.name.startswith("robot.") and p.name != "rate_hz") + SIM_PARAMS
    COMMAND_QOS = qos.COMMAND_CHECK  # max_command_step compares every command with the one before
    READ_ON_CONNECT = False  # the first episode starts (and renders) in the thread that spins the node

    def __init__(self, env=None, **kwargs) -> None:
        self.lock = threading.RLock()
        #: Notified (under ``lock``) when an episode starts or ends.
        self.episode_changed = threading.Condition(self.lock)
        self._env = env
        super().__init__(robot=None, node_name="sim_node", **kwargs)

    def configure(self, robot=None) -> None:
        from lerobot_robot_sigma_sim import SigmaSO101Sim, SigmaSO101SimConfig
        from std_msgs.msg import Float64MultiArray, String
        from sigma_ros_msgs.msg import AudioChunk

        p = self.p
        size = int(p.image_size)
        self.audio_samples = max(1, int(round(p.audio_chunk_s * p.audio_sample_rate)))
        self.audio_every = max(1, int(round(p.audio_chunk_s * p.control_hz)))
        self.rng = np.random.default_rng(int(p.seed))
        self._String, self._Float64MultiArray = String, Float64MultiArray
        self.audio_pub = self.create_publisher(AudioChunk, topic("audio"), qos.SENSOR)
        self.status_pub_sim = self.create_publisher(String, EPISODE_STATUS_TOPIC, qos.STATUS)
        self.env_state_pub = self.create_publisher(Float64MultiArray, ENV_STATE_TOPIC, qos.SENSOR)
        self.sim = SigmaSO101Sim(SigmaSO101SimConfig(
            control_hz=p.control_hz, image_width=size, image_height=size, camera_fps=p.camera_hz, seed=p.seed,
            instruction=p.instruction, success_hold_s=p.success_hold_s, max_episode_s=p.max_episode_s), env=self._env)
        super().configure(self.sim)
        self.create_subscription(String, RESET_TOPIC, self.on_reset, qos.INSTRUCTION)
        self.episode = -1
        self.seed = int(p.seed)
        self.instruction = p.instruction or ""
        self.done = True
        self.commands_episode = 0
        self.max_command_step = 0.0
        self.last_command_in: np.ndarray | None = None
        self.applied: list[np.ndarray] = []
        self.hold_until = 0.0
        self.stepped_since_tick = False  # on_command: a command stepped the physics since the last timer tick
        self.held_commands: list[tuple[float, Any]] = []  # on_command: (monotonic s, message) while the episode holds
        #: Final status of each finished episode, by episode id.
        self.results: dict[int, dict[str, Any]] = {}
        # The first episode starts on the first tick: rendering (an OpenGL context) happens only
        # in the thread that spins this node.
        self._pending_reset: tuple | None = (int(p.seed), p.instruction or None, False)

    def activate(self) -> None:
        if getattr(self, "timer", None) is not None:
            return  # activated again after a deactivate: the timers kept running
        self.timer = self.create_timer(1.0 / (self.p.control_hz * self.p.real_time_factor), self.on_tick)
        self.status_timer = self.create_timer(1.0 / self.p.status_hz, self.publish_episode_status)

    @property
    def env(self):
        return self.sim.env

    # ------------------------------------------------------------ episode
    def start_episode(self, seed: int | None = None, instruction: str | None = None,
                      hold: bool = False) -> dict[str, Any]:
        """Start a new episode (seed None: the next seed); returns its status dict.

        With ``hold`` the physics waits for :meth:`release_episode` (sensors keep coming), else ``reset_hold_s``.
        """
        from sigma_sim.record import instruction_for_episode

        with self.lock:
            episode = self.episode + 1
            seed = int(seed) if seed is not None else (self.seed + 1 if episode else self.seed)
            self.sim.reset_episode(seed, instruction or instruction_for_episode(episode, seed))  # may refuse them
            self.episode, self.seed = episode, seed
            self.instruction = self.env.instruction
            self.bridge.forget()  # the arm was moved by the reset: hold where it is now
            self.held_commands = []
            self.done = False
            self.hold_until = math.inf if hold else time.monotonic() + float(self.p.reset_hold_s)
            self.commands_episode = 0
            self.max_command_step = 0.0
            self.last_command_in = None
            self.applied = []
            self.step(send=False)
            status = self.status()
            self.episode_changed.notify_all()
        self.publish_episode_status(event="reset")
        self.get_logger().info(f"episode {self.episode}: seed {self.seed}, {self.instruction!r}")
        return status

    def request_reset(self, seed: int | None = None, instruction: str | None = None, hold: bool = False) -> int:
        """Thread-safe: start a new episode on the next tick; returns the episode id it gets."""
        with self.lock:
            self._pending_reset = (seed, instruction, hold)
            return self.episode + 1

    def release_episode(self, episode: int, since: float | None = None) -> None:
        """Thread-safe: episode ``episode``, reset with ``hold``, starts stepping now.

        on_command: the commands that arrived while it held from ``since`` on (monotonic s, after the last command of
        the episode before and before the first of its own first plan: ``sigma_ros.demo.PlanWatch.wait``) step it
        first, in order; the earlier ones are dropped.
        """
        with self.lock:
            if episode != self.episode:
                raise RuntimeError(f"release of episode {episode}, but the sim is at episode {self.episode}")
            self.hold_until = 0.0
            held, self.held_commands = self.held_commands, []
            for arrived, msg in held:
                if since is not None and arrived >= since:
                    self.on_command(msg)

    def wait_episode_started(self, episode: int, timeout: float) -> None:
        """Thread-safe: block until episode ``episode`` has started; RuntimeError after ``timeout`` s."""
        with self.lock:
            if not self.episode_changed.wait_for(lambda: self.episode >= episode, timeout):
                raise RuntimeError(f"sim episode {episode} did not start within {timeout:g} s "
                                   f"(still at episode {self.episode})")

    def wait_episode_result(self, episode: int, timeout: float) -> dict[str, Any] | None:
        """Thread-safe: the final status of episode ``episode``, or None if it has not ended within ``timeout`` s."""
        with self.lock:
            self.episode_changed.wait_for(lambda: episode in self.results, timeout)
            return self.results.get(episode)

    def end_episode(self, episode: int, event: str) -> dict[str, Any]:
        """Thread-safe: end episode ``episode`` now (failed, ``event``) unless it has ended; its final status."""
        with self.lock:
            if episode == self.episode and not self.done:
                self._finish(event)
            if episode not in self.results:
                raise RuntimeError(f"sim episode {episode} never ran (now at episode {self.episode})")
            return self.results[episode]

    def _finish(self, event: str) -> None:
        """Under ``lock``: the current episode is done; record its final status."""
        self.done = True
        self.results[self.episode] = {**self.status(), "event": event}
        self.episode_changed.notify_all()

    def on_reset(self, msg) -> None:
        try:
            data = json.loads(msg.data) if msg.data.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            seed, instruction = data.get("seed"), data.get("instruction")
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
                raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
            if instruction is not None and not (isinstance(instruction, str) and instruction.strip()):
                raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
            self.request_reset(seed, instruction)
        except Exception as err:  # noqa: BLE001 - a bad reset request must not kill the sim
            self.get_logger().error(f"bad sim/reset request {msg.data!r}: {err}")

    # ----------------------------------------------------------- commands
    def accept_command_stamp(self, msg) -> None:
        """Take every command: lock-step replays the ones held during a reset later, older than their timeout."""

    def on_command(self, msg) -> None:
        with self.lock:
            if self.p.step_mode == "on_command" and self.holding():
                # lock-step: a command while the episode holds steps nothing; a late one of the episode before must
                # not become the next one's first target, and one of its first plan may step it at release_episode
                if not self.done:
                    self.held_commands.append((time.monotonic(), msg))
                self.stats.event("commands_while_held")
                return
            super().on_command(msg)
            cmd = self.bridge.target
            if self.last_command_in is not None:
                self.max_command_step = max(self.max_command_step, float(np.abs(cmd - self.last_command_in).max()))
            self.last_command_in = cmd
            self.commands_episode += 1
        if self.p.step_mode == "on_command":
            self.advance()
            self.stepped_since_tick = True

    # --------------------------------------------------------------- loop
    def on_tick(self) -> None:
        with self.lock:  # the pending request and its reset are one step: its episode id holds
            pending, self._pending_reset = self._pending_reset, None
            if pending is not None:
                try:
                    self.start_episode(*pending)
                except ValueError as err:  # e.g. an instruction naming no placement region: the episode goes on
                    self.get_logger().error(f"sim/reset refused: {err}")
                return
        if self.episode < 0:
            return
        if self.p.step_mode == "timer":
            self.advance()
        elif self.holding() or not self.stepped_since_tick:
            self.step(send=False)  # on_command: keep the sensors alive while no command steps the physics
        self.stepped_since_tick = False

    def holding(self) -> bool:
        return self.done or time.monotonic() < self.hold_until

    def advance(self) -> None:
        """One control period: the filtered newest command to the simulator (unless the episode holds)."""
        event = None
        with self.lock:
            if self.episode < 0:
                return
            if self.holding():
                self.step(send=False)
                return
            tick = self.step(send=True)
            if tick.sent is not None:
                self.applied.append(self.sim.applied_goal())
            sim = self.sim.episode_status()
            if sim["done"]:
                event = "success" if sim["success"] else "timeout"
                self._finish(event)
        if event is not None:
            status = self.publish_episode_status(event=event)
            self.get_logger().info(f"episode {self.episode} {event}: success={status['success']} "
                                   f"t={status['time_to_success_s'] or status['time']:.2f}s")
            if self.p.auto_reset:
                self.request_reset()

    def publish_observation(self, obs) -> None:
        from sigma_ros.conversions import make_audio_chunk

        from sigma_sim.closed_loop import cube_env_state

        if obs.frames:  # before the frame: a subscriber pairs it with the next image
            pose = self._Float64MultiArray()
            env = self.env
            pose.data = [
                float(v) for v in cube_env_state(env.cube_pos, env.cube_quat, self.p.env_state_encoding or None)
            ]
            self.env_state_pub.publish(pose)
        super().publish_observation(obs)
        if self.ticks % self.audio_every == 0:
            noise = float(self.p.audio_noise)
            samples = (self.rng.normal(0.0, noise, self.audio_samples) if noise > 0
                       else np.zeros(self.audio_samples)).astype(np.float32)
            self.audio_pub.publish(make_audio_chunk(samples, int(self.p.audio_sample_rate), 1,
                                                    self.get_clock().now().to_msg()))

    # ------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        from sigma_sim.closed_loop import smoothness

        d_cmd, jerk = smoothness(np.asarray(self.applied)) if len(self.applied) else (0.0, 0.0)
        return {
            **self.sim.episode_status(), "episode": self.episode, "seed": self.seed, "done": self.done,
            "mean_abs_delta_command": d_cmd, "mean_sq_jerk": jerk, "commands_in": self.commands_episode,
            "commands_rejected": int(self.stats.drops.get("motor_commands", 0)),
            "max_command_step": self.max_command_step,
        }

    def publish_episode_status(self, event: str | None = None) -> dict[str, Any]:
        with self.lock:
            status = self.status()
        status["event"] = event or "periodic"
        self.status_pub_sim.publish(self._String(data=json.dumps(status)))
        return status

    def timing(self) -> dict[str, float]:
        """Mean physics-step and render wall time (ms)."""
        return self.sim.timing()


def main(args: list[str] | None = None) -> int:
    return run_node(SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
