# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Low-level controller node: action fusion phi + C_low (paper 3.3) at a fixed rate, with safety.

A thin shell around :class:`sigma_model.control_loop.ControlLoop`: ActionPlan and JointState
messages in (validated, judged fresh by header stamp), a timer at ``rate_hz`` (default 30 Hz) that
steps through the newest plan with ``model.control_stage`` and the safety filter (limits, per-tick
step limit against the previous command and the measurement, implausible-measurement faults,
watchdog hold), and the command out as ``trajectory_msgs/JointTrajectory`` or
``std_msgs/Float64MultiArray`` (the ros2_control joint_trajectory_controller /
forward_command_controller inputs). Dry run publishes the would-be commands on
``~/dry_run_commands`` only. Never publishes NaN.

Lifecycle: the timer runs only while active; plans that arrive while inactive are ignored (not
executed later either), joint states are kept; on deactivate (and shutdown from active) the node
drops its plans and publishes one hold command, then nothing until it is activated again.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from sigma_model.control_loop import ControlLoop, ControlLoopConfig
from sigma_model.safety import MODE_TRACK, SafetyConfig, SafetyFilter
from sigma_ros import qos
from sigma_ros.conversions import ConversionError, joint_state_to_vector, plan_from_msg, time_from_ns
from sigma_ros.node_base import Param, SigmaNode, run_node, stamp_key, topic
from sigma_ros.stats import Timer

OUTPUT_TYPES = ("joint_trajectory", "float64_multi_array")


class ControllerNode(SigmaNode):
    WORKSPACES = ("action",)  # fusion weights + C_low live in the action workspace
    STAGES = ("control",)
    PARAMS = (
        Param("rate_hz", 30.0, "Control rate (Hz)", min=1.0, max=1000.0),
        Param("output_type", "joint_trajectory", "Motor command message type", choices=OUTPUT_TYPES),
        Param("plan_timeout_s", 0.5, "Watchdog: hold when the newest plan arrived longer ago than this; plans "
              "whose camera frame is older than this are refused (s)", min=0.001, max=3600.0),
        Param("joint_state_timeout_s", 0.5, "Joint states stamped longer ago than this are refused or, once "
              "they age, not used: the arm holds (s)", min=0.001, max=3600.0),
        Param("dry_run", False, "Compute commands but publish them only on ~/dry_run_commands"),
        Param("max_step_rad", [0.15], "Max change of the command per control tick, against the previous "
              "command and the measured position (rad): one value for all joints or one per joint"),
        Param("trajectory_time_from_start_s", 0.0, "time_from_start of the JointTrajectory point "
              "(0: one control period)", min=0.0, max=10.0),
        Param("align_plans_to_stamp", True, "Start a plan at the tick of its camera frame (header stamp), so "
              "the pipeline latency does not delay every plan (the first plan since start or reset: step 0)"),
        Param("min_plan_ticks", 0, "Run a plan for at least this many control ticks before switching to a "
              "newer one (1: always the newest; 0: the model's n_action_steps, as the closed-loop "
              "evaluation replans)", min=0, max=1000),
        Param("publish_hold_without_plan", True, "Publish the hold command before the first plan "
              "(false: stay silent until a plan arrives)"),
        Param("silent_while_waiting", False, "sync_plans: publish nothing while waiting for the next plan instead "
              "of hold commands (a position-controlled arm keeps its last goal; a sim stepped per command pauses)"),
    )

    INACTIVE_INPUTS = ("reset", "joint_states")  # the measurement is kept while inactive; plans are not

    def __init__(self, **kwargs) -> None:
        super().__init__("controller_node", **kwargs)

    def configure(self) -> None:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray, Header
        from trajectory_msgs.msg import JointTrajectory
        from sigma_ros_msgs.msg import ActionPlan

        n = len(self.p.joint_names)
        if n != self.config.action_dim:
            raise ValueError(f"joint_names has {n} joints but the model's action_dim is {self.config.action_dim}")
        max_step = np.asarray(self.p.max_step_rad if len(self.p.max_step_rad) > 1 else self.p.max_step_rad * n)
        safety = SafetyFilter(SafetyConfig(
            lower=self.p.joint_lower_limits, upper=self.p.joint_upper_limits, max_step=max_step,
            measurement_tolerance=np.minimum(self.p.joint_state_tolerance_rad, max_step),
            plan_timeout_s=self.p.plan_timeout_s, dry_run=self.p.dry_run, joint_names=self.p.joint_names,
        ))
        self.loop = ControlLoop(self.control, safety, ControlLoopConfig(
            rate_hz=self.p.rate_hz, joint_state_timeout_s=self.p.joint_state_timeout_s,
            stamp_future_tolerance_s=self.p.stamp_future_tolerance_s,
            align_plans_to_stamp=self.p.align_plans_to_stamp,
            min_plan_ticks=self.p.min_plan_ticks or self.config.n_action_steps,
            hold_before_first_plan=self.p.publish_hold_without_plan, accept_unstamped=self.p.accept_unstamped,
            sync_plans=self.p.sync_plans, silent_while_waiting=self.p.silent_while_waiting,
        ))
        self.safety = safety
        self.period = 1.0 / self.p.rate_hz
        self._Float64MultiArray, self._JointTrajectory = Float64MultiArray, JointTrajectory
        self.ticks = 0
        self.last_tick = None
        self.tick_intervals: list[float] = []
        self.last_step_index = -1
        self.last_plan_id = 0

        cmd_type = JointTrajectory if self.p.output_type == "joint_trajectory" else Float64MultiArray
        self.cmd_pub = self.make_publisher(cmd_type, topic("motor_commands"), qos.COMMAND)
        self.dry_pub = self.make_publisher(Float64MultiArray, "~/dry_run_commands", qos.COMMAND)
        self._Header = Header
        self.request_pub = (self.make_publisher(Header, topic("plan_request"), qos.PIPELINE) if self.p.sync_plans
                            else None)
        self.subscribe(ActionPlan, topic("action_plan"), "action_plan", self.on_plan, qos.PIPELINE)
        self.subscribe(JointState, topic("joint_states"), "joint_states", self.on_joint_state, qos.SENSOR)
        self.tick_timer = self.make_timer(self.period, self.on_tick, autostart=False)

    def activate(self) -> None:
        """Start the control timer; the arm holds until a plan arrives while active."""
        self.last_tick = None
        self.set_mode("dry_run" if self.p.dry_run else "hold", "no plan yet")
        self.tick_timer.reset()

    def deactivate(self) -> None:
        """Stop the control timer and publish one hold command (plans dropped): the arm stays where it is."""
        self.tick_timer.cancel()
        self.loop.clear_plans()
        result = self.loop.tick(self.now_ns())
        if result.publish:
            self.cmd_pub.publish(self.command_msg(result.decision.command))
            self.stats.event("deactivation_holds")

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # --------------------------------------------------------------- inputs
    def on_plan(self, msg) -> None:
        act, _scale, _risk = plan_from_msg(msg, self.config)
        if act.action_vector.shape[0] != 1:
            raise ConversionError(f"action_plan: batch {act.action_vector.shape[0]} != 1 (one robot)")
        if list(msg.joint_names) and list(msg.joint_names) != list(self.p.joint_names):
            raise ConversionError(f"action_plan.joint_names {list(msg.joint_names)} != {self.p.joint_names}")
        if self.skip_before_reset("action_plan", stamp_key(msg.header)):  # planned for the episode before
            return
        self.loop.on_plan(act, int(msg.plan_id), stamp_key(msg.header), self.now_ns())
        self.stats.event("plans_in")

    def on_joint_state(self, msg) -> None:
        try:
            positions = joint_state_to_vector(msg, self.p.joint_names)
        except ConversionError:
            self.loop.on_joint_state(None, 0, 0)  # hold until a valid state arrives
            raise
        self.loop.on_joint_state(positions, stamp_key(msg.header), self.now_ns())

    def reset_episode(self) -> None:
        self.loop.new_episode()

    def restart_streams(self) -> None:
        self.loop.restart()

    # ------------------------------------------------------------- control
    def control(self, act, state: np.ndarray, step: int) -> np.ndarray:
        """model.control_stage at tick `step` of the plan `act`."""
        robot_state = torch.from_numpy(state.astype(np.float32)).unsqueeze(0)
        with Timer() as t, torch.inference_mode():
            cmd = self.model.control_stage(
                act.action_vector, act.action_chunk, act.action_trajectory, robot_state, step
            )
        self.stats.latency("control_stage", t.seconds)
        return cmd[0].double().numpy()

    def on_tick(self) -> None:
        if not self.active:
            return  # a tick already queued when the node was deactivated
        now = time.monotonic()
        if self.last_tick is not None:
            self.tick_intervals.append(now - self.last_tick)
            if len(self.tick_intervals) > 1000:
                del self.tick_intervals[:500]
        self.last_tick = now
        self.ticks += 1
        self.stats.event("ticks")
        errors = self.loop.control_errors
        result = self.loop.tick(self.now_ns())
        if self.loop.control_errors > errors:
            self.log_throttled("control", "control tick failed: holding")
            self.stats.drop("control_errors")
        decision = result.decision
        if result.plan_request_ns is not None:  # sync_plans: the plan is done, the arm holds until the next one
            self.request_pub.publish(self._Header(stamp=time_from_ns(result.plan_request_ns)))
        if result.plan_id >= 0:
            self.last_plan_id, self.last_step_index = result.plan_id, result.step_index
        if decision.fault:
            self.stats.drop("joint_state_faults", "; ".join(decision.reasons))
        mode = "dry_run" if self.p.dry_run else ("running" if decision.mode == MODE_TRACK else decision.mode)
        self.set_mode(mode, "; ".join(decision.reasons))
        if decision.command is None:
            return
        if result.publish:
            self.cmd_pub.publish(self.command_msg(decision.command))
            self.stats.event("commands_out")
        elif self.p.dry_run:
            dry = self._Float64MultiArray()
            dry.data = [float(v) for v in decision.command]
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
        m["plan_age_s"] = float(min(self.safety.plan_age(self.now_ns() * 1e-9), 1e9))
        m["rejected_targets"] = float(self.safety.rejected_targets)
        m["holds"] = float(self.safety.holds)
        m["joint_state_faults"] = float(self.safety.faults)
        return m


def main(args=None) -> int:
    return run_node(ControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
