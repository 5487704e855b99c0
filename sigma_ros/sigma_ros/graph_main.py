# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""``sigma-graph``: start the Sigma node graph without ``ros2 launch``.

The PyPI ROS 2 wheels have no ``launch``/``launch_ros``/``ros2`` CLI, so this command starts the
same graph as ``launch/sigma.launch.py``: the node list, parameter file, remappable topics and
per-node overrides come from :mod:`sigma_ros.graph`, and each node gets exactly the
``--ros-args`` a launched node would get.

The nodes are managed (lifecycle) nodes: sigma-graph brings each one to ``active`` through its
standard lifecycle services (configure, then activate), as ``ros2 launch`` does with launch_ros
lifecycle events, and again after every restart.

Every GraphConfig field (:mod:`sigma_ros.graph`: the launch file's arguments, by the same names) is
``--field=value`` (draccus, :mod:`sigma_model.cli`). Modes:
  --composition=processes (default): one child process per node, like ``ros2 launch`` (Ctrl-C stops
  them all); a node that exits or crashes is restarted after --respawn_delay seconds
  (--respawn=false: the graph stops);
  --composition=single_process: the four nodes composed in this process on one executor (each
  node's callbacks in its own mutually exclusive callback group), no serialisation between processes.

Examples::

    sigma-graph                                   # config/sigma.yaml, random seeded weights
    sigma-graph --checkpoint=runs/sigma/ckpt --camera_topic=/front/image_raw --dry_run=true
    sigma-graph --robot=so101_follower --port=/dev/ttyACM0 --robot_id=my_follower   # + sigma-robot
    sigma-graph --list_params=true                # every parameter with its description
"""

from __future__ import annotations

import difflib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

from sigma_model.cli import fail, parse_cli

from sigma_ros import graph
from sigma_ros.graph import STARTUP_TIMEOUT_S, GraphConfig

PROG = "sigma-graph"


def robot_fields(cfg: GraphConfig) -> dict[str, str]:
    """Return the robot node's config fields from ``--robot``, ``--port``, ``--robot_id`` (as launch arguments)."""
    return {field: getattr(cfg, arg) for field, arg in graph.ROBOT_LAUNCH_ARGUMENTS.items()}


def resolve(cfg: GraphConfig) -> tuple[str, list[tuple[str, str]], list[graph.NodeSpec]]:
    """(parameter file, remap rules, nodes to start) of ``cfg``; ValueError for a missing file or an unknown node."""
    params_file = cfg.config_file or str(graph.default_config_file())
    if not os.path.isfile(params_file):
        raise ValueError(f"parameter file not found: {params_file}")
    check_params_file(params_file, [s.name for s in graph.graph_nodes(robot="any")])
    remaps = graph.remap_rules({k: getattr(cfg, f"{k}_topic") for k in graph.EXTERNAL_TOPICS})
    remaps += [tuple(rule.split(":=", 1)) for rule in cfg.remap]
    specs = list(graph.graph_nodes(cfg.robot))
    if cfg.nodes is not None:
        by_name = {s.name: s for s in specs}
        unknown = [n for n in cfg.nodes if n not in by_name]
        if unknown:
            raise ValueError(f"unknown nodes {unknown} (known: {sorted(by_name)})")
        specs = [by_name[n] for n in cfg.nodes]
    return params_file, remaps, specs


def check_params_file(path: str, node_names) -> None:
    """ValueError (one line) unless ``path`` is a ROS 2 parameter file whose sections are graph nodes.

    A mapping of sections, each ``{ros__parameters: {...}}``, keyed by a node name, ``/**`` or ``*`` (``/``-prefixed or
    namespaced: ``/ns/<node>``, ``/**/<node>``) or a namespace holding such sections; every node would otherwise fail
    to parse the file, or silently ignore a misspelt section.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        raise ValueError(f"parameter file {path}: not valid YAML at line {mark.line + 1}, column {mark.column + 1}: "
                         f"{err.problem}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"parameter file {path}: {' '.join(str(err).split())}") from None

    def check(sections, prefix: str) -> None:
        if not isinstance(sections, dict) or not sections:
            where = f"section {prefix!r}" if prefix else "the file"
            raise ValueError(f"parameter file {path}: {where} is not a mapping of node sections "
                             "(<node name>: {ros__parameters: {<parameter>: <value>}})")
        for key, section in sections.items():
            name = f"{prefix}/{key}" if prefix else str(key)
            if isinstance(section, dict) and "ros__parameters" in section:
                if not isinstance(section["ros__parameters"], dict):
                    raise ValueError(f"parameter file {path}: {name}.ros__parameters must be a mapping of parameters")
                last = name.rsplit("/", 1)[-1]
                if last not in ("**", "*", *node_names):
                    close = difflib.get_close_matches(last, node_names, n=1)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    raise ValueError(f"parameter file {path}: unknown node section {key!r}{hint}; the nodes are "
                                     f"{', '.join(node_names)} and /** (all)")
            else:
                check(section, name)  # a namespace

    check(data, "")


def node_cli_args(spec: graph.NodeSpec, params_file: str, remaps, checkpoint: str, dry_run, log_level: str = "",
                  extra: dict | None = None, robot: dict[str, str] | None = None) -> list[str]:
    overrides = graph.node_overrides(spec, checkpoint, dry_run, robot)
    overrides.update(extra or {})
    return graph.ros_arguments(params_file, remaps, overrides, log_level or None, node_name=spec.name)


def node_command(spec: graph.NodeSpec, params_file: str, checkpoint: str, remaps=(), dry_run=None,
                 log_level: str = "", overrides: dict | None = None, robot: dict[str, str] | None = None) -> list[str]:
    """``python -m <node module>`` with sigma-graph's ROS arguments."""
    return [sys.executable, "-m", spec.module] + node_cli_args(spec, params_file, list(remaps), checkpoint, dry_run,
                                                                log_level, overrides, robot)


def spawn_node(cmd: list[str], **popen) -> subprocess.Popen:
    """``subprocess.Popen(cmd)`` for a node process: SIGINT ignored in it until ``run_node`` takes it over.

    Ctrl-C reaches every process of the terminal's group, and a node still importing torch (seconds) died of it with a
    KeyboardInterrupt traceback. An ignored signal stays ignored across exec (Python then installs no KeyboardInterrupt
    handler) until ``node_base.run_node`` installs its own; :func:`stop_processes` stops nodes with SIGTERM, which ends
    one still importing at once and quietly.
    """
    if threading.current_thread() is not threading.main_thread():  # signal.signal works in the main thread only
        return subprocess.Popen(cmd, **popen)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.Popen(cmd, **popen)
    finally:
        signal.signal(signal.SIGINT, previous)


def start_node_process(spec: graph.NodeSpec, params_file: str, checkpoint: str, remaps=(), dry_run=None,
                       log_level: str = "", overrides: dict | None = None, env: dict | None = None,
                       log=None, say=None, robot: dict[str, str] | None = None) -> subprocess.Popen:
    """Start :func:`node_command` (:func:`spawn_node`); output to ``log`` (a file) or inherited."""
    cmd = node_command(spec, params_file, checkpoint, remaps, dry_run, log_level, overrides, robot)
    if say is not None:
        say(f"starting {spec.name}: {' '.join(cmd)}")
    return spawn_node(cmd, env=env, stdout=log, stderr=None if log is None else subprocess.STDOUT)


def list_params() -> int:
    from sigma_ros.node_base import COMMON_PARAMS

    def show(p):
        extra = f" [{p.constraints}]" if p.constraints else ""
        if p.choices:
            extra += f" (one of {', '.join(p.choices)})"
        print(f"    {p.name} = {p.default!r}: {p.description}{extra}")

    print("all nodes (/**):")
    for p in COMMON_PARAMS:
        show(p)
    for spec in graph.graph_nodes(robot="any"):
        print(f"{spec.name} ({spec.executable}): {spec.description}")
        for p in spec.load_class().PARAMS:
            show(p)
    return 0


class LifecycleManager:
    """sigma-graph's own node (``sigma_graph``), spun in a background thread.

    Bringing node processes to ``active`` through their lifecycle services after every (re)start.
    """

    def __init__(self, say, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        from sigma_ros.executors import make_executor

        self.say, self.timeout_s = say, timeout_s
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("sigma_graph", context=self.context)
        self.executor = make_executor(self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self._clients: dict = {}

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down
            pass

    def bring_up_async(self, name: str, proc: subprocess.Popen) -> None:
        from sigma_ros.lifecycle import LifecycleClient

        client = self._clients.setdefault(name, LifecycleClient(self.node, name))

        def run() -> None:
            ok, what = client.bring_up(self.timeout_s, alive=lambda: proc.poll() is None)
            if ok:
                self.say(f"{name} active")
                return
            try:
                proc.wait(timeout=10.0)  # a node whose configure failed exits by itself (EXIT_CONFIG_ERROR)
            except subprocess.TimeoutExpired:
                self.say(f"{name}: {what}; stopping it")
                proc.terminate()

        threading.Thread(target=run, daemon=True).start()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=5.0)


class NodeProcess:
    """One node's child process under sigma-graph, restarted with the same command line when it exits.

    Brought to ``active`` by ``manager`` after every start.
    """

    def __init__(self, spec: graph.NodeSpec, cmd: list[str], say, manager: LifecycleManager | None = None) -> None:
        self.spec, self.cmd, self.say, self.manager = spec, cmd, say, manager
        self.restarts = 0
        self.restart_at: float | None = None
        say(f"starting {spec.name}: {' '.join(cmd)}")
        self.proc = self.start()

    def start(self) -> subprocess.Popen:
        proc = spawn_node(self.cmd)
        self.say(f"{self.spec.name} started (pid {proc.pid})")
        if self.manager is not None:
            self.manager.bring_up_async(self.spec.name, proc)
        return proc

    def check(self, now: float, respawn_delay: float | None) -> int | None:
        """Restart the node when it is due; return an exit code when the graph must stop."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restart_at = None
                self.restarts += 1
                self.say(f"restarting {self.spec.name} (restart {self.restarts})")
                self.proc = self.start()
            return None
        code = self.proc.poll()
        if code is None:
            return None
        if respawn_delay is None or code == graph.EXIT_CONFIG_ERROR:
            self.say(f"{self.spec.name} exited with {code}; stopping the graph")
            return code if code > 0 else 1
        self.say(f"{self.spec.name} exited with {code}; restarting it in {respawn_delay:g} s")
        self.restart_at = now + respawn_delay
        return None


def run_subprocesses(specs, params_file, remaps, checkpoint, dry_run, log_level,
                     respawn_delay: float | None = graph.RESPAWN_DELAY_S,
                     startup_timeout: float = STARTUP_TIMEOUT_S, robot: dict[str, str] | None = None) -> int:
    """One process per node until SIGINT/SIGTERM, each brought to ``active``.

    A node that exits is restarted (and brought up again) after ``respawn_delay`` seconds (None: the graph stops).
    """
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    say = lambda text: print(f"[sigma-graph] {text}", flush=True)  # noqa: E731
    children = []
    rc = 0
    manager = LifecycleManager(say, startup_timeout)
    try:
        for spec in specs:
            children.append(NodeProcess(spec, node_command(spec, params_file, checkpoint, remaps, dry_run, log_level,
                                                           robot=robot), say, manager))
        while not stopping:
            codes = [child.check(time.monotonic(), respawn_delay) for child in children]
            rc = next((code for code in codes if code), 0)
            if rc:
                break
            time.sleep(0.2)
    finally:
        stop_processes([(c.spec.name, c.proc) for c in children], say=say)
        manager.close()
        restarts = {c.spec.name: c.restarts for c in children if c.restarts}
        if restarts:
            say(f"restarts: {restarts}")
    return rc


def stop_processes(procs: list[tuple[str, subprocess.Popen]], timeout: float = 10.0, say=None) -> None:
    """SIGTERM every running (name, process), wait up to ``timeout`` in all, then terminate again, then kill.

    A node handles SIGTERM as SIGINT (``node_base.run_node``); one still importing, where SIGINT is ignored
    (:func:`spawn_node`), ends at once.
    """
    for _, p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout
    for name, p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            if say is not None:
                say(f"{name} did not stop on SIGTERM within {timeout:g} s; terminating again")
            p.terminate()
            try:
                p.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def create_nodes(specs, params_file, remaps, checkpoint="", dry_run=None, context=None, log_level="",
                 extra_overrides: dict[str, dict] | None = None, robot: dict[str, str] | None = None):
    """Instantiate the nodes in this process.

    Each with the --ros-args a launched node would get (extra_overrides. {node name: {parameter: value}} added as -p
    rules, for tests). A node's configuration error (its parameters, its ROS arguments) is a NodeConfigError
    ``<node>: cannot start: <reason>``.
    """
    from sigma_ros.node_base import NodeConfigError, configuration_error

    nodes = []
    for spec in specs:
        cls = spec.load_class()
        extra = (extra_overrides or {}).get(spec.name)
        try:
            nodes.append(cls(context=context,
                             cli_args=node_cli_args(spec, params_file, remaps, checkpoint, dry_run, log_level, extra,
                                                    robot)))
        except RuntimeError as err:
            reason = configuration_error(err)
            if not reason:
                raise
            raise NodeConfigError(f"{spec.name}: cannot start: {reason}") from None
    return nodes


def bring_up_nodes(nodes, manager_node, timeout_s: float = STARTUP_TIMEOUT_S) -> str:
    """Bring in-process nodes to ``active`` through their lifecycle services.

    Called from ``manager_node`` (spun by the same executor in another thread). '' or the first error.
    """
    from sigma_ros.lifecycle import bring_up_all

    results = bring_up_all(manager_node, [n.get_fully_qualified_name() for n in nodes], timeout_s)
    for node in nodes:
        ok, what = results[node.get_fully_qualified_name()]
        if not ok:
            return f"{node.get_name()}: cannot start: {getattr(node, 'config_error', '') or what}"
    return ""


def run_single_process(specs, params_file, remaps, checkpoint, dry_run, log_level,
                       startup_timeout: float = STARTUP_TIMEOUT_S, robot: dict[str, str] | None = None) -> NoReturn:
    """Run the nodes composed in this process on one executor until SIGINT/SIGTERM, then exit.

    sigma-graph's own node brings them up through their lifecycle services. Exit code EXIT_CONFIG_ERROR when one cannot
    start. Once the nodes are shut down and the context too the process leaves by ``node_base.exit_now``: a node
    still configuring in a worker thread (loading its model, minutes on a loaded machine) is not waited for.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from sigma_ros.executors import make_executor
    from sigma_ros.node_base import NodeConfigError, exit_now

    # SIGINT/SIGTERM: rclpy's handler (installed by init, in front of these) shuts the context down, which ends the
    # spin loop at a safe point; once spinning these handlers only note the signal (a KeyboardInterrupt raised at an
    # arbitrary bytecode could leave rclpy objects half built: a Task without `_exception`, whose __del__ then fails).
    # Until then the first signal raises KeyboardInterrupt: it cuts the imports and the nodes' construction short, and
    # one that comes before rclpy.init (whose handler is not there yet) is not lost.
    signals: list[int] = []
    starting = [True]

    def on_signal(signum, _frame) -> None:
        signals.append(signum)
        if starting[0]:
            starting[0] = False
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    nodes = []
    failure: list[str] = []

    def bring_up() -> None:
        error = bring_up_nodes(nodes, manager, startup_timeout)
        if error:
            failure.append(error)
            rclpy.try_shutdown()  # stops the executor
        else:
            print(f"[sigma-graph] {', '.join(n.get_name() for n in nodes)} active (one process)", flush=True)

    try:
        rclpy.init(args=[sys.argv[0]])
        nodes = create_nodes(specs, params_file, remaps, checkpoint, dry_run, log_level=log_level, robot=robot)
        manager = rclpy.create_node("sigma_graph")
        executor = make_executor()
        for n in (*nodes, manager):
            executor.add_node(n)
        threading.Thread(target=bring_up, daemon=True).start()
        starting[0] = False
        # not spin(): rclpy's signal thread wakes the executor and then shuts the context down, which wakes nothing;
        # a spin() that checked the context in between waited on (for good while a node configured and nothing else ran)
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # a signal (rclpy's own handler, once installed, shuts the context down); cleaned up below
    except NodeConfigError as err:  # from create_nodes: one line, EXIT_CONFIG_ERROR below
        failure.append(str(err))
    except Exception:
        if not signals:
            raise
        # a signal shut the context down under a call in progress (e.g. creating the nodes), or the
        # KeyboardInterrupt hit inside a pybind11 call, which reports it as a RuntimeError
    finally:
        starting[0] = False
        for n in nodes:
            n.shutdown()
            n.destroy_node()
        rclpy.try_shutdown()
    if failure:
        print(f"sigma-graph: {failure[0]}", file=sys.stderr, flush=True)
        exit_now(graph.EXIT_CONFIG_ERROR)
    exit_now(0)



def main(argv: list[str] | None = None) -> int:
    cfg = parse_cli(GraphConfig, argv, PROG, description=__doc__)
    if cfg.list_params:
        return list_params()
    try:
        params_file, remaps, specs = resolve(cfg)
    except ValueError as err:
        fail(PROG, err)
    robot = robot_fields(cfg)
    if cfg.composition == "single_process":
        run_single_process(specs, params_file, remaps, cfg.checkpoint, cfg.dry_run, cfg.log_level, cfg.startup_timeout,
                           robot)
    return run_subprocesses(specs, params_file, remaps, cfg.checkpoint, cfg.dry_run, cfg.log_level,
                            cfg.respawn_delay if cfg.respawn else None, cfg.startup_timeout, robot)


if __name__ == "__main__":
    raise SystemExit(main())
