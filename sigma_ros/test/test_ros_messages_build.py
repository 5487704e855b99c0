# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The install works.

Rclpy runs from the venv and the CMake-built sigma_ros_msgs round-trip over real DDS (publisher and subscription in one
process).

The message is filled from its own introspection, so the test keeps working when
message definitions change.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import uuid

import pytest

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy  # noqa: E402

from sigma_ros_msgs import msg as sigma_msgs  # noqa: E402
from sigma_ros_msgs.msg import TelepathyFactors  # noqa: E402

_INT_TYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "char", "byte", "octet"}
_FLOAT_TYPES = {"float", "double", "float32", "float64"}


def _scalar(kind: str, i: int):
    if kind in _INT_TYPES:
        return (i % 7) + 1 if kind not in ("byte", "octet") else bytes([(i % 7) + 1])
    if kind in _FLOAT_TYPES:
        return 0.25 * (i + 1)  # exactly representable in float32
    if kind == "boolean":
        return True
    if kind.startswith("string") or kind.startswith("wstring"):
        return f"s{i}"
    raise KeyError(kind)


def _message_class(type_name: str):
    pkg, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _fill(message, depth: int = 0):
    """Give every field of `message` a non-default value (recursively)."""
    for i, (field, kind) in enumerate(message.get_fields_and_field_types().items()):
        seq = kind.startswith("sequence<") or kind.endswith("]")
        base = kind[len("sequence<"):-1].split(",")[0] if kind.startswith("sequence<") else kind.split("[")[0]
        if "/" in base:
            cls = _message_class(base)
            if seq:
                item = _fill(cls(), depth + 1)
                setattr(message, field, [item, _fill(cls(), depth + 1)])
            else:
                _fill(getattr(message, field), depth + 1)
            continue
        if seq:
            if kind.endswith("]") and not kind.endswith("[]") and "<=" not in kind:
                n = int(kind.split("[")[1].rstrip("]"))  # fixed-size array
            else:
                n = 3
            setattr(message, field, [_scalar(base, i + j) for j in range(n)])
        else:
            setattr(message, field, _scalar(base, i))
    return message


@pytest.fixture
def ros_context():
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)


def test_generated_messages_import():
    names = [n for n in dir(sigma_msgs) if n[:1].isupper()]
    assert "TelepathyFactors" in names
    for name in names:
        cls = getattr(sigma_msgs, name)
        assert cls.__module__.startswith("sigma_ros_msgs.msg"), name
        _fill(cls())  # every message can be constructed and filled


def test_ament_index_finds_packages():
    from ament_index_python.packages import get_package_share_directory

    share = get_package_share_directory("sigma_ros_msgs")
    assert os.path.isfile(os.path.join(share, "msg", "TelepathyFactors.msg"))
    share = get_package_share_directory("sigma_ros")
    assert os.path.isfile(os.path.join(share, "package.xml"))


def test_telepathy_factors_round_trip_over_dds(ros_context):
    sent = _fill(TelepathyFactors())
    sent.header.frame_id = "sigma_test"
    sent.header.stamp.sec = 12
    sent.header.stamp.nanosec = 345

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    topic = f"/sigma_test/telepathy_{uuid.uuid4().hex[:12]}"
    node = rclpy.create_node(f"sigma_msg_test_{os.getpid()}", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    received = []
    try:
        node.create_subscription(TelepathyFactors, topic, received.append, qos)
        pub = node.create_publisher(TelepathyFactors, topic, qos)
        deadline = time.monotonic() + 10.0
        while not received and time.monotonic() < deadline:
            pub.publish(sent)
            executor.spin_once(timeout_sec=0.05)
        assert received, (
            f"no TelepathyFactors received on {topic} within 10 s (rmw={os.environ.get('RMW_IMPLEMENTATION')})"
        )
        got = received[0]
        assert got is not sent
        assert got == sent  # generated __eq__ compares every field (arrays included)
        assert got.header.frame_id == "sigma_test" and got.header.stamp.sec == 12
    finally:
        executor.shutdown()
        node.destroy_node()


def test_venv_needs_no_sourcing():
    """Inside the project venv the ROS environment is set up by the venv itself."""
    if not os.path.exists(os.path.join(sys.prefix, "lib", "sigma_ros")):
        pytest.skip("not running from the scripts/setup.sh venv (e.g. colcon/apt ROS 2)")
    assert sys.prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    assert os.path.join(sys.prefix, "lib") in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
