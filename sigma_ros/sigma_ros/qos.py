"""Every QoS profile of the Sigma graph, in one place.

* SENSOR: camera, depth, audio, joint states. Best effort, keep last, volatile (the usual
  ``qos_profile_sensor_data``): a slow model drops old frames instead of queueing them. A best
  effort subscription also matches reliable publishers (a sim or a driver using defaults).
* INSTRUCTION: ``/instruction`` is reliable and volatile with a small queue, so a plain
  ``ros2 topic pub /instruction std_msgs/msg/String "data: 'pick the cube'"`` (reliable, either
  durability) reaches it, and no instruction is silently dropped.
* PIPELINE: internal Sigma topics (tokens, telepathy factors, high-level rep, plans). Reliable,
  keep last 2: only the newest steps matter (a slow stage skips old ones), but a step must not be
  lost in transit between stages that pair their inputs by header stamp.
* LATCHED: semantic memory. Reliable + transient local, depth 1: a (re)started language node
  receives the last published memory on subscription and can restore it.
* COMMAND: motor commands to ros2_control or a robot bridge. Reliable, keep last 10 (the
  controllers' default subscription is reliable, so a best-effort publisher would not match it): a
  receiver that falls behind for a moment gets every command in order, each within the per-tick
  step limit of the one before, instead of jumping to the newest.
* COMMAND_CHECK: COMMAND with keep last 200, for receivers that check every command (the sim
  node, the test harness's probe): their executor may lag behind by more than 10 commands on a
  loaded machine, and a command lost from the queue would show as a step over the limit.
* STATUS: reliable, keep last 10.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

SENSOR = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)

INSTRUCTION = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

PIPELINE = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=2,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

COMMAND = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

COMMAND_CHECK = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=200,
    reliability=COMMAND.reliability,
    durability=COMMAND.durability,
)

STATUS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

PROFILES = {
    "sensor": SENSOR,
    "instruction": INSTRUCTION,
    "pipeline": PIPELINE,
    "latched": LATCHED,
    "command": COMMAND,
    "status": STATUS,
}
