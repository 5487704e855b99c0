"""Low-level controller node: action fusion phi + C_low (paper 3.3) at a fixed rate, with safety.

Subscribes to ActionPlan and JointState. A timer at ``rate_hz`` (default 30 Hz) steps through the
newest plan by elapsed control ticks (``step_index = k`` of ``model.control_stage`` k ticks after the
camera frame the plan was computed from, read from its header stamp; k ticks after arrival when the
stamp is unusable or alignment is off), passes the target through :class:`sigma_model.safety.SafetyFilter`
(NaN rejection, watchdog hold on stale plans, per-tick max relative target, joint limits) and
publishes the command as ``trajectory_msgs/JointTrajectory`` or ``std_msgs/Float64MultiArray``
(the ros2_control joint_trajectory_controller / forward_command_controller inputs). Dry run
publishes the would-be commands on ``~/dry_run_commands`` only. Never publishes NaN.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from sigma_model.safety import MODE_TRACK, SafetyConfig, SafetyFilter
from sigma_ros import qos
from sigma_ros.conversions import ConversionError, joint_state_to_vector, plan_from_msg
from sigma_ros.node_base import Param, SigmaNode, run_node, topic
from sigma_ros.stats import Timer

OUTPUT_TYPES = ("joint_trajectory", "float64_multi_array")


class ControllerNode(SigmaNode):
    WORKSPACES = ("action",)  # fusion weights + C_low live in the action workspace
    PARAMS = (
        Param("rate_hz", 30.0, "Control rate (Hz)", min=1.0, max=1000.0),
        Param("output_type", "joint_trajectory", "Motor command message type", choices=OUTPUT_TYPES),
        Param("plan_timeout_s", 0.5, "Watchdog: hold position when the newest plan is older than this (s)",
              min=0.001, max=3600.0),
        Param("joint_state_timeout_s", 0.5, "Hold when the newest valid joint state is older than this (s)",
              min=0.001, max=3600.0),
        Param("dry_run", False, "Compute commands but publish them only on ~/dry_run_commands"),
        Param("joint_lower_limits", [-1.91986, -1.74533, -1.69, -1.65806, -2.74385, -0.17453],
              "Lower joint position limits (rad), in joint_names order"),
        Param("joint_upper_limits", [1.91986, 1.74533, 1.69, 1.65806, 2.84121, 1.74533],
              "Upper joint position limits (rad), in joint_names order"),
        Param("max_step_rad", [0.15], "Max change of the command relative to the measured position per "
              "control tick (rad): one value for all joints or one per joint"),
        Param("trajectory_time_from_start_s", 0.0, "time_from_start of the JointTrajectory point "
              "(0: one control period)", min=0.0, max=10.0),
        Param("align_plans_to_stamp", True, "Start a plan at the tick of its camera frame (header stamp), so "
              "the pipeline latency does not delay every plan; stamps in the future or older than "
              "plan_timeout_s start at tick 0"),
        Param("min_plan_ticks", 0, "Run a plan for at least this many control ticks before switching to a "
              "newer one (1: always the newest; 0: the model's n_action_steps, as the closed-loop "
              "evaluation replans)", min=0, max=1000),
        Param("publish_hold_without_plan", True, "Publish the hold command before the first plan "
              "(false: stay silent until a plan arrives)"),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("controller_node", **kwargs)
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory
        from sigma_ros_msgs.msg import ActionPlan

        n = len(self.p.joint_names)
        if n != self.config.action_dim:
            raise ValueError(f"joint_names has {n} joints but the model's action_dim is {self.config.action_dim}")
        max_step = self.p.max_step_rad
        self.safety = SafetyFilter(SafetyConfig(
            lower=self.p.joint_lower_limits, upper=self.p.joint_upper_limits,
            max_step=max_step[0] if len(max_step) == 1 else max_step,
            plan_timeout_s=self.p.plan_timeout_s, dry_run=self.p.dry_run, joint_names=self.p.joint_names,
        ))
        self.period = 1.0 / self.p.rate_hz
        self._Float64MultiArray, self._JointTrajectory = Float64MultiArray, JointTrajectory
        self.plan = None  # (ActionOutput, plan_id, receive time)
        self.plan_start_tick = 0  # step_index of the plan's first tick (its camera frame's age)
        self.ticks_on_plan = 0  # ticks the current plan has run
        self.min_plan_ticks = self.p.min_plan_ticks or self.config.n_action_steps
        self.pending = None  # (ActionOutput, plan_id, stamp) waiting for min_plan_ticks
        self.state: np.ndarray | None = None
        self.state_time = -math.inf
        self.state_invalid = False
        self.ticks = 0
        self.last_tick = None
        self.tick_intervals: list[float] = []
        self.last_step_index = -1
        self.last_plan_id = 0

        if self.p.output_type == "joint_trajectory":
            self.cmd_pub = self.create_publisher(JointTrajectory, topic("motor_commands"), qos.COMMAND)
        else:
            self.cmd_pub = self.create_publisher(Float64MultiArray, topic("motor_commands"), qos.COMMAND)
        self.dry_pub = self.create_publisher(Float64MultiArray, "~/dry_run_commands", qos.COMMAND)
        self.create_subscription(ActionPlan, topic("action_plan"), self.guarded("action_plan", self.on_plan), qos.PIPELINE)
        self.create_subscription(JointState, topic("joint_states"), self.guarded("joint_states", self.on_joint_state),
                                 qos.SENSOR)
        self.timer = self.create_timer(self.period, self.on_tick)
        self.set_mode("dry_run" if self.p.dry_run else "hold", "no plan yet")

    # --------------------------------------------------------------- inputs
    def on_plan(self, msg) -> None:
        act, _scale, _risk = plan_from_msg(msg, self.config)
        if act.action_vector.shape[0] != 1:
            raise ConversionError(f"action_plan: batch {act.action_vector.shape[0]} != 1 (one robot)")
        if list(msg.joint_names) and list(msg.joint_names) != list(self.p.joint_names):
            raise ConversionError(f"action_plan.joint_names {list(msg.joint_names)} != {self.p.joint_names}")
        self.pending = (act, int(msg.plan_id), msg.header.stamp)
        if self.plan is None or self.ticks_on_plan >= self.min_plan_ticks or self.safety.plan_stale(time.monotonic()):
            self.adopt_pending()
        self.safety.feed_plan(time.monotonic())
        self.stats.event("plans_in")

    def adopt_pending(self) -> None:
        act, plan_id, stamp = self.pending
        self.pending = None
        self.plan = (act, plan_id, time.monotonic())
        self.plan_start_tick = self.ticks_since_stamp(stamp) if self.p.align_plans_to_stamp else 0
        self.ticks_on_plan = 0

    def ticks_since_stamp(self, stamp) -> int:
        """Control ticks elapsed since `stamp` (ROS clock), 0 for unusable stamps."""
        age = (self.get_clock().now().nanoseconds - (stamp.sec * 1_000_000_000 + stamp.nanosec)) * 1e-9
        if stamp.sec == 0 and stamp.nanosec == 0 or not 0.0 <= age <= self.p.plan_timeout_s:
            return 0
        return int(age / self.period + 0.5)

    def on_joint_state(self, msg) -> None:
        try:
            self.state = joint_state_to_vector(msg, self.p.joint_names)
            self.state_invalid = False
        except ConversionError:
            self.state_invalid = True  # hold until a valid state arrives
            raise
        self.state_time = time.monotonic()

    # ------------------------------------------------------------- control
    def current_state(self, now: float):
        if self.state_invalid:
            return np.full(len(self.p.joint_names), np.nan)  # marks the state invalid for the filter
        if self.state is None or now - self.state_time > self.p.joint_state_timeout_s:
            return None
        return self.state

    def compute_target(self, state: np.ndarray | None):
        """model.control_stage for the current tick of the newest plan, or None."""
        if self.plan is None or state is None or not np.isfinite(state).all():
            return None
        act, plan_id, _ = self.plan
        step = self.plan_start_tick + self.ticks_on_plan
        robot_state = torch.from_numpy(state.astype(np.float32)).unsqueeze(0)
        with Timer() as t, torch.inference_mode():
            cmd = self.model.control_stage(act.action_vector, act.action_chunk, act.action_trajectory, robot_state, step)
        self.stats.latency("control_stage", t.seconds)
        self.last_step_index, self.last_plan_id = step, plan_id
        return cmd[0].double().numpy()

    def on_tick(self) -> None:
        now = time.monotonic()
        if self.last_tick is not None:
            self.tick_intervals.append(now - self.last_tick)
            if len(self.tick_intervals) > 1000:
                del self.tick_intervals[:500]
        self.last_tick = now
        self.ticks += 1
        self.stats.event("ticks")
        try:
            state = self.current_state(now)
            target = None
            if self.plan is not None and not self.safety.plan_stale(now):
                target = self.compute_target(state)
                self.ticks_on_plan += 1
                if self.pending is not None and self.ticks_on_plan >= self.min_plan_ticks:
                    self.adopt_pending()
            decision = self.safety.step(target, state, now)
        except Exception as err:  # noqa: BLE001 - the control loop must keep running and hold
            self.log_throttled("control", f"control tick failed ({type(err).__name__}: {err}): holding")
            self.stats.drop("control_errors")
            decision = self.safety.step(None, self.current_state(now), now)
        mode = decision.mode if decision.mode != MODE_TRACK else "running"
        if self.p.dry_run:
            mode = "dry_run"
        self.set_mode(mode, "; ".join(decision.reasons))
        if decision.command is None:
            return
        if self.plan is None and not self.p.publish_hold_without_plan:
            return
        cmd = decision.command
        if not np.isfinite(cmd).all():  # SafetyFilter guarantees this; a last line of defence
            self.stats.drop("nan_commands")
            return
        if decision.publish:
            self.cmd_pub.publish(self.command_msg(cmd))
            self.stats.event("commands_out")
        else:
            dry = self._Float64MultiArray()
            dry.data = [float(v) for v in cmd]
            self.dry_pub.publish(dry)
            self.stats.event("dry_run_out")

    def command_msg(self, cmd: np.ndarray):
        if self.p.output_type == "float64_multi_array":
            from std_msgs.msg import MultiArrayDimension

            msg = self._Float64MultiArray()
            msg.layout.dim = [MultiArrayDimension(label="joints", size=len(cmd), stride=len(cmd))]
            msg.data = [float(v) for v in cmd]
            return msg
        from trajectory_msgs.msg import JointTrajectoryPoint
        from builtin_interfaces.msg import Duration

        msg = self._JointTrajectory()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.joint_names = list(self.p.joint_names)
        t = self.p.trajectory_time_from_start_s or self.period
        point = JointTrajectoryPoint()
        point.positions = [float(v) for v in cmd]
        point.time_from_start = Duration(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)))
        msg.points = [point]
        return msg

    def tick_statistics(self) -> dict[str, float]:
        """Achieved rate and jitter over the last (up to) 300 tick intervals."""
        iv = np.asarray(self.tick_intervals[-300:])
        if iv.size < 2:
            return {}
        dev = np.abs(iv - self.period)
        return {"rate_hz": float(1.0 / iv.mean()), "jitter_std_ms": float(1e3 * iv.std()),
                "jitter_p99_ms": float(1e3 * np.percentile(dev, 99)), "jitter_max_ms": float(1e3 * dev.max())}

    def extra_rates(self) -> dict[str, float]:
        s = self.tick_statistics()
        return {"control_achieved": s["rate_hz"]} if s else {}

    def extra_metrics(self) -> dict[str, float]:
        s = self.tick_statistics()
        m = {f"control_{k}": v for k, v in s.items() if k != "rate_hz"}
        m["plan_id"] = float(self.last_plan_id)
        m["step_index"] = float(self.last_step_index)
        m["plan_age_s"] = float(min(self.safety.plan_age(time.monotonic()), 1e9))
        m["rejected_targets"] = float(self.safety.rejected_targets)
        m["holds"] = float(self.safety.holds)
        return m

    def shutdown(self) -> None:
        # Leave the arm where it is: one final hold command (unless dry run / nothing known).
        try:
            now = time.monotonic()
            self.safety.reset()
            decision = self.safety.step(None, self.current_state(now), now)
            if decision.command is not None and decision.publish:
                self.cmd_pub.publish(self.command_msg(decision.command))
        except Exception:  # noqa: BLE001
            pass


def main(args=None) -> int:
    return run_node(ControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
