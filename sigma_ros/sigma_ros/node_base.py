"""Common base of the four Sigma nodes: parameters with descriptors, the model part, status,
bad-input handling and a clean ``main``."""

from __future__ import annotations

import functools
import logging
import os
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
from rclpy.node import Node

from sigma_model.freshness import StaleInput
from sigma_model.safety import SO101_LOWER_LIMITS, SO101_UPPER_LIMITS
from sigma_ros import qos
from sigma_ros.conversions import ConversionError
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
    """One node parameter: name, default (its type is the parameter's type), description."""

    name: str
    default: Any
    description: str
    constraints: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, description=self.description, read_only=True)
        v = self.default
        if isinstance(v, (list, tuple)):
            d.type = _ARRAY_TYPES[type(v[0])]
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
                d.floating_point_range = [FloatingPointRange(from_value=float(self.min), to_value=float(self.max), step=0.0)]
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
    Param("joint_names", ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"],
          "Joint names in the order of the model's state/action vectors"),
    Param("joint_lower_limits", list(SO101_LOWER_LIMITS), "Lower joint position limits (rad), in joint_names order"),
    Param("joint_upper_limits", list(SO101_UPPER_LIMITS), "Upper joint position limits (rad), in joint_names order"),
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
    values = {}
    for p in params:
        value = node.declare_parameter(p.name, p.default, p.descriptor()).value
        if isinstance(p.default, tuple):
            value = tuple(value)
        if p.choices and value not in p.choices:
            raise ValueError(f"parameter {p.name}={value!r} must be one of {p.choices}")
        if p.min is not None and not isinstance(p.default, (bool, list, tuple, str)) and not (p.min <= value <= p.max):
            raise ValueError(f"parameter {p.name}={value!r} must be in [{p.min}, {p.max}]")
        values[p.name] = list(value) if isinstance(value, (list, tuple)) else value
    return Params(values)


def topic(key: str) -> str:
    """Default (relative, remappable) name of a graph topic."""
    return TOPIC_BY_KEY[key].name


class SigmaNode(Node):
    """A Sigma node: declares COMMON_PARAMS + node params, loads its workspaces, publishes status.

    Subclasses set ``WORKSPACES`` and ``PARAMS`` and wrap every subscription callback with
    :meth:`guarded`, so a bad message is logged (throttled per input), counted as dropped and
    never propagates an exception into the executor.
    """

    WORKSPACES: tuple[str, ...] = ()
    PARAMS: tuple[Param, ...] = ()

    def __init__(self, node_name: str, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.p = declare_parameters(self, COMMON_PARAMS + tuple(self.PARAMS))
        self.stats = NodeStats(window_s=max(5.0, 2 * self.p.status_period_s))
        self.mode = "starting"
        self.reason = ""
        self._log_times: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._log_lock = threading.Lock()
        if self.p.torch_threads:
            import torch

            torch.set_num_threads(int(self.p.torch_threads))
        self.model = None
        self.config = None
        if self.WORKSPACES:
            self.model = self._load_model()
            self.config = self.model.config
        from std_msgs.msg import Empty
        from sigma_ros_msgs.msg import Status

        self._Status = Status
        self.status_pub = self.create_publisher(Status, topic("status"), qos.STATUS)
        self.create_subscription(Empty, topic("reset"), self.guarded("reset", self._on_reset), qos.INSTRUCTION)
        self._status_timer = self.create_timer(self.p.status_period_s, self.publish_status)

    # ------------------------------------------------------------------ model
    def _load_model(self):
        from sigma_ros.model_loader import load_sigma_model

        t0 = time.perf_counter()
        model = load_sigma_model(self.p.checkpoint or None, self.WORKSPACES, seed=self.p.model_seed,
                                 config_path=self.p.model_config or None, device=self.p.device)
        source = self.p.checkpoint or f"random weights (seed {self.p.model_seed})"
        self.get_logger().info(
            f"loaded workspaces {list(model.workspaces)} from {source} in {time.perf_counter() - t0:.2f}s")
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
        getattr(self.get_logger(), level)(text)

    def reject(self, input_name: str, reason: str) -> None:
        """Count a dropped input and log why (throttled per input)."""
        count = self.stats.drop(input_name, f"{input_name}: {reason}")
        self.log_throttled(input_name, f"dropped {input_name} message #{count}: {reason}")

    def guarded(self, input_name: str, fn: Callable) -> Callable:
        """Wrap a subscription callback: bad data -> reject(); never raise into the executor."""
        self.stats.declare_drop(input_name)

        @functools.wraps(fn)
        def wrapper(msg):
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
        self.reset_episode()
        self.stats.event("resets")
        self.get_logger().info("reset: new episode")

    def reset_episode(self) -> None:
        """Start a new episode (``sigma/reset``): forget the recurrent state. Nodes override this."""

    def shutdown(self) -> None:
        """Called once before the node is destroyed (Ctrl-C / shutdown)."""

    def set_mode(self, mode: str, reason: str = "") -> None:
        self.mode, self.reason = mode, reason

    # ---------------------------------------------------------------- status
    def extra_rates(self) -> dict[str, float]:
        """Extra rates (name -> Hz) a subclass reports."""
        return {}

    def extra_metrics(self) -> dict[str, float]:
        """Other metrics (name -> value) a subclass reports."""
        return {}

    def publish_status(self) -> None:
        snap = self.stats.snapshot()
        msg = self._Status()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.node = self.get_name()
        msg.mode = self.mode
        msg.reason = self.reason
        stages = sorted(snap["latency"])
        msg.stage_names = stages
        msg.stage_latency_ms = [float(snap["latency"][s][0]) for s in stages]
        msg.stage_latency_mean_ms = [float(snap["latency"][s][1]) for s in stages]
        msg.stage_latency_max_ms = [float(snap["latency"][s][2]) for s in stages]
        rates = dict(snap["rates"])
        rates.update(self.extra_rates())
        names = sorted(rates)
        msg.rate_names = names
        msg.rates_hz = [float(rates[n]) for n in names]
        metrics = self.extra_metrics()
        msg.metric_names = sorted(metrics)
        msg.metric_values = [float(metrics[n]) for n in msg.metric_names]
        drops = snap["drops"]
        msg.drop_names = sorted(drops)
        msg.drop_counts = [int(drops[n]) for n in msg.drop_names]
        msg.dropped_inputs = int(sum(drops.values()))
        msg.last_error = snap["last_error"][:500]
        self.status_pub.publish(msg)


def stamp_key(header) -> int:
    """Header stamp as integer nanoseconds (the pairing key between stages)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def run_node(node_cls, args: list[str] | None = None) -> NoReturn:
    """Entry point body of one node process: spin until SIGINT/SIGTERM or shutdown, clean up, exit.

    Exits 0 after a signal, and EXIT_CONFIG_ERROR with one line on stderr when the checkpoint is
    missing or corrupt or the node raises :class:`NodeConfigError`. Once the node is destroyed and the context shut down (which flushes the
    ROS logs) the process leaves by ``os._exit``: the interpreter's own teardown (a full garbage
    collection and the release of thousands of torch/transformers module objects) took seconds
    on a loaded machine and does nothing a node needs.
    """
    from rclpy.executors import ExternalShutdownException

    from sigma_model.checkpoint import CheckpointError

    _interrupt_once()
    node = None
    code = 0
    try:
        rclpy.init(args=args if args is not None else sys.argv)
        node = node_cls()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (CheckpointError, NodeConfigError) as err:
        print(f"{Path(sys.argv[0]).stem}: cannot start: {err}", file=sys.stderr)
        code = EXIT_CONFIG_ERROR
    finally:
        if node is not None:
            try:
                node.shutdown()
            except Exception:  # noqa: BLE001
                pass
            node.destroy_node()
        rclpy.try_shutdown()
    _exit_now(code)


def _interrupt_once() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt once; later ones are ignored.

    Ctrl-C under ``ros2 launch`` or ``sigma-graph`` reaches a node twice (from the terminal and
    from the launcher); the second must not break into the clean-up. ``rclpy.init`` puts its own
    handler (shut the context down, wake the executor) in front of this one.
    """
    received = []

    def handler(signum, _frame):
        if not received:
            received.append(signum)
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def _exit_now(code: int) -> NoReturn:
    """Flush Python's output and logging, then leave without the interpreter's teardown."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed pipe or file
            pass
    os._exit(code)
