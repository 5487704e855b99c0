# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""``sigma-robot``: any LeRobot robot as the robot side of the Sigma graph (node ``robot_node``).

A thin shell around :class:`sigma_model.robot_bridge.RobotBridge` (connection, calibration, units,
safety, torque policy: see there). The robot is chosen by ``robot.type`` (``so101_follower`` by
default; every LeRobot robot and installed ``lerobot_robot_*`` plugin, e.g. the simulated
``sigma_so101_sim``) with its LeRobot config (``robot.port``, ``robot.id``,
``robot.calibration_dir``, and any other field in ``robot.config``, a YAML mapping such as
``{cameras: {front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}}``).

publishes
    ``joint_states``                  sensor_msgs/JointState, radians, ``joint_names`` order, each tick
    ``camera/image_raw``              sensor_msgs/Image (rgb8) of the main camera (``main_camera``, default
                                      the first), each new frame, stamped at its capture when the camera
                                      says when (LeRobot's threaded cameras), else at the read
    ``camera/<key>/image_raw``        the other cameras
subscribes
    ``sigma/motor_commands``          trajectory_msgs/JointTrajectory (its first point, by joint name) or
                                      std_msgs/Float64MultiArray (``command_type``): joint targets (rad)

Each tick (``rate_hz``) sends the filtered target with ``robot.send_action`` and reads the robot
(``robot.get_observation``); joint states are stamped when the read started. Bad commands are
refused and counted (``sigma/status``); the arm holds. On exit (SIGINT) the node holds at the
measured position and disconnects; the torque stays on unless ``torque_on_exit`` is ``release``.

Command line (the robot fields as LeRobot's scripts take them, then the ROS arguments)::

    sigma-robot robot.type=so101_follower robot.port=/dev/ttyACM0 robot.id=my_follower
    sigma-robot --robot.type=sigma_so101_sim --ros-args -p rate_hz:=30.0
    sigma-robot --help                # the options and every robot type
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

from sigma_model.robot_bridge import TORQUE_POLICIES, BridgeError, RobotBridge, make_robot, robot_types
from sigma_model.freshness import StampGate
from sigma_model.robot_units import UNIT_CHOICES
from sigma_model.safety import MODE_TRACK
from sigma_ros import graph, qos
from sigma_ros.node_base import NodeConfigError, Param, SigmaNode, run_node, stamp_key, topic

COMMAND_TYPES = ("joint_trajectory", "float64_multi_array")
#: robot fields set by their own parameter (``robot.<field>``); the rest go in ``robot.config``
ROBOT_FIELDS = ("type", "port", "id", "calibration_dir")

ROBOT_PARAMS: tuple[Param, ...] = (
    Param("robot.type", "so101_follower", "LeRobot robot type (sigma-robot --help lists them)"),
    Param("robot.port", "", "Serial port of the robot's motor bus, e.g. /dev/ttyACM0 (empty: not passed)"),
    Param("robot.id", "", "Robot id: names its calibration file <calibration_dir>/<id>.json (empty: LeRobot's None)"),
    Param("robot.calibration_dir", "", "Calibration folder (empty: LeRobot's, "
          "~/.cache/huggingface/lerobot/calibration/robots/<robot name>)"),
    Param("robot.config", "", "More fields of the robot's LeRobot config, a YAML mapping, e.g. "
          "{cameras: {front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}}"),
    Param("rate_hz", 30.0, "Control and read rate (Hz)", min=0.1, max=1000.0),
    Param("command_type", "joint_trajectory", "Motor command message type (the controller's output_type)",
          choices=COMMAND_TYPES),
    Param("command_timeout_s", 0.5, "Hold the last target when no command arrived for this long (s)",
          min=0.001, max=3600.0),
    Param("max_step_rad", [0.2], "Max change of the target per tick, against the previous target and the "
          "measured position (rad): one value or one per joint"),
    Param("max_relative_target_rad", [0.25], "LeRobot's max_relative_target (the robot's own cap on "
          "|goal - present|, in rad; converted to its units), set when its config has it unset; 0: leave it"),
    Param("range_lower_rad", [], "Joint angles (rad) at the low end of a motor's normalised range (range_m100_100: "
          "-100, range_0_100: 0), joint_names order; empty: each joint's built-in one by name (the SO-101's joint "
          "limits)", item_type=float),
    Param("range_upper_rad", [], "Joint angles (rad) at the high end of a motor's normalised range (+100), "
          "joint_names order; empty: each joint's built-in one by name (the SO-101's joint limits)", item_type=float),
    Param("motor_units", "auto", "auto: each motor's unit from the robot's bus; degrees or radians: for "
          "every joint of a robot without a motor bus", choices=UNIT_CHOICES),
    Param("torque_on_exit", "hold", "hold: the motors keep their torque after the node exits (the arm "
          "stays put); release: torque off (the arm falls under gravity)", choices=TORQUE_POLICIES),
    Param("main_camera", "", "Camera published on camera/image_raw (empty: the first); others on "
          "camera/<key>/image_raw"),
)


class RobotConfigError(NodeConfigError):
    """The robot node cannot start as configured (one line)."""


def robot_fields(params) -> dict[str, Any]:
    """Return the robot's LeRobot config fields from the node's ``robot.*`` parameters."""
    import yaml

    fields: dict[str, Any] = {}
    text = getattr(params, "robot.config")
    if text.strip():
        try:
            extra = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise RobotConfigError(f"robot.config is not YAML: {err}") from err
        if not isinstance(extra, dict):
            raise RobotConfigError(f"robot.config must be a YAML mapping, got {text!r}")
        fields.update(extra)
    for name in ROBOT_FIELDS[1:]:
        value = getattr(params, f"robot.{name}")
        if value:
            fields[name] = value
    return fields


class RobotNode(SigmaNode):
    """See the module docstring.

    ``robot``: a LeRobot robot to bridge instead of the one the ``robot.*`` parameters describe (the simulator node
    passes its own).
    """

    PARAMS = ROBOT_PARAMS
    #: Read the robot once when connecting (the simulator node reads first in its spinning thread,
    #: which owns the renderer's OpenGL context).
    READ_ON_CONNECT = True
    #: QoS of the motor command subscription (the simulator node checks every command: a deeper queue)
    COMMAND_QOS = qos.COMMAND

    def __init__(self, robot: Any = None, node_name: str = "robot_node", **kwargs) -> None:
        self._robot = robot
        super().__init__(node_name, **kwargs)
        # the robot side of the graph manages itself: connected (configured) and active from the start;
        # a failed configure leaves ``config_error`` set (run_node: one line, EXIT_CONFIG_ERROR)
        self.trigger_configure()
        if not self.config_error:
            self.trigger_activate()

    # -------------------------------------------------------------- set up
    def configure(self, robot: Any = None) -> None:
        """Make (unless given here or to the constructor) and connect the robot.

        Then the publishers and subscriptions.
        """
        robot = robot if robot is not None else self._robot
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory

        p = self.p
        n = len(p.joint_names)
        try:
            self.robot = robot if robot is not None else make_robot(getattr(p, "robot.type"), robot_fields(p))
            rel = p.max_relative_target_rad
            self.bridge = RobotBridge(
                self.robot, p.joint_names, p.joint_lower_limits, p.joint_upper_limits,
                p.range_lower_rad, p.range_upper_rad, max_step=_per_joint(p.max_step_rad, n),
                command_timeout_s=p.command_timeout_s, measurement_tolerance=p.joint_state_tolerance_rad,
                max_relative_target=None if not any(rel) else _per_joint(rel, n), motor_units=p.motor_units,
                torque_on_exit=p.torque_on_exit, robot_type=getattr(p, "robot.type") if robot is None else None)
            cams = self.bridge.cameras
            main = p.main_camera or (cams[0] if cams else "")
            if main and main not in cams:
                raise RobotConfigError(f"main_camera {main!r} is not a camera of the robot (cameras: {cams})")
            first = self.bridge.connect(read=self.READ_ON_CONNECT)
        except (BridgeError, RobotConfigError) as err:
            raise RobotConfigError(str(err)) from err
        except (
            ConnectionError,
            OSError,
            ValueError,
            KeyError,
            RuntimeError,
        ) as err:  # LeRobot: RuntimeError for a motor check
            raise RobotConfigError(f"robot {getattr(p, 'robot.type')}: {type(err).__name__}: {err}") from err
        lo, hi = self.bridge.limits
        self.get_logger().info(
            f"connected {self.robot.name} (id {self.robot.id!r}): units {self.bridge.units.describe()}; limits (rad) "
            f"{np.round(lo, 4).tolist()} .. {np.round(hi, 4).tolist()}; torque on exit: "
            f"{p.torque_on_exit}"
        )
        self.joint_pub = self.create_publisher(JointState, topic("joint_states"), qos.SENSOR)
        self.image_pubs = {key: self.create_publisher(
            Image, topic("camera") if key == main else f"camera/{key}/image_raw", qos.SENSOR) for key in cams}
        self._command_type = "trajectory_msgs/msg/JointTrajectory" if p.command_type == "joint_trajectory" \
            else "std_msgs/msg/Float64MultiArray"
        msg_type = JointTrajectory if p.command_type == "joint_trajectory" else Float64MultiArray
        # a trajectory's stamp: one older than command_timeout_s (it sat in a queue) or from the future is refused;
        # unstamped ones (ros2 topic pub) count as sent now; Float64MultiArray has no stamp
        self.command_gate = StampGate("motor_commands", p.command_timeout_s, p.stamp_future_tolerance_s,
                                      allow_unstamped=True)
        self.create_subscription(msg_type, topic("motor_commands"), self.guarded("motor_commands", self.on_command),
                                 self.COMMAND_QOS)
        self.ticks = 0
        if first is not None:
            self.publish_observation(first)
        self.set_mode("hold", "no command yet")

    def activate(self) -> None:
        """Start ticking; the timer keeps running while deactivated (commands ignored: the bridge holds)."""
        if getattr(self, "timer", None) is None:
            self.timer = self.create_timer(1.0 / self.p.rate_hz, self.on_tick)

    # ------------------------------------------------------------- commands
    def on_command(self, msg) -> None:
        from sigma_ros.bag_messages import action_to_vector

        target = action_to_vector(msg, self._command_type, self.p.joint_names, "motor_commands")
        self.accept_command_stamp(msg)
        self.bridge.command(target, time.monotonic())

    def accept_command_stamp(self, msg) -> None:
        """Refuse (StaleInput) a command whose header stamp is too old, from the future or out of order."""
        if hasattr(msg, "header"):
            self.command_gate.accept(stamp_key(msg.header), self.get_clock().now().nanoseconds)

    def restart_streams(self) -> None:
        """Start the command stamps over (the clock jumped back)."""
        self.command_gate.reset()

    # ----------------------------------------------------------------- loop
    def on_tick(self) -> None:
        self.step()

    def step(self, send: bool = True):
        """One tick: send the filtered target (unless ``send`` is False), read, publish."""
        self.ticks += 1
        self.stats.event("ticks")
        tick = self.bridge.tick(time.monotonic(), send=send)
        decision = tick.decision
        if tick.error:
            self.reject("robot_io", tick.error)
        if decision.fault:
            self.stats.drop("joint_state_faults", "; ".join(decision.reasons))
        if tick.sent is not None:
            self.stats.event("commands_out")
        reason = "; ".join(decision.reasons).replace("plan", "command")  # the filter's words for the controller
        self.set_mode("running" if decision.mode == MODE_TRACK else decision.mode, reason)
        if tick.observation is not None:
            self.publish_observation(tick.observation)
        return tick

    def publish_observation(self, obs) -> None:
        from sigma_ros.conversions import array_to_image, make_joint_state, time_from_ns

        clock = self.get_clock()
        now_ns, mono = clock.now().nanoseconds, time.monotonic()
        stamp_ns = now_ns - int((mono - obs.t_read) * 1e9)
        self.joint_pub.publish(make_joint_state(obs.positions, self.p.joint_names, time_from_ns(stamp_ns)))
        for key, frame in obs.frames.items():
            t_ns = stamp_ns - int(obs.frame_ages.get(key, 0.0) * 1e9)
            try:
                image = array_to_image(frame, "rgb8", time_from_ns(t_ns), frame_id=key)
            except ValueError as err:  # a camera's bad frame (not HxWx3 uint8) is dropped, the loop goes on
                self.reject("robot_io", f"camera {key}: {err}")
                continue
            self.image_pubs[key].publish(image)
            self.stats.event(f"frames_{key}")

    # --------------------------------------------------------------- status
    def extra_metrics(self) -> dict[str, float]:
        b = self.bridge
        return {"commands_in": float(b.commands_in), "read_errors": float(b.read_errors),
                "send_errors": float(b.send_errors), "holds": float(b.safety.holds),
                "rejected_targets": float(b.safety.rejected_targets), "joint_state_faults": float(b.safety.faults)}

    def shutdown(self) -> None:
        """Hold at the measured position and disconnect (torque per ``torque_on_exit``).

        Also after rclpy's SIGINT handler has already destroyed the node's timer.
        """
        from rclpy.exceptions import InvalidHandle

        timer = getattr(self, "timer", None)
        if timer is not None:
            try:
                timer.cancel()
            except InvalidHandle:  # destroyed with the node: it cannot fire any more
                pass
        if getattr(self, "bridge", None) is not None:
            self.bridge.close()


def _per_joint(values, n: int) -> np.ndarray:
    values = list(values)
    return np.asarray(values if len(values) > 1 else values * n, dtype=np.float64)


# ------------------------------------------------------------------- command line
def split_robot_args(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``robot.<field>=<value>`` / ``--robot.<field>=<value>`` (before ``--ros-args``) -> parameter overrides.

    The other arguments are returned unchanged.
    """
    import yaml

    overrides: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    rest: list[str] = []
    in_ros = False
    for arg in argv:
        in_ros = in_ros or arg == "--ros-args"
        name = arg[2:] if arg.startswith("--robot.") else arg
        if in_ros or not name.startswith("robot.") or "=" not in name:
            rest.append(arg)
            continue
        key, value = name[len("robot."):].split("=", 1)
        if key in ROBOT_FIELDS:
            overrides[f"robot.{key}"] = value
        else:
            try:
                extra[key] = yaml.safe_load(value)
            except yaml.YAMLError as err:
                raise SystemExit(f"sigma-robot: robot.{key}: not a YAML value: {err}")
    if extra:
        overrides["robot.config"] = json.dumps(extra)
    return overrides, rest


def usage() -> str:
    lines = [__doc__.split("\n\n")[0], "", "usage: sigma-robot [robot.<field>=<value> ...] [--ros-args ...]", "",
             "parameters (node robot_node; also in config/sigma.yaml):"]
    lines += [f"  {p.name} = {p.default!r}: {p.description}" for p in ROBOT_PARAMS]
    lines += ["", "robot types: " + ", ".join(robot_types())]
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    argv = list(sys.argv if args is None else args)
    head = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in head or "--help" in head:
        print(usage())
        return 0
    overrides, rest = split_robot_args(argv[1:])
    ros_args = [argv[0], *rest]
    if overrides:  # after the user's own --ros-args: the robot.* arguments win over a --params-file
        extra = graph.ros_arguments(None, [], overrides)
        ros_args += extra[1:] if "--ros-args" in rest else extra
    return run_node(RobotNode, ros_args)


if __name__ == "__main__":
    raise SystemExit(main())
