"""``/diagnostics`` of the Sigma nodes, as ``diagnostic_updater`` publishes it.

Every node publishes one ``diagnostic_msgs/DiagnosticStatus`` per status period in a
``DiagnosticArray`` on ``/diagnostics``: name ``"<node>: sigma"``, ``hardware_id`` (the torch
device of its workspace), a level and a one-line message, and key/values (lifecycle state, mode,
rates, stage latencies, dropped inputs per kind, the node's metrics), so ``rqt_robot_monitor``,
``diagnostic_aggregator`` and ``ros2 topic echo /diagnostics`` show the graph's health.

The level is judged here without ROS (:func:`judge`):

* ERROR: the node could not be configured, or a fault since the last report (an implausible
  joint state, a failed control tick);
* WARN: not active (unconfigured, inactive), not running (holding, waiting for an input), or
  inputs dropped since the last report;
* OK: running (or in dry run) with nothing dropped since the last report.
"""

from __future__ import annotations

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}
RUNNING_MODES = ("running", "dry_run")
FAULT_DROPS = ("joint_state_faults", "control_errors")
TASK = "sigma"


def judge(lifecycle_state: str, mode: str, reason: str, new_drops: dict[str, int],
          config_error: str = "") -> tuple[int, str]:
    """(level, message) of one node from its state, mode and the inputs dropped since the last report."""
    if config_error:
        return ERROR, f"cannot configure: {config_error}"
    dropped = {k: v for k, v in sorted(new_drops.items()) if v > 0}
    faults = {k: v for k, v in dropped.items() if k in FAULT_DROPS}
    what = f"{mode}: {reason}" if reason else mode
    if faults:
        return ERROR, f"{what}; faults since last report: " + ", ".join(f"{k}={v}" for k, v in faults.items())
    if lifecycle_state != "active":
        return WARN, f"{lifecycle_state}" + (f" ({reason})" if reason else "")
    if mode not in RUNNING_MODES:
        return WARN, what
    if dropped:
        return WARN, f"{what}; dropped since last report: " + ", ".join(f"{k}={v}" for k, v in dropped.items())
    return OK, what


class DropWatch:
    """Dropped-input counts since the previous report (the counters themselves only grow)."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def new(self, drops: dict[str, int]) -> dict[str, int]:
        out = {k: v - self._last.get(k, 0) for k, v in drops.items()}
        self._last = dict(drops)
        return out


def key_values(lifecycle_state: str, mode: str, reason: str, snapshot: dict, rates: dict[str, float],
               metrics: dict[str, float]) -> list[tuple[str, str]]:
    """The status's key/values: state, mode, then rates, stage latencies, drops and metrics."""
    values = [("lifecycle state", lifecycle_state), ("mode", mode), ("reason", reason)]
    values += [(f"{name} rate (Hz)", f"{hz:.2f}") for name, hz in sorted(rates.items())]
    values += [(f"{stage} latency last/mean/max (ms)", f"{last:.2f} / {mean:.2f} / {peak:.2f}")
               for stage, (last, mean, peak) in sorted(snapshot["latency"].items())]
    values += [(f"dropped {name}", str(count)) for name, count in sorted(snapshot["drops"].items())]
    values += [(name, f"{value:.6g}") for name, value in sorted(metrics.items())]
    if snapshot.get("last_error"):
        values.append(("last error", snapshot["last_error"][:500]))
    return values


def diagnostic_array(stamp, node_name: str, hardware_id: str, level: int, message: str,
                     values: list[tuple[str, str]]):
    """A ``DiagnosticArray`` holding this node's one ``DiagnosticStatus``."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus(level=bytes([level]), name=f"{node_name}: {TASK}", message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in values])
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
