# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Bad input on every subscription of the four nodes.

The message is rejected with a logged (throttled) error, counted as a dropped input, the robot is held safely, and
nothing crashes.
"""

from __future__ import annotations

import array
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")

from sensor_msgs.msg import Image, JointState  # noqa: E402
from sigma_ros_msgs.msg import ActionPlan, AudioChunk, HighLevelRep, StateTokens, TelepathyFactors, VisionTokens  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from sigma_model.safety import KNOWN_JOINT_LIMITS, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS  # noqa: E402
from sigma_ros.conversions import array_to_image, make_audio_chunk, tensor_to_msg, time_from_ns  # noqa: E402
from sigma_ros.testing import JOINTS, GraphHarness, drops  # noqa: E402

Q0 = np.array([0.1, -0.1, 0.2, 0.0, 0.3, 0.1])


@pytest.fixture(scope="module")
def h():
    harness = GraphHarness("test_ros_bad_inputs", overrides={
        "controller_node": {"plan_timeout_s": 0.4},
    })
    try:
        harness.wait_matched()
        harness.stream_joint_states(Q0)
        harness.send_instruction("stack the blocks")
        time.sleep(0.5)
        yield harness
    finally:
        harness.close()


def wait_drop(h, node: str, key: str, before: int, timeout: float = 5.0) -> int:
    stats = h.by_name[node].stats
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = stats.drops.get(key, 0)
        if n > before:
            return n
        time.sleep(0.02)
    raise AssertionError(f"{node}: no dropped {key} message counted (still {stats.drops.get(key, 0)})")


def count(h, node, key):
    return h.by_name[node].stats.drops.get(key, 0)


def image(h, rgb=None, encoding="rgb8"):
    rgb = np.zeros((96, 96, 3), np.uint8) if rgb is None else rgb
    return array_to_image(rgb, encoding, h.now())


def bad_images(h):
    wrong_enc = image(h)
    wrong_enc.encoding = "yuv422"
    small = image(h, np.zeros((64, 64, 3), np.uint8))
    truncated = image(h)
    truncated.data = truncated.data[:-10]
    short_step = image(h)
    short_step.step = 10
    empty = Image(encoding="rgb8")
    return {"encoding": wrong_enc, "size": small, "truncated": truncated, "step": short_step, "empty": empty}


def test_bad_camera_frames_dropped_and_logged(h, capfd):
    expected_reason = {"encoding": "unsupported encoding", "size": "model input", "truncated": "bytes",
                       "step": "step", "empty": "empty image"}
    for name, msg in bad_images(h).items():
        before = count(h, "perception_node", "camera")
        n_tokens = h.rec.count("vision_tokens")
        h.pub_image.publish(msg)
        wait_drop(h, "perception_node", "camera", before)
        assert expected_reason[name] in h.by_name["perception_node"].stats.last_error, name
        time.sleep(0.05)
        assert h.rec.count("vision_tokens") == n_tokens, f"{name}: tokens published for a bad frame"
    err = capfd.readouterr().err
    assert "dropped camera message" in err
    st = h.status_of("perception_node")
    assert drops(st)["camera"] >= 5 and st.dropped_inputs >= 5 and st.last_error


@pytest.mark.parametrize("kind", ["short", "nan", "missing_name", "names_mismatch"])
def test_bad_joint_state_holds(h, kind):
    msg = JointState()
    if kind == "short":
        msg.position = [0.0] * 5
    elif kind == "nan":
        msg.name = list(JOINTS)
        msg.position = [0.0, float("nan"), 0.0, 0.0, 0.0, 0.0]
    elif kind == "missing_name":
        msg.name = list(JOINTS[:5]) + ["elbow"]
        msg.position = [0.0] * 6
    else:
        msg.name = list(JOINTS)
        msg.position = [0.0] * 5
    h.set_joint_positions(None)  # the stream pauses; the bad message is the newest
    time.sleep(0.1)
    before_p = count(h, "perception_node", "joint_states")
    before_c = count(h, "controller_node", "joint_states")
    n_cmd = h.rec.count("motor_commands")
    h.pub_joint.publish(msg)
    wait_drop(h, "perception_node", "joint_states", before_p)
    wait_drop(h, "controller_node", "joint_states", before_c)
    time.sleep(0.3)
    ctrl = h.by_name["controller_node"]
    assert ctrl.mode == "hold", (ctrl.mode, ctrl.reason)
    cmds = [np.array(m.points[0].positions) for m in h.rec.get("motor_commands")[n_cmd:]]
    assert cmds, "the controller stopped publishing its hold command"
    for c in cmds:
        assert np.isfinite(c).all()
        np.testing.assert_allclose(c, Q0, atol=1e-9)  # holds the last valid position
    # a frame now waits for a valid joint state: no tokens
    n_tokens = h.rec.count("vision_tokens")
    h.pub_image.publish(image(h))
    time.sleep(0.3)
    assert h.rec.count("vision_tokens") == n_tokens
    h.set_joint_positions(Q0)
    time.sleep(0.2)


@pytest.mark.parametrize("text", ["", "   \n\t ", "x" * 2001,
                                  "please carefully pick up the small red cube and place it on the right"])
def test_bad_instruction_rejected(h, text):
    """Empty, blank, over max_instruction_chars, or longer than the model's max_text_tokens.

    The last would lose its end, here the word naming the place, so it cannot be told from the same text with "left".
    """
    lang = h.by_name["language_node"]
    before = count(h, "language_node", "instruction")
    current = lang.instruction
    h.pub_instruction.publish(String(data=text))
    wait_drop(h, "language_node", "instruction", before)
    assert lang.instruction == current == "stack the blocks"


def _tensor(shape, fill=0.1):
    return tensor_to_msg(np.full(shape, fill, np.float32))


def _bad_tensor(dims, n):
    t = tensor_to_msg(np.zeros(1, np.float32))
    t.dims = array.array("I", dims)
    t.data = array.array("f", [0.0] * n)
    return t


def test_malformed_custom_messages(h):
    c = h.by_name["perception_node"].config
    d, nv, ns = c.d_model, c.n_vision_tokens, c.n_state_tokens
    stamp = h.now()

    cases = []
    vt = VisionTokens()
    vt.header.stamp = stamp
    vt.vision_tokens = _bad_tensor([1, nv, d], nv * d - 1)  # dims/data mismatch
    vt.state_tokens = _tensor((1, ns, d))
    cases.append(("vision_tokens", vt, [("language_node", "vision_tokens")]))

    tf = TelepathyFactors()
    tf.header.stamp = stamp
    tf.tau = _tensor((1, c.d_tau + 3))  # wrong d_tau
    cases.append(("telepathy_factors", tf, [("perception_node", "telepathy_factors"),
                                             ("action_node", "telepathy_factors")]))

    hl = HighLevelRep()
    hl.header.stamp = stamp
    hl.high_level_rep = _tensor((1, 5, d))
    hl.mask = [True] * 4  # wrong mask length
    cases.append(("high_level_rep", hl, [("action_node", "high_level_rep")]))

    st = StateTokens()
    st.header.stamp = stamp
    st.state_tokens = _tensor((1, ns, d), fill=float("nan"))
    cases.append(("state_tokens", st, [("action_node", "state_tokens")]))

    plan = ActionPlan()
    plan.header.stamp = stamp
    plan.action_vector = _tensor((1, c.action_dim), fill=float("nan"))
    cases.append(("action_plan", plan, [("controller_node", "action_plan")]))

    n_cmd = h.rec.count("motor_commands")
    for topic, msg, targets in cases:
        befores = [count(h, node, key) for node, key in targets]
        h.pub_internal[topic].publish(msg)
        for (node, key), before in zip(targets, befores):
            wait_drop(h, node, key, before)

    # malformed audio: wrong rate, channels/length mismatch, NaN, empty
    audio_cases = [make_audio_chunk(np.zeros(1600, np.float32), 8000),
                   make_audio_chunk(np.zeros(1601, np.float32), c.audio_sample_rate, channels=2),
                   make_audio_chunk(np.full(1600, np.nan, np.float32), c.audio_sample_rate),
                   AudioChunk(sample_rate=c.audio_sample_rate, channels=1)]
    for msg in audio_cases:
        before = count(h, "perception_node", "audio")
        h.pub_audio.publish(msg)
        wait_drop(h, "perception_node", "audio", before)

    # the controller never tracked the malformed plan: it holds one command, never NaN
    time.sleep(0.5)
    ctrl = h.by_name["controller_node"]
    assert ctrl.mode == "hold", (ctrl.mode, ctrl.reason)
    cmds = [np.array(m.points[0].positions) for m in h.rec.get("motor_commands")[n_cmd:]]
    assert len(cmds) > 5 and all(np.isfinite(c).all() and np.array_equal(c, cmds[0]) for c in cmds)


def test_error_logs_are_throttled_per_input(h, capfd):
    """A flood of bad messages on one input logs one line per error_log_period_s, then says how many it suppressed."""
    node = h.by_name["perception_node"]
    period = node.p.error_log_period_s
    node.p.error_log_period_s = 0.3
    try:
        capfd.readouterr()
        for i in range(5):
            node.reject("flood_test", f"bad #{i}")
        time.sleep(0.35)
        node.reject("flood_test", "bad #5")
        node.reject("other_input", "bad")  # another input is not throttled by the first
    finally:
        node.p.error_log_period_s = period
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if "dropped flood_test message" in ln]
    assert len(lines) == 2, err
    assert "bad #0" in lines[0] and "suppressed" not in lines[0]
    assert "bad #5" in lines[1] and "(4 similar messages suppressed)" in lines[1]
    assert "dropped other_input message" in err and node.stats.drops["flood_test"] == 6


def stamped(h, offset_s: float):
    """Return a header stamp `offset_s` from now on the probe's clock."""
    return time_from_ns(h.probe.get_clock().now().nanoseconds + int(offset_s * 1e9))


@pytest.mark.parametrize("offset_s, kind", [(-5.0, "stale"), (10.0, "future"), (0.0, "unstamped")])
def test_stale_future_and_unstamped_joint_states_are_refused(h, offset_s, kind):
    """Judged by header stamp, not arrival: refused and counted by kind; the arm holds."""
    h.set_joint_positions(None)
    time.sleep(0.1)
    msg = JointState(name=list(JOINTS), position=[0.5, 0.0, 0.0, 0.0, 0.0, 0.5])
    if kind != "unstamped":
        msg.header.stamp = stamped(h, offset_s)
    before = {n: count(h, n, f"joint_states_{kind}") for n in ("perception_node", "controller_node")}
    for _ in range(3):
        h.pub_joint.publish(msg)
        time.sleep(0.05)
    for node, b in before.items():
        wait_drop(h, node, f"joint_states_{kind}", b)
    time.sleep(h.by_name["controller_node"].p.joint_state_timeout_s + 0.2)
    ctrl = h.by_name["controller_node"]
    assert ctrl.mode == "hold" and "no joint state" in ctrl.reason, (ctrl.mode, ctrl.reason)
    assert all(not np.isclose(v[0], 0.5) for _, v in h.by_name["perception_node"].states.items)
    h.set_joint_positions(Q0)
    time.sleep(0.2)


def test_out_of_order_joint_state_is_refused(h):
    h.set_joint_positions(Q0)
    time.sleep(0.2)
    msg = JointState(name=list(JOINTS), position=list(Q0))
    msg.header.stamp = stamped(h, -0.3)  # fresh enough, but older than the stream's last one
    before = count(h, "controller_node", "joint_states_out_of_order")
    h.pub_joint.publish(msg)
    wait_drop(h, "controller_node", "joint_states_out_of_order", before)


@pytest.mark.parametrize("offset_s, kind", [(-10.0, "stale"), (10.0, "future")])
def test_stale_and_future_camera_frames_are_refused(h, offset_s, kind):
    h.set_joint_positions(Q0)
    time.sleep(0.2)
    before = count(h, "perception_node", f"camera_{kind}")
    n_tokens = h.rec.count("vision_tokens")
    msg = image(h)
    msg.header.stamp = stamped(h, offset_s)
    h.pub_image.publish(msg)
    wait_drop(h, "perception_node", f"camera_{kind}", before)
    time.sleep(0.2)
    assert h.rec.count("vision_tokens") == n_tokens


@pytest.mark.parametrize("reading", [2.5, 1e308, -1e300])
def test_implausible_joint_state_is_a_fault_and_holds(h, reading):
    """A pan reading beyond its limit by more than the tolerance (or absurd).

    The perception node refuses it, the controller counts a fault and holds its last command within max_step and the
    limits.
    """
    h.set_joint_positions(Q0)
    time.sleep(0.3)
    ctrl = h.by_name["controller_node"]
    faults = ctrl.safety.faults
    before = count(h, "perception_node", "joint_states")
    n_cmd = h.rec.count("motor_commands")
    h.set_joint_positions([reading, *Q0[1:]])
    wait_drop(h, "perception_node", "joint_states", before)
    time.sleep(0.3)
    assert ctrl.safety.faults > faults
    assert ctrl.mode == "hold" and "implausible joint state" in ctrl.reason, (ctrl.mode, ctrl.reason)
    cmds = [np.array(m.points[0].positions) for m in h.rec.get("motor_commands")[n_cmd:]]
    lo, hi = np.array(SO101_LOWER_LIMITS), np.array(SO101_UPPER_LIMITS)
    for prev, c in zip(cmds, cmds[1:]):
        assert (np.abs(c - prev) <= 0.15 + 1e-12).all() and (c >= lo).all() and (c <= hi).all()
    st = h.status_of("controller_node")
    assert dict(zip(st.metric_names, st.metric_values))["joint_state_faults"] > faults
    h.set_joint_positions(Q0)
    time.sleep(0.2)


def test_reordered_joint_names_get_each_joints_own_limits():
    """joint_names reversed, no limits given: both nodes judge and clamp each joint by its own limits, by name.

    Before, the SO-101's limits applied in their order: the gripper was judged and clamped by shoulder_pan's (+-1.92
    rad), so a gripper reading of 1.95 rad passed both nodes and a hold at 1.80 rad was sent as it was.
    """
    names = list(reversed(JOINTS))
    q = dict(zip(JOINTS, Q0), gripper=1.8)  # beyond the gripper's 1.745 rad, within the 0.1 rad tolerance
    with GraphHarness("test_ros_bad_inputs_reordered", nodes=("perception_node", "controller_node"),
                      overrides={n: {"joint_names": names} for n in ("perception_node", "controller_node")}) as h:
        h.wait_matched()
        perception, ctrl = h.by_name["perception_node"], h.by_name["controller_node"]
        h.stream_joint_states([q[j] for j in JOINTS])  # named: the nodes map them to their order
        deadline = time.monotonic() + 5
        while not h.rec.get("motor_commands") and time.monotonic() < deadline:
            time.sleep(0.02)
        hold = h.rec.get("motor_commands")[-1]  # before any plan: the measurement within the limits
        sent = dict(zip(hold.joint_names, hold.points[0].positions))
        assert list(hold.joint_names) == names
        assert sent == pytest.approx(dict(q, gripper=KNOWN_JOINT_LIMITS["gripper"][1]))
        assert count(h, "perception_node", "joint_states") == 0
        faults = ctrl.safety.faults
        h.set_joint_positions([dict(q, gripper=1.95)[j] for j in JOINTS])
        wait_drop(h, "perception_node", "joint_states", 0)
        assert "implausible joint state: gripper = 1.95 rad" in perception.stats.last_error
        deadline = time.monotonic() + 5
        while ctrl.safety.faults == faults and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ctrl.safety.faults > faults and "gripper = 1.95 rad" in ctrl.reason


def test_joints_without_built_in_limits_and_no_limits_given_are_a_one_line_configuration_error():
    renamed = [f"j{i}" for i in range(6)]
    with pytest.raises(RuntimeError) as err:
        GraphHarness("test_ros_bad_inputs_renamed", nodes=("controller_node",),
                     overrides={"controller_node": {"joint_names": renamed}})
    assert str(err.value).startswith(f"controller_node: cannot start: no built-in limits for joint(s) {renamed}")
    assert "joint_lower_limits, joint_upper_limits" in str(err.value) and "\n" not in str(err.value)


def test_instruction_with_control_characters_is_rejected(h):
    lang = h.by_name["language_node"]
    before = count(h, "language_node", "instruction")
    h.pub_instruction.publish(String(data="pick the cube\x07 now"))
    wait_drop(h, "language_node", "instruction", before)
    assert lang.instruction == "stack the blocks" and "U+0007" in lang.stats.last_error


def test_missing_camera_frames_are_counted(h):
    """Frames lost in transport or pushed out of a full queue show as gaps in the stamps."""
    h.set_joint_positions(Q0)
    time.sleep(0.2)
    perception = h.by_name["perception_node"]
    gate = perception.gates["camera"]
    # stamps 33 ms apart while each frame waits for its tokens: on a loaded machine they fall behind the clock
    max_age, gate.max_age_s = gate.max_age_s, 60.0
    pairing, perception.p.joint_state_timeout_s = perception.p.joint_state_timeout_s, 60.0
    before = count(h, "perception_node", "camera_missing")
    clock = h.probe.get_clock()
    base = clock.now().nanoseconds
    sent = [0, 1, 2, 3, 4, 5, 6, 9, 10]  # 30 Hz stamps; 7 and 8 never arrive
    n_tokens = h.rec.count("vision_tokens")
    for k in sent:
        stamp = base + k * 33_333_333
        time.sleep(max(0.0, (stamp - clock.now().nanoseconds) / 1e9))  # never stamped in the future
        msg = image(h)
        msg.header.stamp = time_from_ns(stamp)
        h.pub_image.publish(msg)
        h.rec.wait_for("vision_tokens", n_tokens + 1, 10)
        n_tokens += 1
    gate.max_age_s, perception.p.joint_state_timeout_s = max_age, pairing
    assert count(h, "perception_node", "camera_missing") - before == 2
    assert perception.extra_metrics()["camera_period_ms"] == pytest.approx(33.333, abs=0.01)


def test_frame_gap_counter():
    from sigma_ros.stats import FrameGapCounter

    period = 33_333_333
    learned = FrameGapCounter()
    assert [learned.add(k * period) for k in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14)] == [0] * 7 + [2, 0, 3]
    assert learned.missing == 5 and learned.received == 10
    fixed = FrameGapCounter(expected_hz=30.0)
    assert [fixed.add(k * period) for k in (0, 2, 3)] == [0, 1, 0]  # a known rate counts from the first gap


def test_graph_still_works_after_bad_inputs(h):
    """No node crashed: a valid frame still produces tokens, tau, a plan and tracking commands."""
    before = h.rec.count("action_plan")
    h.set_joint_positions(Q0)
    time.sleep(0.2)
    h.send_audio(np.zeros(1600, np.float32), 16000)
    h.send_image(np.full((96, 96, 3), 128, np.uint8), encoding="bgr8")
    h.rec.wait_for("action_plan", before + 1, 20)
    ctrl = h.by_name["controller_node"]
    deadline = time.monotonic() + 5
    while ctrl.mode != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ctrl.mode == "running", (ctrl.mode, ctrl.reason)
    for name in ("perception_node", "language_node", "action_node", "controller_node"):
        assert h.by_name[name].context.ok()


def test_frame_stride_runs_the_model_once_per_plan():
    """frame_stride 0 (the default).

    The model runs on every n_action_steps-th frame, one plan per plan the controller runs, as the closed-loop
    evaluation replans; a reset processes the next frame at once.
    """
    from std_msgs.msg import Empty

    from sigma_ros import graph, qos

    with GraphHarness("test_ros_frame_stride", nodes=("perception_node",),
                      overrides={"perception_node": {"frame_stride": 0}}) as g:
        g.wait_matched()
        g.stream_joint_states(Q0)
        time.sleep(0.3)
        stride = g.by_name["perception_node"].config.n_action_steps
        assert g.by_name["perception_node"].frame_stride == stride > 1
        for _ in range(2 * stride + 1):
            g.pub_image.publish(image(g))
            time.sleep(0.03)
        g.rec.wait_for("vision_tokens", 3, 10)
        time.sleep(0.3)
        assert g.rec.count("vision_tokens") == 3
        reset = g.probe.create_publisher(Empty, graph.TOPIC_BY_KEY["reset"].name, qos.INSTRUCTION)
        deadline = time.monotonic() + 5
        while reset.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        reset.publish(Empty())
        time.sleep(0.3)
        g.pub_image.publish(image(g))
        g.rec.wait_for("vision_tokens", 4, 10)


def test_frames_stamped_before_a_reset_are_skipped_and_the_next_one_is_processed_at_once(h):
    """sigma/reset: a frame still in flight shows the scene before the reset; the first frame after it plans."""
    from std_msgs.msg import Empty

    from sigma_ros import graph, qos

    h.set_joint_positions(Q0)
    time.sleep(0.2)
    node = h.by_name["perception_node"]
    old = image(h)  # stamped now, published after the reset
    reset = h.probe.create_publisher(Empty, graph.TOPIC_BY_KEY["reset"].name, qos.INSTRUCTION)
    deadline = time.monotonic() + 5
    while reset.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    stamp_ns = old.header.stamp.sec * 1_000_000_000 + old.header.stamp.nanosec
    time.sleep(0.05)
    reset.publish(Empty())
    deadline = time.monotonic() + 5
    while node.reset_ns <= stamp_ns and time.monotonic() < deadline:
        time.sleep(0.02)
    assert node.reset_ns > stamp_ns
    before, n_tokens = count(h, "perception_node", "camera_before_reset"), h.rec.count("vision_tokens")
    h.pub_image.publish(old)
    wait_drop(h, "perception_node", "camera_before_reset", before)
    time.sleep(0.2)
    assert h.rec.count("vision_tokens") == n_tokens
    h.pub_image.publish(image(h))  # the first frame after the reset: processed whatever the frame stride
    h.rec.wait_for("vision_tokens", n_tokens + 1, 10)
    h.probe.destroy_publisher(reset)


def test_a_frame_is_paired_with_the_joint_state_stamped_nearest_it():
    """Not with the newest arrival.

    While the state of the frame's own tick may still be in flight (the next one, a joint-state period after the
    newest, would be nearer), the frame waits for it; when the newest is the nearest possible it runs at once; a frame
    whose state never came goes with the nearest one when the next frame comes.
    """
    from sigma_ros.conversions import make_joint_state, tensor_from_msg

    ms = 1_000_000
    blank = np.zeros((96, 96, 3), np.uint8)

    def state_of(msg):
        return tensor_from_msg(msg.robot_state, [1, 6], "robot_state").numpy()[0]

    with GraphHarness("test_ros_state_pairing", nodes=("perception_node",)) as g:
        g.wait_matched()
        t = g.probe.get_clock().now().nanoseconds
        for k in (3, 2, 1):  # a 30 Hz stream
            g.pub_joint.publish(make_joint_state(Q0 - 0.01 * k, JOINTS, time_from_ns(t - 33 * k * ms)))
        time.sleep(0.2)
        g.send_image(blank, stamp=time_from_ns(t))
        time.sleep(0.3)
        assert g.rec.count("vision_tokens") == 0  # its own tick's state (stamped about t) is still to come
        g.pub_joint.publish(make_joint_state(Q0, JOINTS, time_from_ns(t + 2 * ms)))  # read with the frame
        (tokens,) = g.rec.wait_for("vision_tokens", 1, 10)
        np.testing.assert_allclose(state_of(tokens), Q0, atol=1e-6)
        assert tokens.header.stamp == time_from_ns(t)

        t = g.probe.get_clock().now().nanoseconds  # (stamps stay fresh)
        for k in (2, 1, 0):
            g.pub_joint.publish(make_joint_state(Q0 + 0.01 * k, JOINTS, time_from_ns(t - 33 * k * ms - 2 * ms)))
        time.sleep(0.2)
        g.send_image(blank, stamp=time_from_ns(t))  # the newest state (2 ms before it) is the nearest possible
        tokens = g.rec.wait_for("vision_tokens", 2, 10)[1]
        np.testing.assert_allclose(state_of(tokens), Q0, atol=1e-6)

        g.send_image(blank, stamp=time_from_ns(t + 33 * ms))  # its state never comes
        time.sleep(0.3)
        assert g.rec.count("vision_tokens") == 2
        g.send_image(blank, stamp=time_from_ns(t + 66 * ms))  # then it goes with the nearest one there is
        tokens = g.rec.wait_for("vision_tokens", 3, 10)[2]
        np.testing.assert_allclose(state_of(tokens), Q0, atol=1e-6)
        assert tokens.header.stamp == time_from_ns(t + 33 * ms)


def test_every_node_skips_data_stamped_before_a_reset(h):
    """Computed from a frame of the episode before sigma/reset, it would carry that episode into the new one."""
    from std_msgs.msg import Empty

    from sigma_ros import graph, qos
    from sigma_ros.conversions import plan_shapes

    c = h.by_name["perception_node"].config
    d, ns = c.d_model, c.n_state_tokens
    old = h.probe.get_clock().now().nanoseconds
    reset = h.probe.create_publisher(Empty, graph.TOPIC_BY_KEY["reset"].name, qos.INSTRUCTION)
    deadline = time.monotonic() + 5
    while reset.get_subscription_count() < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)
    reset.publish(Empty())
    deadline = time.monotonic() + 5
    while min(n.reset_ns for n in h.nodes) <= old and time.monotonic() < deadline:
        time.sleep(0.02)
    assert min(n.reset_ns for n in h.nodes) > old

    vt = VisionTokens()
    vt.vision_tokens = _tensor((1, c.n_vision_tokens, d))
    vt.state_tokens = _tensor((1, ns, d))
    tf = TelepathyFactors()
    tf.tau = _tensor((1, c.d_tau))
    hl = HighLevelRep()
    hl.high_level_rep = _tensor((1, 5, d))
    hl.mask = [True] * 5
    st = StateTokens()
    st.state_tokens = _tensor((1, ns, d))
    plan = ActionPlan()
    for field, shape in plan_shapes(c).items():
        setattr(plan, field, _tensor([1, *shape[1:]]))
    cases = [("vision_tokens", vt, [("language_node", "vision_tokens")]),
             ("telepathy_factors", tf, [("perception_node", "telepathy_factors"),
                                        ("action_node", "telepathy_factors")]),
             ("high_level_rep", hl, [("action_node", "high_level_rep")]),
             ("state_tokens", st, [("action_node", "state_tokens")]),
             ("action_plan", plan, [("controller_node", "action_plan")])]
    for topic, msg, targets in cases:
        msg.header.stamp = time_from_ns(old)
        befores = [count(h, node, f"{key}_before_reset") for node, key in targets]
        h.pub_internal[topic].publish(msg)
        for (node, key), b in zip(targets, befores):
            wait_drop(h, node, f"{key}_before_reset", b)
    assert h.by_name["controller_node"].loop.plan is None  # the old plan was not adopted: the arm holds
    h.probe.destroy_publisher(reset)


def test_sync_plans_run_the_model_on_the_first_frame_from_each_plan_request():
    """sync_plans: after the first frame, the model runs only on the first frame stamped at or after a plan request.

    A repeated request (same stamp) does not run it again.
    """
    from std_msgs.msg import Header

    from sigma_ros import graph, qos

    blank = np.zeros((96, 96, 3), np.uint8)
    with GraphHarness("test_ros_sync_requests", nodes=("perception_node",),
                      overrides={"perception_node": {"sync_plans": True}}) as g:
        request = g.probe.create_publisher(Header, graph.TOPIC_BY_KEY["plan_request"].name, qos.PIPELINE)
        g.wait_matched()
        deadline = time.monotonic() + 5
        while request.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        g.stream_joint_states(Q0)
        time.sleep(0.3)

        def frame(t=None):
            t = g.probe.get_clock().now().nanoseconds if t is None else t
            g.send_image(blank, stamp=time_from_ns(t))
            time.sleep(0.1)
            return t

        frame()
        g.rec.wait_for("vision_tokens", 1, 10)  # the first frame after start
        for _ in range(3):
            last = frame()
        t_req = g.probe.get_clock().now().nanoseconds  # a controller stamps its request with its own clock's now
        request.publish(Header(stamp=time_from_ns(t_req)))
        time.sleep(0.1)
        frame((last + t_req) // 2)  # stamped before the request (and after the frames before it)
        time.sleep(0.3)
        assert g.rec.count("vision_tokens") == 1
        time.sleep(0.3)
        frame()  # the first one from the request on
        g.rec.wait_for("vision_tokens", 2, 10)
        request.publish(Header(stamp=time_from_ns(t_req)))  # repeated while the controller waited
        time.sleep(0.1)
        frame()
        time.sleep(0.3)
        assert g.rec.count("vision_tokens") == 2
        g.probe.destroy_publisher(request)


def test_a_plan_request_from_the_future_is_refused_and_does_not_stall_perception():
    """sync_plans: one plan_request stamped an hour ahead (a skewed clock, a stray publisher) is refused as "future".

    Before, it was taken, and every later (correct) request looked like a repeat of it: perception never ran the
    model again, also not after a reset, and said nothing.
    """
    from std_msgs.msg import Header

    from sigma_ros import graph, qos

    q0 = np.array([0.1, -0.1, 0.2, 0.0, 0.3, 0.1])
    with GraphHarness("test_ros_future_request", nodes=("perception_node",),
                      overrides={"perception_node": {"sync_plans": True}}) as g:
        request = g.probe.create_publisher(Header, graph.TOPIC_BY_KEY["plan_request"].name, qos.PIPELINE)
        g.wait_matched()
        while request.get_subscription_count() < 1:
            time.sleep(0.02)
        g.stream_joint_states(q0)
        time.sleep(0.3)
        node = g.by_name["perception_node"]
        size = node.config.image_size

        def now():
            return g.probe.get_clock().now().nanoseconds

        def served(n: int) -> None:
            """Publish a request stamped now, then frames until the n-th vision tokens come."""
            request.publish(Header(stamp=time_from_ns(now())))
            time.sleep(0.1)
            deadline = time.monotonic() + 10
            while g.rec.count("vision_tokens") < n and time.monotonic() < deadline:
                g.send_image(np.zeros((size, size, 3), np.uint8), stamp=time_from_ns(now()))
                time.sleep(0.15)
            assert g.rec.count("vision_tokens") >= n, f"request {n} not served"

        g.send_image(np.zeros((size, size, 3), np.uint8), stamp=time_from_ns(now()))
        g.rec.wait_for("vision_tokens", 1, 10)  # the first frame runs without a request
        served(2)
        request.publish(Header(stamp=time_from_ns(now() + 3600 * 1_000_000_000)))
        deadline = time.monotonic() + 5
        while node.stats.drops.get("plan_request_future", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.stats.drops.get("plan_request_future", 0) == 1
        served(3)
