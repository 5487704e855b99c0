"""Simulated SO-101 as a ROS 2 node: the robot side of the Sigma graph, for running without a robot.

Wraps :class:`sigma_sim.SO101PickPlaceEnv` (MuJoCo, headless rendering) and talks the same
topics a real SO-101 setup would (default names from :mod:`sigma_ros.graph`, remappable):

publishes
    ``camera/image_raw``      sensor_msgs/Image, rgb8, ``image_size`` square, at ``camera_hz``
    ``joint_states``          sensor_msgs/JointState (positions + velocities), every control tick
    ``audio``                 sigma_ros_msgs/AudioChunk, silent (or low noise) mono 16 kHz, every
                              ``audio_chunk_s``
    ``sim/env_state``         std_msgs/Float64MultiArray, PRIVILEGED simulator state: the cube pose
                              (``sigma_sim.closed_loop.cube_env_state``, ``env_state_encoding``) with
                              every camera frame, for models trained with ``env_state_dim = 7`` (not
                              available on a real robot)
    ``sim/episode_status``    std_msgs/String, JSON: episode, seed, instruction, target, step,
                              time, success, done, was_lifted, cube_pos (at ``status_hz`` and on
                              every episode event)
subscribes
    ``sigma/motor_commands``  trajectory_msgs/JointTrajectory (the last point's positions, by joint
                              name) or std_msgs/Float64MultiArray (``command_type``), the joint
                              position targets the controller node publishes
    ``sim/reset``             std_msgs/String: JSON ``{"seed": int, "instruction": str}`` (both
                              optional) starts a new episode

Stepping (``step_mode``): ``timer`` steps the physics one control period per tick of a wall-clock
timer at ``control_hz * real_time_factor`` (1.0 = real time); ``on_command`` steps once per received
motor command (lock-step with the controller, as fast as it runs). The newest command is held
between ticks (position servos). After a reset the sim publishes sensors without stepping for
``reset_hold_s``, so the graph plans for the new scene before the arm moves.

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
from sigma_ros.graph import TOPIC_BY_KEY

COMMAND_TYPES = ("joint_trajectory", "float64_multi_array")
STEP_MODES = ("timer", "on_command")
EPISODE_STATUS_TOPIC = "sim/episode_status"
ENV_STATE_TOPIC = "sim/env_state"
RESET_TOPIC = "sim/reset"

#: (name, default, description)
PARAMS: tuple[tuple[str, Any, str], ...] = (
    ("control_hz", 30.0, "Physics steps per simulated second (control period of the arm)"),
    ("real_time_factor", 1.0, "Timer mode: wall-clock speed of the simulation (1.0 = real time)"),
    ("step_mode", "timer", "timer (wall-clock stepping) or on_command (one step per motor command)"),
    ("camera_hz", 30.0, "Camera frame rate (simulated time)"),
    ("image_size", 96, "Square camera image size (pixels)"),
    ("audio_chunk_s", 0.1, "Audio chunk length (s); chunks are published at 1 / audio_chunk_s Hz"),
    ("audio_sample_rate", 16000, "Audio sample rate (Hz)"),
    ("audio_noise", 0.0, "Standard deviation of the synthetic audio (0 = silence)"),
    ("command_type", "joint_trajectory", "Motor command message type (the controller node's output_type)"),
    ("seed", 0, "Seed of the first episode (cube pose, instruction wording)"),
    ("instruction", "", "Instruction of the first episode (empty: drawn from the seed)"),
    ("max_episode_s", 15.0, "An episode ends (done, failed) after this much simulated time"),
    ("success_hold_s", 0.17, "The task must stay solved this long for the episode to succeed"),
    ("reset_hold_s", 0.5, "After a reset, publish sensors without stepping for this long (wall-clock s)"),
    ("env_state_encoding", "cube_pose_normalized_v1", "Encoding of sim/env_state (raw = x, y, z, qw, qx, qy, qz)"),
    ("auto_reset", False, "Start the next episode (seed + 1) automatically when one is done"),
    ("status_hz", 2.0, "Episode status rate (Hz)"),
    ("joint_names", ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"],
     "Joint names in the order of the simulator's joints"),
)


def _declare(node, params) -> dict[str, Any]:
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for name, default, description in params:
        values[name] = node.declare_parameter(name, default, ParameterDescriptor(description=description,
                                                                                  read_only=True)).value
    return values


def make_sim_node_class():
    """The node class (built lazily, so importing this module needs no rclpy)."""
    from rclpy.node import Node

    class SO101SimNode(Node):
        """The simulated SO-101 (see the module docstring)."""

        def __init__(self, env=None, **kwargs) -> None:
            super().__init__("sim_node", **kwargs)
            from sensor_msgs.msg import Image, JointState
            from std_msgs.msg import Float64MultiArray, String
            from trajectory_msgs.msg import JointTrajectory
            from sigma_ros_msgs.msg import AudioChunk

            self.p = _declare(self, PARAMS)
            p = self.p
            if p["step_mode"] not in STEP_MODES:
                raise ValueError(f"step_mode must be one of {STEP_MODES}, got {p['step_mode']!r}")
            if p["command_type"] not in COMMAND_TYPES:
                raise ValueError(f"command_type must be one of {COMMAND_TYPES}, got {p['command_type']!r}")
            if not (p["control_hz"] > 0 and p["real_time_factor"] > 0 and p["camera_hz"] > 0):
                raise ValueError("control_hz, real_time_factor and camera_hz must be > 0")
            self.joint_names = list(p["joint_names"])
            if env is None:
                from sigma_sim.so101_env import SimConfig, SO101PickPlaceEnv

                size = int(p["image_size"])
                env = SO101PickPlaceEnv(SimConfig(control_hz=float(p["control_hz"]), image_width=size,
                                                  image_height=size, render_observations=False,
                                                  max_episode_steps=10**9))
            self.env = env
            self.lock = threading.RLock()
            #: Notified (under ``lock``) when an episode starts or ends.
            self.episode_changed = threading.Condition(self.lock)
            self.camera_every = max(1, int(round(p["control_hz"] / p["camera_hz"])))
            self.audio_samples = max(1, int(round(p["audio_chunk_s"] * p["audio_sample_rate"])))
            self.audio_every = max(1, int(round(p["audio_chunk_s"] * p["control_hz"])))
            self.success_hold = max(1, int(math.ceil(p["success_hold_s"] * p["control_hz"] - 1e-9)))
            self.max_steps = max(1, int(round(p["max_episode_s"] * p["control_hz"])))
            self.rng = np.random.default_rng(int(p["seed"]))
            self._String = String

            t = TOPIC_BY_KEY
            self.image_pub = self.create_publisher(Image, t["camera"].name, qos.SENSOR)
            self.joint_pub = self.create_publisher(JointState, t["joint_states"].name, qos.SENSOR)
            self.audio_pub = self.create_publisher(AudioChunk, t["audio"].name, qos.SENSOR)
            self.status_pub = self.create_publisher(String, EPISODE_STATUS_TOPIC, qos.STATUS)
            self.env_state_pub = self.create_publisher(Float64MultiArray, ENV_STATE_TOPIC, qos.SENSOR)
            self._Float64MultiArray = Float64MultiArray
            cmd_type = JointTrajectory if p["command_type"] == "joint_trajectory" else Float64MultiArray
            self.create_subscription(cmd_type, t["motor_commands"].name, self.on_command, qos.COMMAND)
            self.create_subscription(String, RESET_TOPIC, self.on_reset, qos.INSTRUCTION)

            # counters
            self.episode = -1
            self.commands_in = 0
            self.commands_rejected = 0
            self.steps_total = 0
            self.step_wall: list[float] = []
            self.render_wall: list[float] = []
            #: Final status of each finished episode, by episode id.
            self.results: dict[int, dict[str, Any]] = {}
            # The first episode starts on the first tick: rendering (an OpenGL context) happens only
            # in the thread that spins this node.
            self.seed = int(p["seed"])
            self.instruction = p["instruction"] or ""
            self.done = True
            self.step = 0
            self.success = False
            self.first_success_step = None
            self.commands_episode = 0
            self.max_command_step = 0.0
            self.applied = []
            self.hold_until = 0.0
            self._pending_reset: tuple | None = (int(p["seed"]), p["instruction"] or None, False)

            period = 1.0 / (p["control_hz"] * p["real_time_factor"])
            self.timer = self.create_timer(period, self.on_tick)
            self.status_timer = self.create_timer(1.0 / max(0.1, p["status_hz"]), self.publish_status)

        # ------------------------------------------------------------ episode
        def reset_episode(self, seed: int | None = None, instruction: str | None = None,
                          hold: bool = False) -> dict[str, Any]:
            """Start a new episode (seed None: the next seed); returns its status dict. With ``hold``
            the physics waits for :meth:`release_episode` (sensors keep coming), else ``reset_hold_s``."""
            from sigma_sim.record import instruction_for_episode

            with self.lock:
                self.episode += 1
                self.seed = int(seed) if seed is not None else (self.seed + 1 if self.episode else self.seed)
                if not instruction:
                    instruction = instruction_for_episode(self.episode, self.seed)
                self.obs, info = self.env.reset(seed=self.seed, instruction=instruction)
                self.instruction = self.env.instruction
                self.command = np.asarray(self.env.last_action, dtype=np.float64)
                self.step = 0
                self.streak = 0
                self.first_success_step: int | None = None
                self.success = False
                self.done = False
                self.hold_until = math.inf if hold else time.monotonic() + float(self.p["reset_hold_s"])
                self.commands_episode = 0
                self.max_command_step = 0.0
                self.applied: list[np.ndarray] = []
                self.publish_sensors(force_image=True)
                status = self.status()
                self.episode_changed.notify_all()
            self.publish_status(event="reset")
            self.get_logger().info(f"episode {self.episode}: seed {self.seed}, {self.instruction!r}")
            return status

        def request_reset(self, seed: int | None = None, instruction: str | None = None, hold: bool = False) -> int:
            """Thread-safe: start a new episode on the next tick; returns the episode id it gets."""
            with self.lock:
                self._pending_reset = (seed, instruction, hold)
                return self.episode + 1

        def release_episode(self, episode: int) -> None:
            """Thread-safe: episode ``episode``, reset with ``hold``, starts stepping now."""
            with self.lock:
                if episode != self.episode:
                    raise RuntimeError(f"release of episode {episode}, but the sim is at episode {self.episode}")
                self.hold_until = 0.0

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
                seed = data.get("seed")
                self.request_reset(None if seed is None else int(seed), data.get("instruction"))
            except Exception as err:  # noqa: BLE001 - a bad reset request must not kill the sim
                self.get_logger().error(f"bad sim/reset request {msg.data!r}: {err}")

        # ----------------------------------------------------------- commands
        def on_command(self, msg) -> None:
            try:
                if hasattr(msg, "points"):
                    if not msg.points:
                        raise ValueError("JointTrajectory without points")
                    pos = list(msg.points[-1].positions)
                    names = list(msg.joint_names)
                    if names:
                        index = {n: i for i, n in enumerate(names)}
                        pos = [pos[index[j]] for j in self.joint_names]
                else:
                    pos = list(msg.data)
                cmd = np.asarray(pos, dtype=np.float64)
                if cmd.shape != (len(self.joint_names),) or not np.isfinite(cmd).all():
                    raise ValueError(f"bad command {pos}")
            except Exception as err:  # noqa: BLE001
                self.commands_rejected += 1
                self.get_logger().warn(f"rejected motor command: {err}", throttle_duration_sec=2.0)
                return
            with self.lock:
                if self.commands_episode:
                    self.max_command_step = max(self.max_command_step, float(np.abs(cmd - self.command).max()))
                self.command = cmd
                self.commands_in += 1
                self.commands_episode += 1
            if self.p["step_mode"] == "on_command":
                self.advance()

        # --------------------------------------------------------------- loop
        def on_tick(self) -> None:
            with self.lock:  # the pending request and its reset are one step: its episode id holds
                pending, self._pending_reset = self._pending_reset, None
                if pending is not None:
                    self.reset_episode(*pending)
                    return
            if self.episode < 0:
                return
            if self.p["step_mode"] == "timer":
                self.advance()
            elif time.monotonic() < self.hold_until or self.done:
                self.publish_sensors()  # on_command: keep the sensors alive while not stepping

        def advance(self) -> None:
            """One control period: hold the newest command, step the physics, publish sensors."""
            with self.lock:
                if self.episode < 0:
                    return
                if self.done or time.monotonic() < self.hold_until:
                    self.publish_sensors()
                    return
                t0 = time.perf_counter()
                self.obs, _, _, _, info = self.env.step(self.command)
                self.applied.append(np.asarray(self.env.last_action, dtype=np.float64))
                self.step_wall.append(time.perf_counter() - t0)
                if len(self.step_wall) > 2000:
                    del self.step_wall[:1000]
                self.step += 1
                self.steps_total += 1
                event = None
                if info["success"]:
                    if self.streak == 0:
                        self.first_success_step = self.step
                    self.streak += 1
                    if self.streak >= self.success_hold:
                        self.success, event = True, "success"
                else:
                    self.streak = 0
                if event is None and self.step >= self.max_steps:
                    event = "timeout"
                if event is not None:
                    self._finish(event)
                self.publish_sensors()
            if event is not None:
                status = self.publish_status(event=event)
                self.get_logger().info(f"episode {self.episode} {event}: success={self.success} "
                                       f"t={status['time_to_success_s'] or status['time']:.2f}s")
                if self.p["auto_reset"]:
                    self.request_reset()

        def publish_sensors(self, force_image: bool = False) -> None:
            from sigma_ros.conversions import array_to_image, make_audio_chunk

            stamp = self.get_clock().now().to_msg()
            env = self.env
            js = self._joint_state(stamp)
            self.joint_pub.publish(js)
            if force_image or self.step % self.camera_every == 0 or time.monotonic() < self.hold_until or self.done:
                t0 = time.perf_counter()
                img = env.render()
                self.render_wall.append(time.perf_counter() - t0)
                if len(self.render_wall) > 2000:
                    del self.render_wall[:1000]
                from sigma_sim.closed_loop import cube_env_state

                pose = self._Float64MultiArray()
                pose.data = [float(v) for v in cube_env_state(env.cube_pos, env.cube_quat, self.p["env_state_encoding"] or None)]
                self.env_state_pub.publish(pose)  # before the frame: a subscriber pairs it with the next image
                self.image_pub.publish(array_to_image(img, "rgb8", stamp, frame_id="front_camera"))
            if force_image or self.step % self.audio_every == 0:
                noise = float(self.p["audio_noise"])
                samples = (self.rng.normal(0.0, noise, self.audio_samples) if noise > 0
                           else np.zeros(self.audio_samples)).astype(np.float32)
                self.audio_pub.publish(make_audio_chunk(samples, int(self.p["audio_sample_rate"]), 1, stamp))

        def _joint_state(self, stamp):
            from sensor_msgs.msg import JointState

            msg = JointState()
            msg.header.stamp = stamp
            msg.name = list(self.joint_names)
            msg.position = [float(v) for v in self.env.joint_positions]
            msg.velocity = [float(v) for v in self.env.joint_velocities]
            return msg

        # ------------------------------------------------------------- status
        def status(self) -> dict[str, Any]:
            from sigma_sim.closed_loop import smoothness

            env = self.env
            dt = 1.0 / float(self.p["control_hz"])
            d_cmd, jerk = smoothness(np.asarray(self.applied)) if len(self.applied) else (0.0, 0.0)
            return {
                "mean_abs_delta_command": d_cmd, "mean_sq_jerk": jerk,
                "episode": self.episode, "seed": self.seed, "instruction": self.instruction, "target": env.target,
                "step": self.step, "time": self.step * dt, "success": self.success, "done": self.done,
                "time_to_success_s": self.first_success_step * dt if self.success else None,
                "was_lifted": bool(env.was_lifted), "cube_pos": [round(float(v), 4) for v in env.cube_pos],
                "commands_in": self.commands_episode, "commands_rejected": self.commands_rejected,
                "max_command_step": self.max_command_step,
            }

        def publish_status(self, event: str | None = None) -> dict[str, Any]:
            with self.lock:
                status = self.status()
            status["event"] = event or "periodic"
            self.status_pub.publish(self._String(data=json.dumps(status)))
            return status

        def timing(self) -> dict[str, float]:
            """Mean physics-step and render wall time (ms)."""
            out = {}
            if self.step_wall:
                out["physics_step_ms"] = 1e3 * float(np.mean(self.step_wall))
            if self.render_wall:
                out["render_ms"] = 1e3 * float(np.mean(self.render_wall))
            return out

        def shutdown(self) -> None:
            try:
                self.env.close()
            except Exception:  # noqa: BLE001
                pass

    return SO101SimNode


def main(args: list[str] | None = None) -> int:
    from sigma_ros.node_base import run_node

    return run_node(make_sim_node_class(), args)


if __name__ == "__main__":
    raise SystemExit(main())
