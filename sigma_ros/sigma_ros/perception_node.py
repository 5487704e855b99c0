# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Perception node: the cognitive vision workspace (paper 3.1) on live sensors.

Subscribes: camera (sensor_msgs/Image), optional depth (Image), audio (AudioChunk), joint states
(JointState) and the latest telepathy factors (tau_prev). Each camera frame, with the valid joint
state stamped nearest to it (and audio window / depth), runs ``model.vision_stage`` and publishes VisionTokens
(vision + state tokens, for the language node; with a VLA backbone also its image tokens) and
StateTokens (for the action node), both with the camera frame's header.

Freshness is judged by header stamp (:mod:`sigma_model.freshness`): frames older than
``camera_max_age_s``, sensor messages in the future or out of order are refused and counted; a
frame uses the joint state, depth and tau stamped within their timeouts of the frame's own stamp.
Frame and joint state are paired by stamp (the state read with the frame, as in a LeRobot observation
and so in the training data): while the next joint state (one joint-state period after the newest)
would be nearer to a frame than the newest one (the state of the frame's own tick may still be in
flight), the frame waits for it, or at the latest for the next frame.
An implausible joint state (beyond the limits by more than ``joint_state_tolerance_rad``) is
refused and invalidates the earlier ones, so frames wait for a valid measurement.

Which frames run the model: the first after start or reset, then every ``frame_stride``-th; with
``sync_plans`` instead the first frame stamped at or after each ``plan_request`` of the controller
(the end of its plan), so plans come exactly when the arm waits for them.
"""

from __future__ import annotations

import numpy as np
import torch

from sigma_model.freshness import NS, StaleInput, StampedHistory, StampGate
from sigma_model.outputs import SigmaObservation
from sigma_model.safety import JointLimits
from sigma_ros import qos
from sigma_ros.conversions import (
    AudioBuffer,
    ConversionError,
    audio_to_mono,
    depth_to_tensor,
    image_to_tensor,
    joint_state_to_vector,
    tensor_from_msg,
    tensor_to_msg,
    time_from_ns,
)
from sigma_ros.node_base import Param, SigmaNode, run_node, stamp_key, topic
from sigma_ros.stats import FrameGapCounter, Timer


class PerceptionNode(SigmaNode):
    WORKSPACES = ("vision",)
    STAGES = ("vision",)
    PARAMS = (
        Param("resize_images", False, "Resize camera/depth images of another size to the model input "
              "(false: such frames are rejected)"),
        Param("use_audio", True, "Feed the newest audio window to the vision stage (needs model use_audio)"),
        Param("use_depth", False, "Feed depth images to the vision stage (needs model use_depth)"),
        Param("use_tau_feedback", True, "Modulate vision with the newest telepathy factors (tau_prev)"),
        Param("tau_timeout_s", 2.0, "Telepathy factors of a frame stamped longer before this one are not used "
              "(tau_prev = 0)", min=0.0, max=3600.0),
        Param("camera_max_age_s", 0.5, "Camera frames stamped longer ago than this are refused (s)",
              min=0.001, max=3600.0),
        Param("joint_state_timeout_s", 1.0, "A frame needs a joint state stamped within this of its own stamp; "
              "older joint states are refused (s)", min=0.001, max=3600.0),
        Param("depth_timeout_s", 0.5, "Depth stamped further than this from the frame is not used (s)",
              min=0.001, max=3600.0),
        Param("audio_max_age_s", 1.0, "Audio chunks stamped longer ago than this are refused (s)",
              min=0.001, max=3600.0),
        Param("frame_stride", 0, "Run the model on every n-th camera frame (1: every frame; 0: the model's "
              "n_action_steps, one plan per plan the controller runs, as the closed-loop evaluation replans)",
              min=0, max=1000),
        Param("camera_expected_hz", 0.0, "Camera rate the missing-frame count is judged against (0: the median "
              "interval of the received stamps)", min=0.0, max=1000.0),
        Param("count_missing_frames", True, "Count camera frames missing from stamp gaps (off for streams that are "
              "irregular by design, e.g. a lockstep replay)"),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("perception_node", **kwargs)

    def configure(self) -> None:
        from sensor_msgs.msg import Image, JointState
        from sigma_ros_msgs.msg import AudioChunk, StateTokens, TelepathyFactors, VisionTokens

        self._VisionTokens, self._StateTokens = VisionTokens, StateTokens
        c = self.config
        self.use_audio = bool(self.p.use_audio and c.use_audio)
        self.use_depth = bool(self.p.use_depth and c.use_depth)
        if self.p.use_audio and not c.use_audio:
            self.get_logger().warn("use_audio is set but the model has use_audio=false: audio ignored")
        if self.p.use_depth and not c.use_depth:
            self.get_logger().warn("use_depth is set but the model has use_depth=false: depth ignored")
        self.audio = AudioBuffer(c.audio_chunk_samples)
        self.limits = JointLimits(self.p.joint_lower_limits, self.p.joint_upper_limits,
                                  self.p.joint_state_tolerance_rad, self.p.joint_names)
        future, unstamped = self.p.stamp_future_tolerance_s, self.p.accept_unstamped
        self.gates = {
            "camera": StampGate("camera", self.p.camera_max_age_s, future, unstamped),
            "joint_states": StampGate("joint_states", self.p.joint_state_timeout_s, future, unstamped),
            "depth": StampGate("depth", self.p.depth_timeout_s, future, unstamped),
            "audio": StampGate("audio", self.p.audio_max_age_s, future, unstamped),
        }
        self.states = StampedHistory(self.p.joint_state_timeout_s)
        self.pending_frame: tuple | None = None  # (image, stamp, header): a frame waiting for its joint state
        self.tau: torch.Tensor | None = None
        self.tau_stamp = None
        self.tau_stamp_ns = 0
        self.depth: torch.Tensor | None = None
        self.depth_stamp = 0
        self.frames = 0
        self.frame_stride = self.p.frame_stride or self.config.n_action_steps
        self.frames_since_step: int | None = None  # None: the next valid frame is processed
        self.camera_gaps = FrameGapCounter(self.p.camera_expected_hz)
        self.stats.declare_drop("camera_missing")
        self.stats.declare_drop("camera_before_reset")

        self.vision_pub = self.make_publisher(VisionTokens, topic("vision_tokens"), qos.PIPELINE)
        self.state_pub = self.make_publisher(StateTokens, topic("state_tokens"), qos.PIPELINE)
        self.subscribe(Image, topic("camera"), "camera", self.on_image, qos.SENSOR)
        self.subscribe(JointState, topic("joint_states"), "joint_states", self.on_joint_state, qos.SENSOR)
        self.subscribe(AudioChunk, topic("audio"), "audio", self.on_audio, qos.SENSOR)
        self.subscribe(TelepathyFactors, topic("telepathy_factors"), "telepathy_factors", self.on_tau, qos.PIPELINE)
        if self.use_depth:
            self.subscribe(Image, topic("depth"), "depth", self.on_depth, qos.SENSOR)
        self.request_ns: int | None = None  # sync_plans: the next frame stamped from then on runs the model
        self.last_request_ns = 0
        if self.p.sync_plans:
            from std_msgs.msg import Header

            self.subscribe(Header, topic("plan_request"), "plan_request", self.on_plan_request, qos.PIPELINE)

    def activate(self) -> None:
        """Activate; inputs from before (or while) inactive are not used: the next frame waits for a new joint state."""
        self.states.clear()
        self.depth = None
        self.reset_ns = self.get_clock().now().nanoseconds
        self.reset_episode()
        self.set_mode("waiting", "no camera frame yet")

    def restart_streams(self) -> None:
        """Forget every stream's last stamp, the joint states, depth and plan requests (the clock jumped back)."""
        for gate in self.gates.values():
            gate.reset()
        self.states.clear()
        self.depth, self.depth_stamp = None, 0
        self.last_request_ns = 0
        self.set_mode("waiting", "the clock jumped back: waiting for fresh inputs")

    # --------------------------------------------------------------- inputs
    def accept_stamp(self, key: str, header) -> int:
        """Return the message's stamp if it is fresh and in order (else StaleInput: refused and counted)."""
        return self.gates[key].accept(stamp_key(header), self.get_clock().now().nanoseconds)

    def on_joint_state(self, msg) -> None:
        try:
            vec = joint_state_to_vector(msg, self.p.joint_names)
            vec, fault = self.limits.check(vec)
            if fault:
                raise ConversionError(f"joint_states: {fault}")
            stamp = self.accept_stamp("joint_states", msg.header)
        except ValueError:
            self.states.clear()  # a faulty sensor invalidates the earlier states: frames wait for a valid one
            raise
        self.states.add(stamp, vec)
        if self.pending_frame is not None and not self.states.nearer_may_come(self.pending_frame[1]):
            self._process_pending()

    def on_audio(self, msg) -> None:
        if not self.use_audio:
            return
        mono = audio_to_mono(msg, self.config.audio_sample_rate)
        self.accept_stamp("audio", msg.header)
        self.audio.push(mono)

    def on_depth(self, msg) -> None:
        depth = depth_to_tensor(msg, self.config.image_size, self.p.resize_images)
        self.depth_stamp = self.accept_stamp("depth", msg.header)
        self.depth = depth

    def on_plan_request(self, msg) -> None:
        stamp = stamp_key(msg)  # a std_msgs/Header
        ahead_s = (stamp - self.get_clock().now().nanoseconds) / NS
        if ahead_s > self.p.stamp_future_tolerance_s:  # it would hide every request after it
            raise StaleInput("future", f"plan_request: stamp {ahead_s:.3f}s in the future > "
                                       f"{self.p.stamp_future_tolerance_s}s")
        if stamp > self.last_request_ns and not self.skip_before_reset("plan_request", stamp):
            self.request_ns = self.last_request_ns = stamp  # (the controller repeats a request until it is served)

    def on_tau(self, msg) -> None:
        tau = tensor_from_msg(msg.tau, [None, self.config.d_tau], "telepathy_factors.tau")
        if self.skip_before_reset("telepathy_factors", stamp_key(msg.header)):
            return
        self.tau, self.tau_stamp, self.tau_stamp_ns = tau, msg.header.stamp, stamp_key(msg.header)

    def reset_episode(self) -> None:
        """Start a new episode: the next frame stamped from now on is processed at once and sees tau_prev = 0.

        Frames stamped before the reset (still in flight) show the scene before it: they are skipped (counted).
        """
        self.tau, self.tau_stamp, self.tau_stamp_ns = None, None, 0
        self.frames_since_step = None
        self.pending_frame = None
        self.request_ns = None

    def within(self, stamp: int, frame_stamp: int, timeout_s: float) -> bool:
        return stamp != 0 and abs(frame_stamp - stamp) <= timeout_s * NS

    def on_image(self, msg) -> None:
        if self.pending_frame is not None:  # no later joint state came: it goes with the nearest one there is
            self._process_pending()
        with Timer() as t_conv:
            image = image_to_tensor(msg, self.config.image_size, self.p.resize_images)
        self.stats.latency("decode", t_conv.seconds)
        frame_stamp = self.accept_stamp("camera", msg.header)
        if self.skip_before_reset("camera", frame_stamp):  # it shows the scene before the reset
            return
        missing = self.camera_gaps.add(frame_stamp) if self.p.count_missing_frames else 0
        if missing:
            self.stats.drop("camera_missing", f"camera: {missing} frame(s) missing before this one (stamp gap)",
                            count=missing)
        newest = self.states.newest_stamp
        if newest is None or frame_stamp - newest > self.p.joint_state_timeout_s * NS:
            self._no_joint_state()
            return
        if self.frames_since_step is not None:
            self.frames_since_step += 1
            if self.p.sync_plans:
                if self.request_ns is None or frame_stamp < self.request_ns:
                    return  # the controller's plan is not done yet
                self.request_ns = None
            elif self.frames_since_step < self.frame_stride:
                return  # between plans (frame_stride)
        self.frames_since_step = 0
        header = msg.header
        if stamp_key(header) == 0:  # an accepted unstamped frame: its arrival stamp pairs the stages downstream
            header.stamp = time_from_ns(frame_stamp)
        self.pending_frame = (image, frame_stamp, header)
        if not self.states.nearer_may_come(frame_stamp):
            self._process_pending()

    def _no_joint_state(self) -> None:
        self.set_mode("waiting", "no valid joint state")
        self.reject("camera", "no valid joint state stamped within joint_state_timeout_s of the frame: "
                              "frame skipped (hold)")

    def _process_pending(self) -> None:
        """Run the vision stage on the waiting frame with the joint state stamped nearest to it."""
        image, frame_stamp, header = self.pending_frame
        self.pending_frame = None
        paired = self.states.nearest(frame_stamp)
        if paired is None or not self.within(paired[0], frame_stamp, self.p.joint_state_timeout_s):
            self._no_joint_state()
            return
        state = paired[1]
        tau_prev = None
        used_tau = False
        if (self.p.telepathy and self.p.use_tau_feedback and self.tau is not None and self.tau.shape[0] == 1
                and 0 <= frame_stamp - self.tau_stamp_ns <= self.p.tau_timeout_s * NS):
            tau_prev, used_tau = self.tau, True
        audio = self.audio.tensor() if self.use_audio else None
        depth = (
            self.depth
            if (self.use_depth and self.within(self.depth_stamp, frame_stamp, self.p.depth_timeout_s))
            else None
        )
        if self.use_depth and depth is None:
            depth = torch.zeros(1, 1, self.config.image_size, self.config.image_size)
        robot_state = torch.from_numpy(state.astype(np.float32)).unsqueeze(0)
        obs = SigmaObservation(image=image, robot_state=robot_state, audio=audio, depth=depth)
        with Timer() as t_model, torch.inference_mode():
            vis = self.model.vision_stage(obs, tau_prev)
        self.stats.latency("vision_stage", t_model.seconds)
        self.frames += 1

        out = self._VisionTokens()
        out.header = header
        out.frame_index = self.frames
        tensor_to_msg(vis.vision_tokens, out.vision_tokens)
        tensor_to_msg(vis.state_tokens, out.state_tokens)
        tensor_to_msg(robot_state, out.robot_state)
        if vis.backbone_image_tokens is not None:  # a VLA backbone's own prefix reads them in the language stage
            tensor_to_msg(vis.backbone_image_tokens, out.backbone_image_tokens)
        out.used_tau = used_tau
        if used_tau:
            out.tau_stamp = self.tau_stamp
        st = self._StateTokens()
        st.header = header
        st.frame_index = self.frames
        st.state_tokens = out.state_tokens
        st.robot_state = out.robot_state
        # State tokens first: the action node must hold them before the language step completes.
        self.state_pub.publish(st)
        self.vision_pub.publish(out)
        self.stats.event("tokens_out")
        self.set_mode("running")


    def extra_metrics(self) -> dict[str, float]:
        period = self.camera_gaps.period_ns()
        return {"camera_period_ms": period / 1e6 if period else 0.0,
                "camera_frames_missing": float(self.camera_gaps.missing)}


def main(args=None) -> int:
    return run_node(PerceptionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
