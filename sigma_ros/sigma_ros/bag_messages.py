"""Build and read the ROS messages of a robot recording (rosbags message types)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sigma_ros.bag_io import (
    ACTION_TYPES,
    FLOAT64_ARRAY_TYPE,
    IMAGE_TYPE,
    JOINT_STATE_TYPE,
    JOINT_TRAJECTORY_TYPE,
    STRING_TYPE,
    typestore,
)
from sigma_ros.conversions import (
    ConversionError,
    positions_by_name,
)


# ---------------------------------------------------------------------------- message builders
def _stamp(t_ns: int):
    store = typestore()
    Time = store.types["builtin_interfaces/msg/Time"]
    t_ns = int(t_ns)
    return Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)


def _header(t_ns: int, frame_id: str = ""):
    Header = typestore().types["std_msgs/msg/Header"]
    return Header(stamp=_stamp(t_ns), frame_id=frame_id)


def make_image(rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera", encoding: str = "rgb8"):
    """HWC uint8 RGB (or HW mono) -> sensor_msgs/msg/Image (rgb8, bgr8 or mono8)."""
    img = np.asarray(rgb)
    if img.dtype != np.uint8:
        raise ValueError(f"make_image expects uint8, got {img.dtype}")
    if encoding == "mono8":
        data = img if img.ndim == 2 else img.mean(axis=2).round().astype(np.uint8)
    elif encoding in ("rgb8", "bgr8"):
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{encoding} image must be HxWx3, got {img.shape}")
        data = img if encoding == "rgb8" else img[:, :, ::-1]
    else:
        raise ValueError(f"make_image: unsupported encoding {encoding!r}")
    data = np.ascontiguousarray(data)
    Image = typestore().types[IMAGE_TYPE]
    return Image(header=_header(stamp_ns, frame_id), height=int(data.shape[0]), width=int(data.shape[1]),
                 encoding=encoding, is_bigendian=0, step=int(data.strides[0]), data=data.reshape(-1))


def make_joint_state(positions: Sequence[float], names: Sequence[str], stamp_ns: int):
    JointState = typestore().types[JOINT_STATE_TYPE]
    pos = np.asarray(positions, dtype=np.float64).reshape(-1)
    return JointState(header=_header(stamp_ns), name=list(names), position=pos,
                      velocity=np.zeros(0, np.float64), effort=np.zeros(0, np.float64))


def make_string(text: str):
    return typestore().types[STRING_TYPE](data=str(text))


def make_action(positions: Sequence[float], names: Sequence[str], stamp_ns: int, action_type: str = "joint_trajectory",
                time_from_start_s: float = 0.0):
    """A command message: JointTrajectory with one point, or Float64MultiArray."""
    store = typestore()
    pos = np.asarray(positions, dtype=np.float64).reshape(-1)
    msgtype = ACTION_TYPES.get(action_type, action_type)
    if msgtype == JOINT_TRAJECTORY_TYPE:
        Point = store.types["trajectory_msgs/msg/JointTrajectoryPoint"]
        Duration = store.types["builtin_interfaces/msg/Duration"]
        secs = int(math.floor(time_from_start_s))
        empty = np.zeros(0, np.float64)
        point = Point(positions=pos, velocities=empty, accelerations=empty, effort=empty,
                      time_from_start=Duration(sec=secs, nanosec=int(round((time_from_start_s - secs) * 1e9))))
        return store.types[JOINT_TRAJECTORY_TYPE](header=_header(stamp_ns), joint_names=list(names), points=[point])
    if msgtype == FLOAT64_ARRAY_TYPE:
        Dim = store.types["std_msgs/msg/MultiArrayDimension"]
        Layout = store.types["std_msgs/msg/MultiArrayLayout"]
        layout = Layout(dim=[Dim(label="joints", size=int(pos.size), stride=int(pos.size))], data_offset=0)
        return store.types[FLOAT64_ARRAY_TYPE](layout=layout, data=pos)
    raise ValueError(f"action type must be one of {sorted(ACTION_TYPES)} (or their message types), got {action_type!r}")


# ---------------------------------------------------------------------------- message readers
def stamp_ns_of(msg) -> int:
    """header.stamp in ns (0 when the message has no header)."""
    header = getattr(msg, "header", None)
    if header is None:
        return 0
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def action_to_vector(msg, msgtype: str, joint_names: Sequence[str], name: str = "action") -> np.ndarray:
    """A command message -> float64 [len(joint_names)] in joint_names order.

    JointTrajectory: ``points[0].positions`` mapped by ``joint_names`` (extra joints ignored, a
    missing one is an error; without names the positions must be the joints in order).
    Float64MultiArray: ``data[data_offset : data_offset + len(joint_names)]`` (the joints in order).
    """
    n = len(joint_names)
    if msgtype == JOINT_TRAJECTORY_TYPE:
        if not len(msg.points):
            raise ConversionError(f"{name}: JointTrajectory without points")
        vec = positions_by_name(list(msg.points[0].positions), list(msg.joint_names), joint_names, name)
    elif msgtype == FLOAT64_ARRAY_TYPE:
        data = np.asarray(msg.data, dtype=np.float64).reshape(-1)
        offset = int(getattr(msg.layout, "data_offset", 0) or 0)
        if data.size - offset != n:
            raise ConversionError(f"{name}: Float64MultiArray has {data.size - offset} values, expected {n} joints")
        vec = data[offset:offset + n].copy()
    else:
        raise ConversionError(f"{name}: unsupported command type {msgtype}")
    if not np.isfinite(vec).all():
        raise ConversionError(f"{name}: non-finite command {vec.tolist()}")
    return vec
