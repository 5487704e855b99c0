# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""launch/sigma.launch.py and the sigma-graph command start the same graph from one description (sigma_ros.graph).

Node list, executables, parameter file, overrides and remaps.

The PyPI ROS 2 wheels have no ``launch``/``launch_ros``; there the launch file is exercised with
minimal stand-ins of the few launch classes it uses (the real packages are used when installed).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import types
from pathlib import Path

import pytest

from sigma_model.cli import parse_cli

from sigma_ros import graph
from sigma_ros.graph_main import node_cli_args, resolve, robot_fields

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / "launch" / "sigma.launch.py"
REAL_LAUNCH = importlib.util.find_spec("launch_ros") is not None and importlib.util.find_spec("launch") is not None


def _install_launch_stubs(monkeypatch):
    class Entity:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    class LaunchDescription:
        def __init__(self, entities=()):
            self.entities = list(entities)

    class DeclareLaunchArgument:
        def __init__(self, name, default_value=None, description=""):
            self.name, self.default_value, self.description = name, default_value, description

    class OpaqueFunction:
        def __init__(self, function):
            self.function = function

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context.launch_configurations[self.name]

    class ChangeState(Entity):
        pass

    def matches_action(action):
        return lambda candidate: candidate is action

    classes = {name: type(name, (Entity,), {}) for name in (
        "EmitEvent", "ExecuteProcess", "RegisterEventHandler", "OnProcessStart", "OnStateTransition", "LifecycleNode",
        "ExecutableInPackage")}
    modules = {
        "launch": {"LaunchDescription": LaunchDescription},
        "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument, "OpaqueFunction": OpaqueFunction,
                           **{k: classes[k] for k in ("EmitEvent", "ExecuteProcess", "RegisterEventHandler")}},
        "launch.event_handlers": {"OnProcessStart": classes["OnProcessStart"]},
        "launch.events": {"matches_action": matches_action},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"LifecycleNode": classes["LifecycleNode"]},
        "launch_ros.event_handlers": {"OnStateTransition": classes["OnStateTransition"]},
        "launch_ros.events": {},
        "launch_ros.events.lifecycle": {"ChangeState": ChangeState},
        "launch_ros.substitutions": {"ExecutableInPackage": classes["ExecutableInPackage"]},
    }
    for name, attrs in modules.items():
        mod = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(mod, key, value)
        monkeypatch.setitem(sys.modules, name, mod)


def _load_launch_module(monkeypatch):
    if not REAL_LAUNCH:
        _install_launch_stubs(monkeypatch)
    spec = importlib.util.spec_from_file_location("sigma_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Context:
    def __init__(self, values):
        self.launch_configurations = values


def _evaluate(monkeypatch, given: dict[str, str]):
    """Return (declared arguments, entities the launch file's OpaqueFunction returns)."""
    module = _load_launch_module(monkeypatch)
    ld = module.generate_launch_description()
    args = {e.name: e for e in ld.entities if type(e).__name__ == "DeclareLaunchArgument"}
    values = {name: (given[name] if name in given else a.default_value) for name, a in args.items()}
    opaque = [e for e in ld.entities if type(e).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    if not REAL_LAUNCH:
        return args, opaque[0].function(_Context(values))
    from launch import LaunchContext  # real launch: evaluate with a real LaunchContext

    context = LaunchContext()
    context.launch_configurations.update(values)
    return args, opaque[0].function(context)


def _graph_cli(argv: list[str]) -> graph.GraphConfig:
    """sigma-graph's configuration of ``argv``."""
    return parse_cli(graph.GraphConfig, argv, "sigma-graph")


def _nodes(entities) -> list[dict]:
    """Return the LifecycleNode actions' settings (stand-ins keep their kwargs; real ones are read back)."""
    nodes = [e for e in entities if type(e).__name__ == "LifecycleNode"]
    if not REAL_LAUNCH:
        return [n.kwargs for n in nodes]
    return [{"package": n.node_package, "executable": n.node_executable, "name": n.node_name.lstrip("/"),
             "parameters": n._Node__parameters, "remappings": n._Node__remappings,
             "respawn": n._ExecuteLocal__respawn, "respawn_delay": n._ExecuteLocal__respawn_delay}
            for n in nodes]


def test_launch_arguments_have_descriptions(monkeypatch):
    args, _ = _evaluate(monkeypatch, {})
    expected = ({"checkpoint", "config_file", "dry_run", "log_level", "respawn", "respawn_delay", "composition",
                 "robot", "port", "robot_id"}
                | {f"{k}_topic" for k in graph.EXTERNAL_TOPICS})
    assert expected <= set(args)
    for a in args.values():
        assert a.description and len(a.description) > 10, a.name


def test_launch_and_sigma_graph_start_the_same_graph(monkeypatch, tmp_path):
    config = str(ROOT / "config" / "sigma.yaml")
    given = {"checkpoint": str(tmp_path), "config_file": config, "dry_run": "true",
             "camera_topic": "/front/image_raw", "motor_commands_topic": "/arm_controller/joint_trajectory"}
    _, entities = _evaluate(monkeypatch, given)
    nodes = _nodes(entities)
    assert [n["name"] for n in nodes] == [s.name for s in graph.NODES]
    assert [n["executable"] for n in nodes] == [s.executable for s in graph.NODES]
    assert all(n["package"] == "sigma_ros" for n in nodes)

    cli = _graph_cli([f"--config_file={config}", f"--checkpoint={tmp_path}", "--dry_run=true",
                      "--camera_topic=/front/image_raw", "--motor_commands_topic=/arm_controller/joint_trajectory"])
    params_file, remaps, specs = resolve(cli)
    assert [s.name for s in specs] == [n["name"] for n in nodes]
    for spec, node in zip(specs, nodes):
        assert node["parameters"][0] == params_file == config
        overrides = node["parameters"][1]
        assert overrides["checkpoint"] == str(tmp_path)
        assert overrides.get("dry_run") == (True if spec.name == "controller_node" else None)
        assert sorted(node["remappings"]) == sorted(remaps) == sorted(
            [("camera/image_raw", "/front/image_raw"), ("sigma/motor_commands", "/arm_controller/joint_trajectory")])
        # sigma-graph passes the same file, the same overrides (as a node-keyed params file) and remaps
        args = node_cli_args(spec, params_file, remaps, str(tmp_path), True)
        assert args[:3] == ["--ros-args", "--params-file", config]
        text = Path(args[4]).read_text()
        assert f'"/{spec.name}"' in text and str(tmp_path) in text
        assert ("dry_run" in text) == (spec.name == "controller_node")


def test_robot_argument_adds_the_robot_node_like_sigma_graph(monkeypatch):
    config = str(ROOT / "config" / "sigma.yaml")
    nodes = _nodes(_evaluate(monkeypatch, {"config_file": config})[1])
    assert "robot_node" not in [n["name"] for n in nodes]  # no robot by default
    nodes = _nodes(
        _evaluate(monkeypatch, {"config_file": config, "robot": "so101_follower", "port": "/dev/ttyACM0"})[1]
    )
    assert [n["name"] for n in nodes] == [s.name for s in graph.NODES] + ["robot_node"]
    robot = nodes[-1]
    assert robot["executable"] == "sigma-robot"
    assert robot["parameters"] == [config, {"robot.type": "so101_follower", "robot.port": "/dev/ttyACM0"}]

    cli = _graph_cli([f"--config_file={config}", "--robot=so101_follower", "--port=/dev/ttyACM0"])
    params_file, remaps, specs = resolve(cli)
    assert [s.name for s in specs] == [n["name"] for n in nodes]
    args = node_cli_args(specs[-1], params_file, remaps, "", None, robot=robot_fields(cli))
    assert args[:3] == ["--ros-args", "--params-file", config]
    assert json.loads(Path(args[4]).read_text()) == {
        "/robot_node": {"ros__parameters": {"robot.type": "so101_follower", "robot.port": "/dev/ttyACM0"}}}
    assert [s.name for s in resolve(_graph_cli([f"--config_file={config}"]))[2]] == \
        [s.name for s in graph.NODES]


def test_launch_respawns_crashed_nodes_like_sigma_graph(monkeypatch):
    nodes = _nodes(_evaluate(monkeypatch, {})[1])
    assert len(nodes) == 4
    assert all(n["respawn"] is True and n["respawn_delay"] == graph.RESPAWN_DELAY_S for n in nodes)
    assert _graph_cli([]).respawn_delay == graph.RESPAWN_DELAY_S and _graph_cli([]).respawn is True
    nodes = _nodes(_evaluate(monkeypatch, {"respawn": "false", "respawn_delay": "2.5"})[1])
    assert all(n["respawn"] is False and n["respawn_delay"] == 2.5 for n in nodes)
    with pytest.raises(ValueError, match="respawn_delay"):
        _evaluate(monkeypatch, {"respawn_delay": "-1"})


@pytest.mark.skipif(REAL_LAUNCH, reason="reads the stand-ins' recorded arguments")
def test_launch_brings_every_node_up_through_lifecycle_events(monkeypatch):
    """Per LifecycleNode.

    Configure when its process starts (OnProcessStart fires again after a respawn), activate on configuring -> inactive
    only (a node deactivated by hand stays so).
    """
    from lifecycle_msgs.msg import Transition

    entities = _evaluate(monkeypatch, {})[1]
    nodes = [e for e in entities if type(e).__name__ == "LifecycleNode"]
    handlers = [e.args[0] for e in entities if type(e).__name__ == "RegisterEventHandler"]
    assert len(nodes) == 4 and len(handlers) == 8
    assert all(n.kwargs["namespace"] == "" for n in nodes)
    for node in nodes:
        on_start = [h for h in handlers
                    if type(h).__name__ == "OnProcessStart" and h.kwargs["target_action"] is node]
        on_inactive = [h for h in handlers if type(h).__name__ == "OnStateTransition"
                       and h.kwargs["target_lifecycle_node"] is node]
        assert len(on_start) == len(on_inactive) == 1
        states = (on_inactive[0].kwargs["start_state"], on_inactive[0].kwargs["goal_state"])
        assert states == ("configuring", "inactive")
        for handler, key, transition in ((on_start[0], "on_start", Transition.TRANSITION_CONFIGURE),
                                         (on_inactive[0], "entities", Transition.TRANSITION_ACTIVATE)):
            [emit] = handler.kwargs[key]
            event = emit.kwargs["event"]
            assert event.kwargs["transition_id"] == transition
            matcher = event.kwargs["lifecycle_node_matcher"]
            assert matcher(node) and not any(matcher(other) for other in nodes if other is not node)
        # the handlers are registered before the node starts, so its ProcessStarted is not missed
        mine = [entities.index(e) for e in entities
                if type(e).__name__ == "RegisterEventHandler" and e.args[0] in on_start + on_inactive]
        assert entities.index(node) > max(mine)
    entities = _evaluate(monkeypatch, {"robot": "so101_follower"})[1]  # the robot node activates itself
    assert [type(e).__name__ for e in entities].count("LifecycleNode") == 5
    assert [type(e).__name__ for e in entities].count("RegisterEventHandler") == 8


@pytest.mark.skipif(REAL_LAUNCH, reason="reads the stand-ins' recorded arguments")
def test_launch_composition_single_process_runs_the_composed_sigma_graph(monkeypatch, tmp_path):
    config = str(ROOT / "config" / "sigma.yaml")
    given = {"composition": "single_process", "checkpoint": str(tmp_path), "config_file": config, "dry_run": "true",
             "camera_topic": "/front/image_raw", "log_level": "warn", "respawn_delay": "3.0"}
    [process] = _evaluate(monkeypatch, given)[1]
    assert type(process).__name__ == "ExecuteProcess"
    cmd = process.kwargs["cmd"]
    assert cmd[0].args == ("sigma-graph", "sigma_ros")  # ExecutableInPackage
    assert process.kwargs["respawn"] is True and process.kwargs["respawn_delay"] == 3.0
    cli = _graph_cli(cmd[1:])
    assert cli.composition == "single_process" and cli.log_level == "warn"
    assert robot_fields(cli) == {"type": "", "port": "", "id": ""}
    [robot] = _evaluate(monkeypatch, dict(given, robot="sigma_so101_sim", robot_id="arm1"))[1]
    assert robot_fields(_graph_cli(robot.kwargs["cmd"][1:])) == \
        {"type": "sigma_so101_sim", "port": "", "id": "arm1"}
    # the same graph as composition:=processes and as sigma-graph with the same values
    params_file, remaps, specs = resolve(cli)
    nodes = _nodes(_evaluate(monkeypatch, dict(given, composition="processes"))[1])
    assert [s.name for s in specs] == [n["name"] for n in nodes]
    assert all(params_file == n["parameters"][0] and sorted(remaps) == sorted(n["remappings"]) for n in nodes)
    assert cli.checkpoint == str(tmp_path) and cli.dry_run is True
    with pytest.raises(ValueError, match="composition"):
        _evaluate(monkeypatch, {"composition": "containers"})


def test_console_scripts_match_graph():
    text = (ROOT / "setup.py").read_text()
    for spec in graph.graph_nodes(robot="so101_follower"):
        assert re.search(rf'"{re.escape(spec.executable)}\s*=\s*{re.escape(spec.module)}:main"', text), spec.executable
    assert "sigma-graph = sigma_ros.graph_main:main" in text
    assert "sigma-instruct = sigma_ros.instruct:main" in text


def test_config_file_sections_match_node_parameters():
    yaml = pytest.importorskip("yaml")
    from sigma_ros.node_base import COMMON_PARAMS

    data = yaml.safe_load((ROOT / "config" / "sigma.yaml").read_text())
    common = data["/**"]["ros__parameters"]
    assert set(common) == {p.name for p in COMMON_PARAMS}
    for spec in graph.graph_nodes(robot="so101_follower"):
        declared = {p.name: p for p in spec.load_class().PARAMS}
        section = _flatten(data[spec.name]["ros__parameters"])
        assert set(section) == set(declared), spec.name
        for name, value in section.items():  # typed parameters: the file's types match the declarations
            default = declared[name].default
            assert type(value) is type(default) or (isinstance(default, list) and isinstance(value, list)), name


def _flatten(section: dict, prefix: str = "") -> dict:
    """Return a parameter file's nested mapping -> dotted parameter names (``robot: {type: x}`` -> ``robot.type``)."""
    out = {}
    for key, value in section.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
