# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Common base of the four Sigma nodes.

Managed (lifecycle) nodes with parameters with descriptors, the model part, status and diagnostics, bad-input handling
and a clean ``main``.
"""

from __future__ import annotations

import atexit
import difflib
import functools
import os
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.clock import ClockChange, JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node

from sigma_model.freshness import NS, StaleInput
from sigma_ros import qos
from sigma_ros.conversions import ConversionError
from sigma_ros.diagnostics import DropWatch, diagnostic_array, judge, key_values
from sigma_ros.graph import EXIT_CONFIG_ERROR, TOPIC_BY_KEY
from sigma_ros.stats import NodeStats

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}
_ARRAY_TYPES = {
    bool: ParameterType.PARAMETER_BOOL_ARRAY,
    int: ParameterType.PARAMETER_INTEGER_ARRAY,
    float: ParameterType.PARAMETER_DOUBLE_ARRAY,
    str: ParameterType.PARAMETER_STRING_ARRAY,
}


class NodeConfigError(RuntimeError):
    """A node cannot start as configured (one line for the user; the process exits with EXIT_CONFIG_ERROR)."""


@dataclass(frozen=True)
class Param:
    """One node parameter: name, default (its type is the parameter's type), description.

    ``item_type``: the element type of a list parameter whose default is empty.
    """

    name: str
    default: Any
    description: str
    constraints: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    item_type: type | None = None

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, description=self.description, read_only=True)
        v = self.default
        if isinstance(v, (list, tuple)):
            d.type = _ARRAY_TYPES[type(v[0]) if v else self.item_type]
        else:
            d.type = _TYPES[type(v)]
        constraints = self.constraints
        if self.choices:
            constraints = (constraints + "; " if constraints else "") + "one of: " + ", ".join(self.choices)
        d.additional_constraints = constraints
        if self.min is not None and self.max is not None:
            if isinstance(v, bool):
                pass
            elif isinstance(v, int):
                d.integer_range = [IntegerRange(from_value=int(self.min), to_value=int(self.max), step=0)]
            elif isinstance(v, float):
                d.floating_point_range = [
                    FloatingPointRange(from_value=float(self.min), to_value=float(self.max), step=0.0)
                ]
        return d


# Parameters every node has (the /** section of config/sigma.yaml).
COMMON_PARAMS: tuple[Param, ...] = (
    Param("checkpoint", "", "Sigma checkpoint directory (config.json + <workspace>.safetensors); "
          "empty = seeded random weights from model_seed/model_config"),
    Param("model_seed", 0, "Seed of the random weights when no checkpoint is given (identical in every node)",
          min=0, max=2**31 - 1),
    Param("model_config", "", "SigmaConfig JSON used when no checkpoint is given (empty = defaults)"),
    Param("device", "cpu", "torch device of this node's workspace"),
    Param("torch_threads", 0, "torch intra-op threads for this process (0 = torch default)", min=0, max=256),
    Param("telepathy", True, "Telepathy on (tau modulates vision and adds the residual) or the tau = 0 baseline"),
    Param("sync_plans", False, "Synchronous inference, as LeRobot's own loop: the arm holds at the end of each plan "
          "until the plan of a frame from then on is there, and runs it from step 0 (false: plans run on, the next "
          "one aligned to its frame's stamp)"),
    Param("joint_names", ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"],
          "Joint names in the order of the model's state/action vectors"),
    Param("joint_lower_limits", [], "Lower joint position limits (rad), in joint_names order; empty: each joint's "
          "built-in limit by name (the SO-101's; another joint is a configuration error)", item_type=float),
    Param("joint_upper_limits", [], "Upper joint position limits (rad), in joint_names order; empty: each joint's "
          "built-in limit by name (the SO-101's; another joint is a configuration error)", item_type=float),
    Param("joint_state_tolerance_rad", 0.1, "A measured position beyond the limits by more than this is a sensor "
          "fault: refused, counted, the arm holds (capped at the controller's max_step_rad)", min=0.0, max=10.0),
    Param("stamp_future_tolerance_s", 0.1, "Inputs stamped further in the future than this are refused (clock "
          "skew between machines, s)", min=0.0, max=60.0),
    Param("accept_unstamped", False, "Accept sensor messages with a zero header stamp, stamping them on arrival "
          "(false: refuse them; freshness is judged by stamp)"),
    Param("status_period_s", 1.0, "Period of the sigma/status message (s)", min=0.05, max=60.0),
    Param("error_log_period_s", 2.0, "Minimum period between logged errors of one input (throttling, s)",
          min=0.0, max=3600.0),
)


class Params:
    """Attribute access to the declared parameter values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def declare_parameters(node: Node, params: Sequence[Param]) -> Params:
    """Declare ``params`` on ``node``; a value of the wrong type, out of range or not a choice is a NodeConfigError.

    A list parameter with an empty default is declared by its type (rclpy would type an empty list as bytes); an empty
    list given in a parameter file reads as not set: the default.
    """
    from rclpy.exceptions import ParameterException
    from rclpy.parameter import Parameter

    values = {}
    for p in params:
        descriptor = p.descriptor()
        empty = isinstance(p.default, (list, tuple)) and not p.default
        default = Parameter.Type(descriptor.type) if empty else p.default
        try:
            value = node.declare_parameter(p.name, default, descriptor).value
        except ParameterException as err:  # e.g. an integer given for a double: rclpy's multi-line message
            raise NodeConfigError(f"parameter {p.name}: {' '.join(str(err).split())}") from None
        if value is None:
            value = p.default
        if isinstance(p.default, tuple):
            value = tuple(value)
        if p.choices and value not in p.choices:
            raise NodeConfigError(f"parameter {p.name}={value!r} must be one of {p.choices}")
        if p.min is not None and not isinstance(p.default, (bool, list, tuple, str)) and not (p.min <= value <= p.max):
            raise NodeConfigError(f"parameter {p.name}={value!r} must be in [{p.min}, {p.max}]")
        values[p.name] = list(value) if isinstance(value, (list, tuple)) else value
    return Params(values)


def check_parameter_names(node: Node) -> None:
    """NodeConfigError naming each parameter given to ``node`` (parameter file, ``-p``) that it does not declare.

    rclpy would ignore it silently: a misspelt ``max_step_rad`` would leave the safety limit at its default. Call it
    once the node has declared its parameters; ``qos_overrides.*`` (declared with the entities they tune) are left out.
    """
    declared = sorted(node._parameters)
    unknown = sorted(n for n in node._parameter_overrides if n not in node._parameters
                     and not n.startswith("qos_overrides."))
    if unknown:
        names = [f"{n!r}" + "".join(f" (did you mean {m!r}?)" for m in difflib.get_close_matches(n, declared, n=1))
                 for n in unknown]
        raise NodeConfigError(f"unknown parameter{'s' if len(names) > 1 else ''} {', '.join(names)} "
                              "(sigma-graph --list_params=true lists them)")


def configuration_error(err: BaseException) -> str:
    """Return why the node cannot start as configured (one line), or '' when ``err`` is no configuration error.

    A NodeConfigError, or rclpy refusing the ROS arguments (e.g. a bad ``--params-file``).
    """
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

    if isinstance(err, NodeConfigError):
        return str(err)
    text = str(err)
    if isinstance(err, _rclpy.RCLInvalidROSArgsError) or (isinstance(err, _rclpy.RCLError)
                                                          and "Couldn't parse" in text):
        return " ".join(re.sub(r", at \S+:\d+", "", text).split())  # without rcl's source locations
    return ""


def topic(key: str) -> str:
    """Default (relative, remappable) name of a graph topic."""
    return TOPIC_BY_KEY[key].name


class SigmaNode(LifecycleNode):
    """A Sigma node.

    A managed (lifecycle) node with COMMON_PARAMS + node params, its workspaces, status and diagnostics.

    * constructed (unconfigured): parameters declared; ``sigma/status`` and ``/diagnostics``
      are published in every state;
    * configure: loads the workspaces (the checkpoint), then :meth:`configure` makes the
      subscriptions, (lifecycle) publishers and timers; a failure leaves the node unconfigured
      with ``config_error`` set (a node process then exits with EXIT_CONFIG_ERROR);
    * activate: enables the publishers, :meth:`activate` starts the processing (timers);
    * deactivate: :meth:`deactivate` stops it (the controller publishes its hold first), then
      the publishers are disabled; inputs not in ``INACTIVE_INPUTS`` are ignored while inactive;
    * cleanup / shutdown: everything made by configure and the model are released.

    Subclasses set ``WORKSPACES``, ``STAGES`` (the model stage functions they call, warmed up at configure) and
    ``PARAMS`` and make subscriptions with :meth:`subscribe`,
    whose callbacks are :meth:`guarded`: a bad message is logged (throttled per input), counted as
    dropped and never propagates an exception into the executor.
    """

    WORKSPACES: tuple[str, ...] = ()
    STAGES: tuple[str, ...] = ()
    PARAMS: tuple[Param, ...] = ()
    INACTIVE_INPUTS: tuple[str, ...] = ("reset",)  # handled while inactive (state only, no outputs)

    def __init__(self, node_name: str, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.p = declare_parameters(self, COMMON_PARAMS + tuple(self.PARAMS))
        check_parameter_names(self)
        self.stats = NodeStats(window_s=max(5.0, 2 * self.p.status_period_s))
        self.mode, self.reason = "unconfigured", "not configured yet"
        self.active = self.configured = False
        self.config_error = ""
        self._log_times: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._log_lock = threading.Lock()
        self._entities: list = []  # made by configure, released by cleanup
        self.model = None
        self.config = None
        self.reset_ns = 0  # ROS time of the last sigma/reset: data stamped before it belongs to the episode before
        from diagnostic_msgs.msg import DiagnosticArray
        from sigma_ros_msgs.msg import Status

        self._Status = Status
        self._drop_watch = DropWatch()
        self.status_pub = self.create_publisher(Status, topic("status"), qos.STATUS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, topic("diagnostics"), qos.STATUS)
        self._status_timer = self.create_timer(self.p.status_period_s, self.publish_status)
        # a looped bag (ros2 bag play --loop --clock) or a simulator reset turns the sim clock back; switching
        # use_sim_time (the one parameter settable at run time) changes the timeline, reported with a delta of 0
        self.stats.declare_drop("clock_jumps_back")
        back = max(1, int(self.p.stamp_future_tolerance_s * NS))
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-back), on_clock_change=True),
            post_callback=self._on_clock_jump_back)

    # -------------------------------------------------------------- lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        from std_msgs.msg import Empty

        from sigma_model.checkpoint import CheckpointError

        self.config_error = ""
        try:
            if self.p.torch_threads:
                import torch

                torch.set_num_threads(int(self.p.torch_threads))
            if self.WORKSPACES:
                self.model = self._load_model()
                self.config = self.model.config
            self.subscribe(Empty, topic("reset"), "reset", self._on_reset, qos.INSTRUCTION)
            self.configure()
        except Exception as err:  # noqa: BLE001 - reported by the caller (one line), the node stays unconfigured
            self.config_error = str(err) if isinstance(err, (CheckpointError, NodeConfigError, ValueError)) else \
                f"{type(err).__name__}: {err}"
            self._release()
            self.set_mode("unconfigured", f"configure failed: {self.config_error}")
            return TransitionCallbackReturn.FAILURE
        self.configured = True
        self.set_mode("inactive", "configured, not active")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        self.set_mode("running")
        self.activate()
        self.active = True
        return result

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.active = False
        self.deactivate()
        self.set_mode("inactive", "deactivated")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release()
        self.set_mode("unconfigured", "cleaned up")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        if self.active:
            self.active = False
            self.deactivate()
        self._release()
        self.set_mode("finalized", "shut down")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self.active = False
        self._release()
        self.set_mode("unconfigured", "error during a transition")
        return TransitionCallbackReturn.SUCCESS

    def configure(self) -> None:
        """Make the node's subscriptions, publishers and timers (the model is loaded). Nodes override this."""

    def activate(self) -> None:
        """Start processing (publishers are enabled). Nodes override this."""

    def deactivate(self) -> None:
        """Stop processing (publishers are still enabled). Nodes override this."""

    def lifecycle_state(self) -> str:
        return self._state_machine.current_state[1]

    def shutdown(self) -> None:
        """Return the lifecycle shutdown transition from any primary state (before the node is destroyed).

        Once the context is shut down (SIGINT) nothing can be published: the node only releases.
        """
        try:
            if not self.context.ok():
                self.active = False
                self._release()
            elif self.lifecycle_state() in ("unconfigured", "inactive", "active"):
                self.trigger_shutdown()
        except Exception:  # noqa: BLE001 - mid-transition
            pass

    def _release(self) -> None:
        from rclpy.lifecycle.publisher import LifecyclePublisher
        from rclpy.subscription import Subscription
        from rclpy.timer import Timer as RosTimer

        for entity in self._entities:
            try:
                if isinstance(entity, LifecyclePublisher):
                    self.destroy_lifecycle_publisher(entity)
                elif isinstance(entity, Subscription):
                    self.destroy_subscription(entity)
                elif isinstance(entity, RosTimer):
                    self.destroy_timer(entity)
            except Exception:  # noqa: BLE001 - context gone
                pass
        self._entities = []
        self.model = self.config = None
        self.configured = False

    # ------------------------------------------------- entities of configure
    def make_publisher(self, msg_type, topic_name: str, qos_profile):
        """Return a lifecycle publisher: it publishes only while the node is active."""
        pub = self.create_lifecycle_publisher(msg_type, topic_name, qos_profile)
        self._entities.append(pub)
        return pub

    def subscribe(self, msg_type, topic_name: str, input_name: str, fn: Callable, qos_profile):
        """Return a subscription whose callback is :meth:`guarded` (and ignored while inactive)."""
        sub = self.create_subscription(msg_type, topic_name, self.guarded(input_name, fn), qos_profile)
        self._entities.append(sub)
        return sub

    def make_timer(self, period_s: float, fn: Callable, autostart: bool = True):
        t = self.create_timer(period_s, fn, autostart=autostart)
        self._entities.append(t)
        return t

    # ------------------------------------------------------------------ model
    def _load_model(self):
        from sigma_ros.model_loader import load_sigma_model

        t0 = time.perf_counter()
        model = load_sigma_model(self.p.checkpoint or None, self.WORKSPACES, seed=self.p.model_seed,
                                 config_path=self.p.model_config or None, device=self.p.device)
        source = self.p.checkpoint or f"random weights (seed {self.p.model_seed})"
        loaded = time.perf_counter() - t0
        first = model.warm_up(stages=self.STAGES)  # the stages' first calls are slow: not on the first frame
        self.get_logger().info(
            f"loaded workspaces {list(model.workspaces)} from {source} in {loaded:.2f}s; warmed up ("
            + ", ".join(f"{stage} stage's first call {1e3 * s:.0f} ms" for stage, s in first.items()) + ")")
        return model

    # ------------------------------------------------------------ bad inputs
    def log_throttled(self, key: str, text: str, level: str = "error") -> None:
        now = time.monotonic()
        with self._log_lock:
            last = self._log_times.get(key)
            if last is not None and now - last < self.p.error_log_period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._log_times[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            text += f" ({suppressed} similar messages suppressed)"
        # one call site per severity: rclpy raises ValueError when one line logs at two severities
        logger = self.get_logger()
        if level == "error":
            logger.error(text)
        elif level == "warning":
            logger.warning(text)
        elif level == "debug":
            logger.debug(text)
        else:
            raise ValueError(f"log_throttled: level must be error, warning or debug, got {level!r}")

    def reject(self, input_name: str, reason: str) -> None:
        """Count a dropped input and log why (throttled per input)."""
        count = self.stats.drop(input_name, f"{input_name}: {reason}")
        self.log_throttled(input_name, f"dropped {input_name} message #{count}: {reason}")

    def guarded(self, input_name: str, fn: Callable) -> Callable:
        """Wrap a subscription callback.

        Bad data -> reject(); never raise into the executor; while inactive only ``INACTIVE_INPUTS`` are handled (the
        others are counted and ignored).
        """
        self.stats.declare_drop(input_name)
        handled_inactive = input_name in self.INACTIVE_INPUTS

        @functools.wraps(fn)
        def wrapper(msg):
            if not (self.active or handled_inactive):
                self.stats.event("ignored_while_inactive")
                return None
            self.stats.event(f"{input_name}_in")
            try:
                return fn(msg)
            except StaleInput as err:
                self.reject(f"{input_name}_{err.kind}", str(err))
            except ConversionError as err:
                self.reject(input_name, str(err))
            except (ValueError, RuntimeError) as err:  # model-side shape/value checks
                self.reject(input_name, f"{type(err).__name__}: {err}")
            except Exception as err:  # noqa: BLE001 - a node must survive any single message
                self.reject(input_name, f"internal error {type(err).__name__}: {err}")
                self.log_throttled(input_name + "_tb", traceback.format_exc(), level="debug")
            return None

        return wrapper

    def _on_reset(self, _msg) -> None:
        self.reset_ns = self.get_clock().now().nanoseconds
        self.reset_episode()
        self.stats.event("resets")
        self.get_logger().info("reset: new episode")

    def reset_episode(self) -> None:
        """Start a new episode (``sigma/reset``): forget the recurrent state. Nodes override this."""

    def restart_streams(self) -> None:
        """Forget the stamps and values of the input streams (the clock jumped back). Nodes override this."""

    def _on_clock_jump_back(self, jump) -> None:
        """Restart on a new timeline.

        The ROS clock jumped back by more than ``stamp_future_tolerance_s``, or switched between sim and system time
        (``use_sim_time`` set at run time). Stamps seen so far belong to the old timeline: the stream histories would
        refuse all new data as out of order, or keep old data as fresh (and a reset stamped before the jump would
        skip it). So the jump is a reset; the node forgets its streams and holds until fresh inputs arrive. Counted
        as ``clock_jumps_back``.
        """
        if jump.clock_change in (ClockChange.ROS_TIME_ACTIVATED, ClockChange.ROS_TIME_DEACTIVATED):
            what = f"switched to {'sim' if jump.clock_change == ClockChange.ROS_TIME_ACTIVATED else 'system'} time"
        else:
            what = f"jumped back {-jump.delta.nanoseconds / NS:.3f}s"
        self.reset_ns = self.get_clock().now().nanoseconds
        if self.configured:
            self.restart_streams()
            self.reset_episode()
        count = self.stats.drop("clock_jumps_back", f"ROS clock {what}: streams restarted")
        self.log_throttled("clock_jumps_back", f"ROS clock {what} (a looped bag, a simulator reset or use_sim_time "
                           f"set; #{count}): new episode, input histories cleared, holding until fresh inputs "
                           "arrive", level="warning")

    def skip_before_reset(self, input_name: str, stamp_ns: int) -> bool:
        """Whether data stamped before the last reset must be skipped (counted as ``<input>_before_reset``).

        It comes from the episode before the reset (a frame of the old scene, or what was computed from one), and
        would carry that episode into the new one. Unstamped data (stamp 0) is left to the input's stamp gate.
        """
        if stamp_ns == 0 or stamp_ns >= self.reset_ns:
            return False
        self.stats.drop(f"{input_name}_before_reset",
                        f"{input_name}: stamped before the last reset (the episode before it): skipped")
        return True

    def set_mode(self, mode: str, reason: str = "") -> None:
        self.mode, self.reason = mode, reason

    # ---------------------------------------------------- status, diagnostics
    def extra_rates(self) -> dict[str, float]:
        """Extra rates (name -> Hz) a configured subclass reports."""
        return {}

    def extra_metrics(self) -> dict[str, float]:
        """Other metrics (name -> value) a configured subclass reports."""
        return {}

    def publish_status(self) -> None:
        """Publish ``sigma/status`` and ``/diagnostics`` from one snapshot.

        ``sigma/status`` holds typed arrays the demo, benchmarks and tests read; ``/diagnostics`` the same figures as a
        diagnostic_updater status.
        """
        snap = self.stats.snapshot()
        rates = dict(snap["rates"])
        metrics = {}
        if self.configured:
            rates.update(self.extra_rates())
            metrics = self.extra_metrics()
        stamp = self.get_clock().now().to_msg()
        msg = self._Status()
        msg.header.stamp = stamp
        msg.node = self.get_name()
        msg.mode = self.mode
        msg.reason = self.reason
        stages = sorted(snap["latency"])
        msg.stage_names = stages
        msg.stage_latency_ms = [float(snap["latency"][s][0]) for s in stages]
        msg.stage_latency_mean_ms = [float(snap["latency"][s][1]) for s in stages]
        msg.stage_latency_max_ms = [float(snap["latency"][s][2]) for s in stages]
        names = sorted(rates)
        msg.rate_names = names
        msg.rates_hz = [float(rates[n]) for n in names]
        msg.metric_names = sorted(metrics)
        msg.metric_values = [float(metrics[n]) for n in msg.metric_names]
        drops = snap["drops"]
        msg.drop_names = sorted(drops)
        msg.drop_counts = [int(drops[n]) for n in msg.drop_names]
        msg.dropped_inputs = int(sum(drops.values()))
        msg.last_error = snap["last_error"][:500]
        self.status_pub.publish(msg)

        state = self.lifecycle_state()
        level, message = judge(state, self.mode, self.reason, self._drop_watch.new(drops), self.config_error)
        self.diagnostics_pub.publish(diagnostic_array(
            stamp, self.get_name(), self.p.device, level, message,
            key_values(state, self.mode, self.reason, snap, rates, metrics)))


def stamp_key(header) -> int:
    """Header stamp as integer nanoseconds (the pairing key between stages)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def run_node(node_cls, args: list[str] | None = None) -> NoReturn:
    """Entry point body of one node process: spin until SIGINT/SIGTERM or shutdown, clean up, exit.

    The node starts unconfigured; a lifecycle manager (``sigma-graph``, ``ros2 launch``, ``ros2
    lifecycle set``) configures and activates it (a robot node does both itself). Exits 0 after a
    signal, and EXIT_CONFIG_ERROR with one line on stderr when configuring fails (checkpoint missing
    or corrupt, parameters that do not fit the model, a :class:`NodeConfigError`). Once the node is
    shut down and destroyed and the context shut down (which flushes the ROS logs) the process
    leaves by ``os._exit``: the interpreter's own teardown (a full garbage collection and the
    release of thousands of torch/transformers module objects) took seconds on a loaded machine
    and does nothing a node needs.
    """
    from rclpy.executors import ExternalShutdownException

    _interrupt_once()
    node = None
    code = 0
    try:
        rclpy.init(args=args if args is not None else sys.argv)
        node = node_cls()
        from sigma_ros.executors import make_executor

        executor = make_executor(kind="single_threaded")  # one node: one mutually exclusive callback group
        executor.add_node(node)
        while rclpy.ok() and not node.config_error:
            executor.spin_once(timeout_sec=0.5)
        if node.config_error:
            print(f"{Path(sys.argv[0]).stem}: cannot start: {node.config_error}", file=sys.stderr)
            code = EXIT_CONFIG_ERROR
    except (KeyboardInterrupt, ExternalShutdownException):
        rclpy.try_shutdown()  # rclpy's own handler is shutting the context down (and finalizing the node)
    except RuntimeError as err:
        # raised before configure: the parameters (a NodeConfigError), or rclpy.init or the node refusing the ROS
        # arguments (a bad --params-file)
        reason = configuration_error(err)
        if reason:
            print(f"{Path(sys.argv[0]).stem}: cannot start: {reason}", file=sys.stderr)
            code = EXIT_CONFIG_ERROR
        elif not _SIGNALS:
            raise
        else:  # the KeyboardInterrupt hit inside a pybind11 call (e.g. rclpy's take_message), which reports it as
            # "Unable to convert call argument": the same signal
            rclpy.try_shutdown()
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    exit_now(code)


_SIGNALS: list[int] = []  # the signal that stops this node process (at most one)


def _interrupt_once() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt once; later ones are ignored.

    Ctrl-C under ``ros2 launch`` or ``sigma-graph`` reaches a node twice (from the terminal and
    from the launcher); the second must not break into the clean-up. ``rclpy.init`` puts its own
    handler (shut the context down, wake the executor) in front of this one.
    """
    def handler(signum, _frame):
        if not _SIGNALS:
            _SIGNALS.append(signum)
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def exit_now(code: int) -> NoReturn:
    """Run the exit handlers (e.g. removing sigma-graph's parameter files; logging's flush is one), flush output, leave.

    Without the interpreter's teardown, which joins worker threads (a node still configuring: its model loading, minutes
    on a loaded machine) and takes seconds more. ``atexit._run_exitfuncs`` is what a normal exit runs first.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed pipe or file
            pass
    os._exit(code)
