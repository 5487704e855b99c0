# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Launch the Sigma node graph: ``ros2 launch sigma_ros sigma.launch.py [arg:=value ...]``.

The node list, parameter file and remappable topics come from ``sigma_ros.graph`` (the same
description ``sigma-graph`` uses where ``launch``/``ros2`` are not installed, e.g. with the PyPI
ROS 2 wheels). Arguments:

    checkpoint:=DIR               Sigma checkpoint (config.json + <workspace>.safetensors)
    config_file:=FILE             ROS 2 parameter file (default: share/sigma_ros/config/sigma.yaml)
    dry_run:=true|false           controller computes commands but does not publish them
    camera_topic:=/x ...          remap a topic (camera, depth, audio, joint_states, instruction,
                                  motor_commands)
    log_level:=info
    respawn:=true|false           restart a node that exits or crashes (default true)
    respawn_delay:=1.0            seconds before the restart
    robot:=so101_follower         also start sigma-robot on this LeRobot robot type (default: none;
                                  sigma_so101_sim: the simulated SO-101)
    port:=/dev/ttyACM0            the robot's serial port
    robot_id:=my_follower         the robot's id (names its LeRobot calibration file)
    composition:=processes        one process per node (default), or single_process: the four
                                  nodes (and the robot node) composed in one process on one
                                  executor (sigma-graph --composition=single_process)

The nodes are managed (lifecycle) nodes. With composition:=processes each is a launch_ros
LifecycleNode, configured (ChangeState configure) when its process starts, and after every
respawn, and activated when it reaches ``inactive`` from ``configuring``; a node deactivated by
hand (``ros2 lifecycle set /controller_node deactivate``) stays inactive. The robot node connects
and activates itself when it starts (no events). With composition:=single_process, sigma-graph
drives the transitions of its nodes itself through the same lifecycle services; launch respawns
the whole process.

Examples: ros2 launch sigma_ros sigma.launch.py camera_topic:=/front/image_raw \
              motor_commands_topic:=/arm_controller/joint_trajectory dry_run:=true
          ros2 launch sigma_ros sigma.launch.py robot:=so101_follower port:=/dev/ttyACM0 robot_id:=my_follower
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessStart
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import ExecutableInPackage
from lifecycle_msgs.msg import Transition

from sigma_ros import graph


def _bring_up(node) -> list:
    """Configure when the node's process starts (also after a respawn), activate once configured."""
    def change(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    return [
        RegisterEventHandler(OnProcessStart(target_action=node, on_start=[change(Transition.TRANSITION_CONFIGURE)])),
        RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, start_state="configuring",
                                               goal_state="inactive",
                                               entities=[change(Transition.TRANSITION_ACTIVATE)])),
    ]


def _launch_nodes(context, *args, **kwargs):
    params_file = LaunchConfiguration("config_file").perform(context)
    checkpoint = LaunchConfiguration("checkpoint").perform(context)
    dry_run = graph.parse_bool(LaunchConfiguration("dry_run").perform(context))
    log_level = LaunchConfiguration("log_level").perform(context)
    respawn, respawn_delay = graph.respawn_settings(LaunchConfiguration("respawn").perform(context),
                                                    LaunchConfiguration("respawn_delay").perform(context))
    topics = {key: LaunchConfiguration(f"{key}_topic").perform(context) for key in graph.EXTERNAL_TOPICS}
    robot = {field: LaunchConfiguration(arg).perform(context) for field, arg in graph.ROBOT_LAUNCH_ARGUMENTS.items()}
    composition = graph.composition(LaunchConfiguration("composition").perform(context))
    if composition == "single_process":
        return [ExecuteProcess(
            cmd=[ExecutableInPackage("sigma-graph", graph.PACKAGE)]
            + graph.single_process_arguments(params_file, checkpoint, dry_run, topics, log_level, robot),
            name="sigma_graph", output="screen", emulate_tty=True, respawn=respawn, respawn_delay=respawn_delay)]
    remaps = graph.remap_rules(topics)
    actions = []
    for spec in graph.graph_nodes(robot["type"]):
        parameters = [params_file]
        overrides = graph.node_overrides(spec, checkpoint, dry_run, robot)
        if overrides:
            parameters.append(overrides)
        node = LifecycleNode(
            package=graph.PACKAGE,
            executable=spec.executable,
            name=spec.name,
            namespace="",
            output="screen",
            emulate_tty=True,
            parameters=parameters,
            remappings=remaps,
            arguments=["--ros-args", "--log-level", log_level],
            respawn=respawn,
            respawn_delay=respawn_delay,
        )
        # the robot node connects and activates itself
        actions += ([] if spec.name == graph.ROBOT_NODE.name else _bring_up(node)) + [node]
    return actions


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="Sigma checkpoint directory; empty = the config file's value "
                                          "(seeded random weights by default)"),
        DeclareLaunchArgument("config_file", default_value=str(graph.default_config_file()),
                              description="ROS 2 parameter file of the four nodes"),
        DeclareLaunchArgument("dry_run", default_value="",
                              description="true: the controller computes but does not publish motor commands; "
                                          "empty = the config file's value"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level of the nodes"),
        DeclareLaunchArgument("respawn", default_value="true",
                              description="true: restart a node that exits or crashes, after respawn_delay; "
                                          "false: a node that exits stays down"),
        DeclareLaunchArgument("respawn_delay", default_value=str(graph.RESPAWN_DELAY_S),
                              description="Seconds before a node that exited is restarted"),
        DeclareLaunchArgument("robot", default_value="",
                              description="LeRobot robot type to start sigma-robot on (so101_follower, "
                                          "sigma_so101_sim, ...); empty = no robot node"),
        DeclareLaunchArgument("port", default_value="",
                              description="Serial port of the robot (e.g. /dev/ttyACM0); empty = the config file's"),
        DeclareLaunchArgument("robot_id", default_value="",
                              description="Robot id, naming its LeRobot calibration file; empty = the config file's"),
        DeclareLaunchArgument("composition", default_value="processes",
                              description="processes: one process per node; single_process: the nodes composed "
                                          "in one process on one executor (sigma-graph --composition=single_process)"),
    ]
    for key in graph.EXTERNAL_TOPICS:
        spec = graph.TOPIC_BY_KEY[key]
        arguments.append(DeclareLaunchArgument(
            f"{key}_topic", default_value=spec.name,
            description=f"{spec.description} ({spec.msg_type}); remaps '{spec.name}'"))
    return LaunchDescription(arguments + [OpaqueFunction(function=_launch_nodes)])
