# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The Sigma node graph, described once.

``launch/sigma.launch.py`` (for ``ros2 launch`` on a ROS 2 install) and the ``sigma-graph``
command (for the PyPI wheels, which have no ``launch``/``ros2``) both read this module: the node
list (with the optional robot node), each node's executable and class, the remappable topics and
the parameter file come from here and nowhere else. Importing it needs no ROS.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "sigma_ros"


@dataclass(frozen=True)
class TopicSpec:
    """A topic the graph reads or writes with its default (relative) name and a description.

    Every node names the topic by ``name``; a launch argument / ``sigma-graph --remap=[...]`` maps it
    to the robot's real topic.
    """

    key: str
    name: str
    msg_type: str
    description: str


@dataclass(frozen=True)
class NodeSpec:
    name: str  # node name (also the key of its section in config/sigma.yaml)
    executable: str  # console_scripts entry point (ros2 launch uses it)
    module: str  # python module holding the Node subclass
    cls: str  # Node subclass name
    description: str
    topics: tuple[str, ...] = field(default_factory=tuple)  # TopicSpec keys it uses

    def load_class(self):
        return getattr(importlib.import_module(self.module), self.cls)

    def main_entry(self) -> str:
        return f"{self.executable} = {self.module}:main"


# External topics (remappable to the robot's) and the internal Sigma topics.
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("camera", "camera/image_raw", "sensor_msgs/msg/Image", "RGB camera (rgb8, bgr8 or mono8)"),
    TopicSpec(
        "depth",
        "camera/depth/image_raw",
        "sensor_msgs/msg/Image",
        "Optional depth image (32FC1 metres or 16UC1 millimetres)",
    ),
    TopicSpec("audio", "audio", "sigma_ros_msgs/msg/AudioChunk", "Microphone audio chunks"),
    TopicSpec("joint_states", "joint_states", "sensor_msgs/msg/JointState", "Measured joint positions (radians)"),
    TopicSpec(
        "instruction", "instruction", "std_msgs/msg/String", "Text instruction (a new text resets the semantic memory)"
    ),
    TopicSpec(
        "reset",
        "sigma/reset",
        "std_msgs/msg/Empty",
        "Start a new episode: every node forgets its recurrent state (memory, tau, plans; the arm holds)",
    ),
    TopicSpec(
        "motor_commands",
        "sigma/motor_commands",
        "trajectory_msgs/msg/JointTrajectory | std_msgs/msg/Float64MultiArray",
        "Motor commands for ros2_control (type set by controller_node.output_type)",
    ),
    TopicSpec(
        "vision_tokens",
        "sigma/vision_tokens",
        "sigma_ros_msgs/msg/VisionTokens",
        "Vision + state tokens (perception -> language)",
    ),
    TopicSpec(
        "state_tokens", "sigma/state_tokens", "sigma_ros_msgs/msg/StateTokens", "State tokens (perception -> action)"
    ),
    TopicSpec(
        "telepathy_factors",
        "sigma/telepathy_factors",
        "sigma_ros_msgs/msg/TelepathyFactors",
        "Telepathy factors tau (language -> action, perception)",
    ),
    TopicSpec(
        "semantic_memory", "sigma/semantic_memory", "sigma_ros_msgs/msg/SemanticMemory", "Semantic memory m_t (latched)"
    ),
    TopicSpec(
        "semantic_memory_kept",
        "sigma/semantic_memory_kept",
        "sigma_ros_msgs/msg/SemanticMemory",
        "Last semantic memory re-latched by the action node, so a crashed language node restores it",
    ),
    TopicSpec(
        "high_level_rep",
        "sigma/high_level_rep",
        "sigma_ros_msgs/msg/HighLevelRep",
        "High-level representation (language -> action)",
    ),
    TopicSpec(
        "action_plan", "sigma/action_plan", "sigma_ros_msgs/msg/ActionPlan", "Action plan (action -> controller)"
    ),
    TopicSpec(
        "plan_request",
        "sigma/plan_request",
        "std_msgs/msg/Header",
        "sync_plans: the next plan must come from a camera frame stamped at or after this (controller -> perception)",
    ),
    TopicSpec(
        "status", "sigma/status", "sigma_ros_msgs/msg/Status", "Per-node status: latency, rates, dropped inputs, mode"
    ),
    TopicSpec(
        "diagnostics",
        "/diagnostics",
        "diagnostic_msgs/msg/DiagnosticArray",
        "Per-node diagnostic status (level, message, key/values) for rqt_robot_monitor, diagnostic_aggregator",
    ),
)
TOPIC_BY_KEY = {t.key: t for t in TOPICS}
# Topics a user normally remaps to a robot (launch arguments / sigma-graph options).
EXTERNAL_TOPICS = ("camera", "depth", "audio", "joint_states", "instruction", "motor_commands")

NODES: tuple[NodeSpec, ...] = (
    NodeSpec("perception_node", "sigma-perception", "sigma_ros.perception_node", "PerceptionNode",
             "Cognitive vision workspace: camera/depth/audio/joint states + tau -> vision and state tokens",
             ("camera", "depth", "audio", "joint_states", "telepathy_factors", "vision_tokens", "state_tokens", "reset",
              "plan_request", "status", "diagnostics")),
    NodeSpec("language_node", "sigma-language", "sigma_ros.language_node", "LanguageNode",
             "Language intent workspace: instruction + tokens -> telepathy factors, semantic memory, high-level rep",
             ("instruction", "vision_tokens", "telepathy_factors", "semantic_memory", "semantic_memory_kept",
              "high_level_rep", "reset", "status", "diagnostics")),
    NodeSpec("action_node", "sigma-action", "sigma_ros.action_node", "ActionNode",
             "Action trajectory workspace + adapter: high-level rep, tau, state tokens -> action plan",
             ("high_level_rep", "telepathy_factors", "state_tokens", "semantic_memory", "semantic_memory_kept",
              "action_plan", "reset", "status", "diagnostics")),
    NodeSpec("controller_node", "sigma-controller", "sigma_ros.controller_node", "ControllerNode",
             "Action fusion + low-level controller at a fixed rate, with the safety filter -> motor commands",
             ("action_plan", "joint_states", "motor_commands", "reset", "plan_request", "status", "diagnostics")),
)
NODE_BY_NAME = {n.name: n for n in NODES}
#: The robot side, added to the graph by ``robot:=<type>`` (launch) / ``--robot=<type>`` (sigma-graph).
ROBOT_NODE = NodeSpec("robot_node", "sigma-robot", "sigma_ros.robot_node", "RobotNode",
                      "A LeRobot robot (so101_follower, a lerobot_robot_* plugin): joint states and camera images "
                      "out, motor commands in, with units conversion and the safety filter",
                      ("camera", "joint_states", "motor_commands", "status"))


#: The robot node's config fields set by launch arguments / sigma-graph options: {field: argument}.
ROBOT_LAUNCH_ARGUMENTS = {"type": "robot", "port": "port", "id": "robot_id"}


def graph_nodes(robot: str = "") -> tuple[NodeSpec, ...]:
    """Return the nodes to start: the four Sigma nodes, plus the robot node when a robot type is given."""
    return NODES + (ROBOT_NODE,) if robot else NODES


def package_dir() -> Path:
    """Return the sigma_ros package folder of a source tree (it holds launch/ and config/)."""
    return Path(__file__).resolve().parent.parent


def default_config_file() -> Path:
    """config/sigma.yaml: the source tree's copy, else the installed share/sigma_ros copy."""
    env = os.environ.get("SIGMA_CONFIG")
    if env:
        return Path(env)
    local = package_dir() / "config" / "sigma.yaml"
    if local.is_file():
        return local
    try:  # installed with colcon / pip data_files
        from ament_index_python.packages import get_package_share_directory

        shared = Path(get_package_share_directory(PACKAGE)) / "config" / "sigma.yaml"
        if shared.is_file():
            return shared
    except Exception:  # noqa: BLE001 - ament index missing or package not registered
        pass
    import sys

    prefix = Path(sys.prefix) / "share" / PACKAGE / "config" / "sigma.yaml"
    return prefix if prefix.is_file() else local


def remap_rules(remaps: dict[str, str]) -> list[tuple[str, str]]:
    """{topic key or default name: new name} -> [(default name, new name)] (empty values skipped)."""
    rules = []
    for key, target in remaps.items():
        if not target:
            continue
        spec = TOPIC_BY_KEY.get(key)
        source = spec.name if spec else key
        if target != source:
            rules.append((source, target))
    return rules


_params_dir: tuple[int, str] | None = None  # (owner pid, path) of private_params_dir()
_params_lock = threading.Lock()


def private_params_dir() -> Path:
    """Return this process's own directory for parameter files.

    Made on first use by ``mkdtemp`` (mode 0700, a fresh random name: nothing planted in the shared temp folder can be
    in it) and removed when the process exits, after every node it started (and restarted) has read its files.
    """
    global _params_dir
    with _params_lock:
        if _params_dir is None or _params_dir[0] != os.getpid():  # a forked child gets its own
            _params_dir = (os.getpid(), tempfile.mkdtemp(prefix="sigma_ros_params_"))
            atexit.register(_remove_params_dir, *_params_dir)
        return Path(_params_dir[1])


def _remove_params_dir(owner: int, path: str) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def overrides_file(overrides: dict[str, object], node_name: str | None = None) -> str:
    """Write parameter overrides to a new YAML parameter file and return its path.

    Like launch_ros does for ``parameters=[file, {...}]``, the overrides travel as a second
    ``--params-file`` keyed by the fully qualified node name (``/<node>``), which takes precedence
    over the config file's ``/**`` and ``<node>`` sections. Every call writes a new file (mode
    0600) in :func:`private_params_dir`; no file is ever reused or read back.
    """
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()}
    key = f"/{node_name.lstrip('/')}" if node_name else "/**"
    text = json.dumps({key: {"ros__parameters": values}}, sort_keys=True, indent=1) + "\n"  # JSON is YAML
    fd, path = tempfile.mkstemp(prefix="overrides_", suffix=".yaml", dir=private_params_dir())
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def ros_arguments(params_file: str | os.PathLike | None, remaps: list[tuple[str, str]] = (),
                  overrides: dict[str, object] | None = None, log_level: str | None = None,
                  node_name: str | None = None) -> list[str]:
    """Return the ``--ros-args`` a launched node gets: the same parameter file, remaps and overrides."""
    args = ["--ros-args"]
    if params_file:
        args += ["--params-file", str(params_file)]
    if overrides:
        args += ["--params-file", overrides_file(overrides, node_name)]
    for source, target in remaps:
        args += ["-r", f"{source}:={target}"]
    if log_level:
        args += ["--log-level", log_level]
    return args


def node_overrides(spec: NodeSpec, checkpoint: str | None = None, dry_run: bool | None = None,
                   robot: dict[str, str] | None = None) -> dict[str, object]:
    """Parameter values given on the command line / as launch arguments.

    On top of the file (``robot``. The robot node's ``{field: value}``, e.g. ``{"type": "so101_follower", "port":
    ...}``; empty values keep the file's).
    """
    if spec.name == ROBOT_NODE.name:
        return {f"robot.{k}": v for k, v in (robot or {}).items() if v}
    values: dict[str, object] = {}
    if checkpoint:
        values["checkpoint"] = str(checkpoint)
    if dry_run is not None and spec.name == "controller_node":
        values["dry_run"] = bool(dry_run)
    return values


# A crashed node is restarted after this many seconds (sigma-graph and launch respawn_delay).
RESPAWN_DELAY_S = 1.0
# Exit code of a node that cannot start as configured (missing or corrupt checkpoint): not restarted.
EXIT_CONFIG_ERROR = 2


def respawn_settings(respawn: str, delay: str) -> tuple[bool, float]:
    """Launch arguments ``respawn`` ('' = true) and ``respawn_delay`` (seconds, >= 0)."""
    seconds = float(delay) if str(delay).strip() else RESPAWN_DELAY_S
    if not seconds >= 0:
        raise ValueError(f"respawn_delay must be >= 0 seconds, got {delay!r}")
    return parse_bool(respawn) is not False, seconds


COMPOSITIONS = ("processes", "single_process")


def composition(text: str) -> str:
    """Launch argument ``composition``: one of COMPOSITIONS ('' = processes)."""
    value = str(text).strip() or COMPOSITIONS[0]
    if value not in COMPOSITIONS:
        raise ValueError(f"composition must be one of {COMPOSITIONS}, got {text!r}")
    return value


def single_process_arguments(params_file: str, checkpoint: str, dry_run: bool | None, topics: dict[str, str],
                             log_level: str = "", robot: dict[str, str] | None = None) -> list[str]:
    """Return the ``sigma-graph --composition=single_process`` arguments of the launch file's values.

    topics: {key: name}; robot: the robot node's {field: value}, as :data:`ROBOT_LAUNCH_ARGUMENTS` names them.
    The flags are GraphConfig's fields, which have the launch arguments' names.
    """
    args = ["--composition=single_process", f"--config_file={params_file}"]
    args += [f"--{ROBOT_LAUNCH_ARGUMENTS[key]}={value}" for key, value in (robot or {}).items() if value]
    if checkpoint:
        args.append(f"--checkpoint={checkpoint}")
    if dry_run is not None:
        args.append(f"--dry_run={str(bool(dry_run)).lower()}")
    args += [f"--{key}_topic={name}" for key, name in sorted(topics.items())
             if name and name != TOPIC_BY_KEY[key].name]
    if log_level:
        args.append(f"--log_level={log_level}")
    return args


# A node may take this long to become active (configure loads the checkpoint or builds the random weights once).
STARTUP_TIMEOUT_S = 120.0


#: ``<key>_topic`` fields for the EXTERNAL_TOPICS: a new name for the topic (empty: the graph's name).
_Topics = dataclasses.make_dataclass("_Topics", [
    (f"{key}_topic", str, field(default="", metadata={"custom_args": {
        "help": f"{TOPIC_BY_KEY[key].description}: a new name for {TOPIC_BY_KEY[key].name}"}}))
    for key in EXTERNAL_TOPICS])


@dataclass
class GraphConfig(_Topics):
    """sigma-graph's command line: the launch file's arguments by the same names, and the ``<key>_topic`` ones."""

    config_file: str = ""  # ROS 2 parameter file (default: config/sigma.yaml, see default_config_file)
    checkpoint: str = ""  # Sigma checkpoint directory (overrides the file's checkpoint)
    dry_run: bool | None = None  # true: the controller computes but does not publish commands (default: the file's)
    remap: list[str] = field(default_factory=list)  # extra remap rules FROM:=TO for every node, e.g. [a:=b,c:=d]
    # also start sigma-robot (node robot_node) on this LeRobot robot type (so101_follower, sigma_so101_sim, ...)
    robot: str = ""
    port: str = ""  # the robot's serial port, e.g. /dev/ttyACM0 (default: the config file's)
    robot_id: str = ""  # the robot's id, naming its LeRobot calibration file (default: the config file's)
    nodes: list[str] | None = None  # a subset of the nodes, e.g. [action_node,controller_node] (default: all)
    # processes: one process per node, like ros2 launch; single_process: the nodes composed in this process
    composition: str = COMPOSITIONS[0]
    startup_timeout: float = STARTUP_TIMEOUT_S  # seconds a node may take to become active
    respawn: bool = True  # restart a node process that exits or crashes (false: the graph stops)
    # seconds before the restart; a node that cannot start as configured (exit code 2) stops the graph
    respawn_delay: float = RESPAWN_DELAY_S
    log_level: str = ""  # ROS log level (debug, info, warn, error)
    list_params: bool = False  # print every node parameter with its description and exit

    def __post_init__(self) -> None:
        composition(self.composition)
        if not self.startup_timeout > 0:
            raise ValueError("--startup_timeout must be > 0")
        if not self.respawn_delay >= 0:
            raise ValueError("--respawn_delay must be >= 0")
        if self.nodes == []:
            raise ValueError("--nodes=[] starts nothing (leave it out for all nodes)")
        bad = [rule for rule in self.remap if ":=" not in rule]
        if bad:
            raise ValueError(f"bad --remap rules {bad} (expected FROM:=TO)")


def parse_bool(text: str | bool | None) -> bool | None:
    """Launch-style booleans ('true'/'false'/'1'/'0'); '' or None -> None (use the file's value)."""
    if text is None or isinstance(text, bool):
        return text
    t = str(text).strip().lower()
    if t == "":
        return None
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")
