"""Property-based tests of the safety guarantees (hypothesis): thousands of random sequences of
targets, measurements, timings, stamps and faults through :class:`SafetyFilter`, through
:class:`ControlLoop` (the controller's logic) and through the controller node's message callbacks.

For every command let out (published, or computed in dry run):
* finite and within the joint limits;
* within max_step of the previous command;
* within max_step of a plausible measurement, unless the arm is more than 2 * max_step from the
  previous command, in which case the command moves towards the measurement;
* on an implausible measurement: a counted fault, and the previous command (or none).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigma_model.control_loop import ControlLoop, ControlLoopConfig
from sigma_model.freshness import NS
from sigma_model.safety import MODE_TRACK, SafetyConfig, SafetyFilter

EPS = 1e-9
# Examples per run (SIGMA_PROPERTY_SCALE multiplies them; SIGMA_PROPERTY_RANDOM=1 draws new ones each run
# instead of CI's fixed, reproducible set).
SCALE = float(os.environ.get("SIGMA_PROPERTY_SCALE", "1"))
FILTER_EXAMPLES = int(3000 * SCALE)
LOOP_EXAMPLES = int(2500 * SCALE)
NODE_EXAMPLES = int(100 * SCALE)
settings.register_profile("sigma", derandomize=os.environ.get("SIGMA_PROPERTY_RANDOM") != "1", database=None,
                          deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sigma")


@st.composite
def safety_configs(draw):
    n = 3
    lower = np.array(draw(st.lists(st.floats(-3.0, 0.0), min_size=n, max_size=n)))
    width = np.array(draw(st.lists(st.floats(0.0, 4.0), min_size=n, max_size=n)))
    max_step = np.array(draw(st.lists(st.floats(0.005, 0.5), min_size=n, max_size=n)))
    tol = max_step * np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
    return SafetyConfig(lower=lower, upper=lower + width, max_step=max_step, measurement_tolerance=tol,
                        plan_timeout_s=draw(st.floats(0.01, 1.0)),
                        dry_run=draw(st.booleans()), joint_names=("a", "b", "c"))


def vector(rng, cfg: SafetyConfig, kind: str, near=None) -> np.ndarray | None:
    """A target or measurement of the given kind (values from ``rng``)."""
    n = cfg.n_joints
    u = rng.random(n)
    span = cfg.upper - cfg.lower
    if kind == "none":
        return None
    if kind == "near" and near is not None:
        return np.clip(near + (2 * u - 1) * 3 * cfg.max_step, cfg.lower - cfg.measurement_tolerance,
                       cfg.upper + cfg.measurement_tolerance)
    if kind == "tolerance":  # beyond a limit, within the tolerance
        return np.where(u > 0.5, cfg.upper + u * cfg.measurement_tolerance, cfg.lower - u * cfg.measurement_tolerance)
    if kind == "beyond":  # beyond a limit by more than the tolerance
        v = cfg.lower + u * span
        j = rng.integers(n)
        v[j] = cfg.upper[j] + cfg.measurement_tolerance[j] + 10.0 ** rng.uniform(-6, 1)
        return v
    if kind == "huge":
        return rng.choice([1e308, -1e308, 1e38, 3.5e38, -1e300], n)
    if kind == "nan":
        v = cfg.lower + u * span
        v[rng.integers(n)] = rng.choice([np.nan, np.inf, -np.inf])
        return v
    if kind == "wrong_size":
        return np.zeros(rng.choice([0, 1, n + 1]))
    if kind == "any":
        return rng.uniform(-10, 10, n)
    return cfg.lower + u * span  # inside


def plausible(cfg: SafetyConfig, meas) -> np.ndarray | None:
    """Independent check of a measurement (not the filter's own code)."""
    if meas is None:
        return None
    m = np.asarray(meas, dtype=np.float64).reshape(-1)
    if m.shape != (cfg.n_joints,) or not np.isfinite(m).all():
        return None
    tol = cfg.measurement_tolerance
    return m if ((m >= cfg.lower - tol) & (m <= cfg.upper + tol)).all() else None


class Checker:
    """Asserts the guarantees on each command let out, given the measurement the filter saw."""

    def __init__(self, cfg: SafetyConfig) -> None:
        self.cfg = cfg
        self.prev: np.ndarray | None = None

    def check(self, decision, meas) -> None:
        cfg, c = self.cfg, decision.command
        m = plausible(cfg, meas)
        if meas is not None and m is None:
            assert decision.fault, "an implausible measurement must be a fault"
            assert decision.mode != MODE_TRACK
            if c is not None:  # hold the previous command, or send nothing
                assert self.prev is not None
                np.testing.assert_array_equal(c, self.prev)
        if c is None:
            assert not decision.publish
            return
        assert c.shape == (cfg.n_joints,) and np.isfinite(c).all()
        assert (c >= cfg.lower).all() and (c <= cfg.upper).all(), "command outside the joint limits"
        if cfg.dry_run:
            assert not decision.publish
        if self.prev is not None:
            assert (np.abs(c - self.prev) <= cfg.max_step + EPS).all(), "command jumped more than max_step"
        if m is not None:
            far = np.zeros(cfg.n_joints, bool) if self.prev is None else np.abs(self.prev - m) > 2 * cfg.max_step + EPS
            assert (np.abs(c - m) <= cfg.max_step + EPS)[~far].all(), "command more than max_step from the measurement"
            if far.any():
                assert (np.abs(c - m) < np.abs(self.prev - m))[far].all(), "command did not approach the measurement"
        self.prev = c.copy()

    def reset(self) -> None:
        self.prev = None


TARGETS = ("none", "inside", "any", "huge", "nan", "wrong_size")
MEASUREMENTS = ("none", "near", "inside", "tolerance", "beyond", "huge", "nan", "wrong_size")


@settings(max_examples=FILTER_EXAMPLES)
@given(cfg=safety_configs(),
       events=st.lists(st.tuples(st.sampled_from(("tick",) * 8 + ("plan", "reset")), st.sampled_from(TARGETS),
                                 st.sampled_from(MEASUREMENTS)), min_size=1, max_size=40),
       seed=st.integers(0, 2**32 - 1))
def test_safety_filter_never_lets_an_unsafe_command_out(cfg, events, seed):
    rng = np.random.default_rng(seed)
    f = SafetyFilter(cfg)
    checker = Checker(cfg)
    now = 0.0
    for action, target_kind, meas_kind in events:
        if action == "plan":
            f.feed_plan(now)
        elif action == "reset":
            f.reset()
            checker.reset()
        else:
            now += rng.uniform(0.0, 0.5)
            meas = vector(rng, cfg, meas_kind, near=checker.prev)
            faults = f.faults
            decision = f.step(vector(rng, cfg, target_kind), meas, now)
            checker.check(decision, meas)
            assert f.faults == faults + (1 if decision.fault else 0)


STAMP_OFFSETS = (0.0, -0.01, -0.2, -0.6, -5.0, 0.05, 0.5, 10.0)  # stamp - now (s): fresh ... stale, future
LOOP_ACTIONS = ("tick",) * 6 + ("plan", "plan", "state", "state", "state", "clear")
loop_events = st.lists(st.tuples(st.sampled_from(LOOP_ACTIONS), st.sampled_from(("inside", "any", "huge", "nan")),
                                 st.sampled_from(MEASUREMENTS[1:]), st.sampled_from(STAMP_OFFSETS + ("zero",))),
                       min_size=1, max_size=60)


def drive_loop(events, rng, cfg: SafetyConfig, tick, on_plan, on_state, clear, measured_now, checker: Checker) -> None:
    """One random sequence of plans, joint states, ticks and episode resets through a control loop."""
    now_ns = 1_000 * NS
    for action, target_kind, meas_kind, offset in events:
        stamp = 0 if offset == "zero" else now_ns + int(offset * NS)
        if action == "tick":
            now_ns += int(rng.uniform(0.0, 0.3) * NS)
            meas = measured_now(now_ns)
            result = tick(now_ns)
            checker.check(result.decision, meas)
            if result.publish:
                assert result.decision.command is not None and not cfg.dry_run
        elif action == "plan":
            on_plan([vector(rng, cfg, target_kind) for _ in range(3)], stamp, now_ns)
        elif action == "state":
            on_state(vector(rng, cfg, meas_kind, near=checker.prev), stamp, now_ns)
        else:
            clear()


def plan_target(plan, state, step):
    """The plan's target at a tick; a plan whose target is NaN also raises sometimes (a failing model)."""
    target = plan[min(step, len(plan) - 1)]
    if np.isnan(target).any() and step % 2:
        raise RuntimeError("model failure")
    return target


@settings(max_examples=LOOP_EXAMPLES)
@given(cfg=safety_configs(), events=loop_events, seed=st.integers(0, 2**32 - 1),
       loop_config=st.builds(ControlLoopConfig, rate_hz=st.sampled_from([10.0, 30.0, 100.0]),
                             joint_state_timeout_s=st.floats(0.05, 1.0), min_plan_ticks=st.integers(1, 10),
                             align_plans_to_stamp=st.booleans(), hold_before_first_plan=st.booleans(),
                             accept_unstamped=st.booleans()))
def test_control_loop_never_lets_an_unsafe_command_out(cfg, events, seed, loop_config):
    from sigma_model.freshness import StaleInput

    loop = ControlLoop(plan_target, SafetyFilter(cfg), loop_config)
    checker = Checker(cfg)

    def on_plan(targets, stamp, now):
        try:
            loop.on_plan(targets, 1, stamp, now)
        except StaleInput:
            pass

    def on_state(vec, stamp, now):
        try:
            loop.on_joint_state(vec if np.asarray(vec).size == cfg.n_joints else None, stamp, now)
        except StaleInput:
            pass

    def tick(now):
        result = loop.tick(now)
        if result.decision.mode == MODE_TRACK:  # tracking uses a fresh, valid measurement
            assert loop.state_stamp is not None and now - loop.state_stamp <= loop.config.joint_state_timeout_s * NS
        return result

    drive_loop(events, np.random.default_rng(seed), cfg, tick, on_plan, on_state, loop.clear_plans, loop.measured,
               checker)


# ------------------------------------------------------------------ through the node's callbacks
rclpy = pytest.importorskip("rclpy")


@pytest.fixture(scope="module")
def ros_context():
    from sigma_ros.testing import isolated_context

    context = isolated_context("test_safety_properties")
    yield context
    context.try_shutdown()


@settings(max_examples=NODE_EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(events=loop_events, seed=st.integers(0, 2**32 - 1), dry_run=st.booleans(), max_step=st.floats(0.01, 0.3),
       min_plan_ticks=st.integers(1, 8))
def test_controller_node_never_publishes_an_unsafe_command(ros_context, events, seed, dry_run, max_step,
                                                          min_plan_ticks):
    """Random sequences through ControllerNode.on_plan / on_joint_state / on_tick with real messages
    (plans from the model's action stage, sometimes absurd; joint states by name, any stamp) and the
    node's clock replaced: every message it publishes obeys the guarantees."""
    import torch
    from types import SimpleNamespace

    from sigma_ros.controller_node import ControllerNode
    from sigma_ros.conversions import make_joint_state, plan_to_msg
    from sigma_ros.testing import JOINTS

    rng = np.random.default_rng(seed)
    node = ControllerNode(context=ros_context, parameter_overrides=[
        rclpy.parameter.Parameter("max_step_rad", value=[max_step]),
        rclpy.parameter.Parameter("dry_run", value=dry_run),
        rclpy.parameter.Parameter("min_plan_ticks", value=min_plan_ticks),
    ])
    try:
        cfg, c = node.safety.config, node.config
        clock = {"now": 1_000 * NS}
        node.now_ns = lambda: clock["now"]
        sent: list = []
        node.cmd_pub.publish = sent.append
        node.dry_pub.publish = sent.append
        checker = Checker(cfg)
        faults = [0]

        def on_plan(_targets, stamp, now):
            g = torch.Generator().manual_seed(int(stamp) % 1000)
            with torch.inference_mode():
                act = node.model.action_stage(
                    torch.randn(1, 4, c.d_model, generator=g), torch.ones(1, 4, dtype=torch.bool),
                    torch.randn(1, c.d_tau, generator=g), torch.randn(1, c.n_state_tokens, c.d_model, generator=g))
                if rng.random() < 0.25:
                    act.action_trajectory.mul_(1e30)  # an absurd plan
            msg = plan_to_msg(act)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp), NS)
            msg.plan_id = 1
            clock["now"] = now
            node.guarded("action_plan", node.on_plan)(msg)

        def on_state(vec, stamp, now):
            vec = None if vec is None or np.asarray(vec).size != 6 else vec
            positions = [float("nan")] * 6 if vec is None else [float(v) for v in vec]
            msg = make_joint_state(positions, JOINTS)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp), NS)
            clock["now"] = now
            node.guarded("joint_states", node.on_joint_state)(msg)

        def tick(now):
            clock["now"] = now
            before = len(sent)
            node.on_tick()
            out = sent[before:]
            assert len(out) <= 1
            command = None
            if out:
                command = np.array(out[0].data if dry_run else out[0].points[0].positions)
            decision = SimpleNamespace(command=command, fault=node.safety.faults > faults[0],
                                       mode=MODE_TRACK if node.mode == "running" else node.mode,
                                       publish=bool(out) and not dry_run)
            faults[0] = node.safety.faults
            return SimpleNamespace(decision=decision, publish=decision.publish)

        drive_loop(events, rng, cfg, tick, on_plan, on_state, node.reset_episode, node.loop.measured, checker)
    finally:
        node.destroy_node()
