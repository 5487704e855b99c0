"""launch/sigma.launch.py and the sigma-graph command start the same graph from one description
(sigma_ros.graph): node list, executables, parameter file, overrides and remaps.

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

from sigma_ros import graph
from sigma_ros.graph_main import build_parser, node_cli_args, resolve, robot_fields

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / "launch" / "sigma.launch.py"
REAL_LAUNCH = importlib.util.find_spec("launch_ros") is not None and importlib.util.find_spec("launch") is not None


def _install_launch_stubs(monkeypatch):
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

    class Node:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    launch = types.ModuleType("launch")
    launch.LaunchDescription = LaunchDescription
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument, actions.OpaqueFunction = DeclareLaunchArgument, OpaqueFunction
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = LaunchConfiguration
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = Node
    for name, mod in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
                      "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
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
    module = _load_launch_module(monkeypatch)
    ld = module.generate_launch_description()
    args = {e.name: e for e in ld.entities if type(e).__name__ == "DeclareLaunchArgument"}
    values = {name: (given[name] if name in given else a.default_value) for name, a in args.items()}
    opaque = [e for e in ld.entities if type(e).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    if not REAL_LAUNCH:
        nodes = opaque[0].function(_Context(values))
        return args, [n.kwargs for n in nodes]
    # real launch: evaluate with a real LaunchContext
    from launch import LaunchContext

    context = LaunchContext()
    context.launch_configurations.update(values)
    nodes = opaque[0].function(context)
    return args, [{"package": n.node_package, "executable": n.node_executable, "name": n.node_name,
                   "parameters": n._Node__parameters, "remappings": n._Node__remappings,
                   "respawn": n._ExecuteLocal__respawn, "respawn_delay": n._ExecuteLocal__respawn_delay}
                  for n in nodes]


def test_launch_arguments_have_descriptions(monkeypatch):
    args, _ = _evaluate(monkeypatch, {})
    expected = ({"checkpoint", "config_file", "dry_run", "log_level", "respawn", "respawn_delay", "robot", "port",
                 "robot_id"}
                | {f"{k}_topic" for k in graph.EXTERNAL_TOPICS})
    assert expected <= set(args)
    for a in args.values():
        assert a.description and len(a.description) > 10, a.name


def test_launch_and_sigma_graph_start_the_same_graph(monkeypatch, tmp_path):
    config = str(ROOT / "config" / "sigma.yaml")
    given = {"checkpoint": str(tmp_path), "config_file": config, "dry_run": "true",
             "camera_topic": "/front/image_raw", "motor_commands_topic": "/arm_controller/joint_trajectory"}
    _, nodes = _evaluate(monkeypatch, given)
    assert [n["name"] for n in nodes] == [s.name for s in graph.NODES]
    assert [n["executable"] for n in nodes] == [s.executable for s in graph.NODES]
    assert all(n["package"] == "sigma_ros" for n in nodes)

    cli = build_parser().parse_args([
        "--config-file", config, "--checkpoint", str(tmp_path), "--dry-run", "true",
        "--camera-topic", "/front/image_raw", "--motor-commands-topic", "/arm_controller/joint_trajectory"])
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
    _, nodes = _evaluate(monkeypatch, {"config_file": config})
    assert "robot_node" not in [n["name"] for n in nodes]  # no robot by default
    _, nodes = _evaluate(monkeypatch, {"config_file": config, "robot": "so101_follower", "port": "/dev/ttyACM0"})
    assert [n["name"] for n in nodes] == [s.name for s in graph.NODES] + ["robot_node"]
    robot = nodes[-1]
    assert robot["executable"] == "sigma-robot"
    assert robot["parameters"] == [config, {"robot.type": "so101_follower", "robot.port": "/dev/ttyACM0"}]

    cli = build_parser().parse_args(["--config-file", config, "--robot", "so101_follower", "--port", "/dev/ttyACM0"])
    params_file, remaps, specs = resolve(cli)
    assert [s.name for s in specs] == [n["name"] for n in nodes]
    args = node_cli_args(specs[-1], params_file, remaps, "", None, robot=robot_fields(cli))
    assert args[:3] == ["--ros-args", "--params-file", config]
    assert json.loads(Path(args[4]).read_text()) == {
        "/robot_node": {"ros__parameters": {"robot.type": "so101_follower", "robot.port": "/dev/ttyACM0"}}}
    assert [s.name for s in resolve(build_parser().parse_args(["--config-file", config]))[2]] == \
        [s.name for s in graph.NODES]


def test_launch_respawns_crashed_nodes_like_sigma_graph(monkeypatch):
    _, nodes = _evaluate(monkeypatch, {})
    assert all(n["respawn"] is True and n["respawn_delay"] == graph.RESPAWN_DELAY_S for n in nodes)
    assert build_parser().parse_args([]).respawn_delay == graph.RESPAWN_DELAY_S
    _, nodes = _evaluate(monkeypatch, {"respawn": "false", "respawn_delay": "2.5"})
    assert all(n["respawn"] is False and n["respawn_delay"] == 2.5 for n in nodes)
    with pytest.raises(ValueError, match="respawn_delay"):
        _evaluate(monkeypatch, {"respawn_delay": "-1"})


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
    """A parameter file's nested mapping -> dotted parameter names (``robot: {type: x}`` -> ``robot.type``)."""
    out = {}
    for key, value in section.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
