"""Read and write rosbag2 recordings of a robot (sqlite3 and MCAP), without needing a ROS install.

A robot recording for Sigma holds four kinds of topics (any names; see :class:`RobotTopics`):

    camera         sensor_msgs/msg/Image                  (rgb8, bgr8, rgba8, bgra8, mono8)
    joint_states   sensor_msgs/msg/JointState             measured joint positions (rad)
    instruction    std_msgs/msg/String                    the text instruction (optional)
    action         trajectory_msgs/msg/JointTrajectory    the commanded joint targets
                   or std_msgs/msg/Float64MultiArray      (points[0].positions / data)

Container I/O goes through ``rosbag2_py`` (the ROS 2 bag library) when it is importable and works,
else through the pure-Python ``rosbags`` package (pinned in requirements-base.txt). Message
payloads are always CDR; they are decoded with the ``rosbags`` type store (ROS 2 Kilted
definitions), which is byte-compatible with rclpy's serialisation, so the same bytes can also be
deserialised by ``rclpy.serialization`` and published unchanged.

Every failure to open or read a recording (missing or malformed metadata.yaml, truncated or
corrupt .db3 / .mcap file, undecodable message) raises :class:`BagError`, a ``ValueError`` whose
message names the file and says what is wrong.

Pairing (:func:`iter_paired_frames`): each camera frame gets the newest valid joint state and
commanded action (``action_align="latest"``: the newest at or before the frame; ``"next"``: the
first at or after it) and the current instruction, following the Sigma nodes' rules (a frame whose
joint state is older than ``max_age_s`` has no state, an invalid joint state invalidates the last
one, instructions are normalised as the language node does). Frames are grouped into episodes that
end at an instruction change or a time gap between camera frames larger than ``gap_s``.

Importing this module needs no rclpy.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sigma_model.safety import SO101_LOWER_LIMITS, SO101_UPPER_LIMITS
from sigma_ros.conversions import (
    ConversionError, clean_instruction, image_to_array, joint_state_to_vector, positions_by_name,
)

log = logging.getLogger(__name__)

__all__ = [
    "ACTION_TYPES",
    "BACKENDS",
    "BagError",
    "BagReader",
    "BagWriter",
    "DEFAULT_JOINT_NAMES",
    "DEFAULT_TOPICS",
    "MSG_TYPES",
    "PairedFrame",
    "PairingStats",
    "RawMessage",
    "RobotBagWriter",
    "RobotTopics",
    "STORAGES",
    "action_to_vector",
    "decode_cdr",
    "estimate_period_s",
    "iter_paired_frames",
    "read_paired_frames",
    "write_synthetic_robot_bag",
]

STORAGES = ("sqlite3", "mcap")
BACKENDS = ("auto", "rosbags", "rosbag2_py")
IMAGE_TYPE = "sensor_msgs/msg/Image"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
STRING_TYPE = "std_msgs/msg/String"
JOINT_TRAJECTORY_TYPE = "trajectory_msgs/msg/JointTrajectory"
FLOAT64_ARRAY_TYPE = "std_msgs/msg/Float64MultiArray"
#: command message type by its short name (the controller node's ``output_type`` values)
ACTION_TYPES = {"joint_trajectory": JOINT_TRAJECTORY_TYPE, "float64_multi_array": FLOAT64_ARRAY_TYPE}
#: accepted message types per role
MSG_TYPES: dict[str, tuple[str, ...]] = {
    "camera": (IMAGE_TYPE,),
    "joint_states": (JOINT_STATE_TYPE,),
    "instruction": (STRING_TYPE,),
    "action": (JOINT_TRAJECTORY_TYPE, FLOAT64_ARRAY_TYPE),
}
ROLES = tuple(MSG_TYPES)
#: default topic names: the Sigma graph's input topics (sigma_ros.graph) and /action for commands
DEFAULT_TOPICS = {"camera": "/camera/image_raw", "joint_states": "/joint_states", "instruction": "/instruction",
                  "action": "/action"}
#: the joint order of config/sigma.yaml (SO-101)
DEFAULT_JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
# order of processing messages that share one timestamp: a frame sees the state/command/instruction
# stamped at the same instant (so a bag written from a LeRobot dataset pairs back exactly)
_ROLE_ORDER = {"instruction": 0, "joint_states": 1, "action": 2, "camera": 3}


class BagError(ValueError):
    """A rosbag2 recording cannot be opened, read, decoded or written; the message names the file."""


# ------------------------------------------------------------------------------------ helpers
def _typestore():
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, "ROS2_KILTED", None) or getattr(Stores, "LATEST")
    return get_typestore(store)


_TYPESTORE = None


def typestore():
    """The shared rosbags type store (ROS 2 Kilted message definitions)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = _typestore()
    return _TYPESTORE


def decode_cdr(data: bytes, msgtype: str):
    """CDR bytes -> rosbags message object. Trailing bytes after the message are tolerated
    (rclpy's ``serialize_message`` returns some, and Python bag writers store them)."""
    store = typestore()
    try:
        return store.deserialize_cdr(data, msgtype)
    except Exception as err:  # noqa: BLE001
        if "size mismatch" not in str(err):
            raise
    msgdef = store.get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if data[1] else msgdef.deserialize_cdr_be
    message, _ = func(memoryview(data)[4:], 0, msgdef.cls, store)
    return message


def _storage_of(path: Path) -> str | None:
    files = [path] if path.is_file() else list(path.iterdir()) if path.is_dir() else []
    names = [f.name for f in files]
    if any(".mcap" in n for n in names):
        return "mcap"
    if any(".db3" in n for n in names):
        return "sqlite3"
    return None


def _rosbag2_py():
    try:
        import rosbag2_py  # noqa: PLC0415

        return rosbag2_py
    except Exception:  # noqa: BLE001 - absent or broken (wrong LD_LIBRARY_PATH ...)
        return None


def _hint(reason: str) -> str:
    low = reason.lower()
    if any(k in low for k in ("malformed", "not a database", "magic", "truncat", "unexpected end", "short read")):
        return (" (the file is truncated or corrupt, e.g. the recording was interrupted; "
                "`ros2 bag reindex` or `mcap recover` may repair it)")
    if "metadata" in low and "does not exist" in low:
        return " (metadata.yaml is missing: an interrupted `ros2 bag record`? `ros2 bag reindex` rebuilds it)"
    return ""


# ------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class RawMessage:
    """One serialised message of a recording: CDR bytes and the bag's receive time (ns)."""

    topic: str
    msgtype: str
    t_ns: int
    data: bytes


class BagReader:
    """A rosbag2 recording opened for reading (a bag directory, or a single .db3 / .mcap file).

    ``topics`` maps topic name -> message type, ``counts`` topic -> message count (when the
    metadata has it); :meth:`messages` yields :class:`RawMessage` in time order; :meth:`decode`
    turns one into a message object (rosbags dataclass; numpy arrays for uint8[] / float[] fields).
    """

    def __init__(self, path: str | os.PathLike, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.exists():
            raise BagError(f"rosbag2 recording not found: {self.path}")
        self.storage = _storage_of(self.path)
        self.backend = ""
        self.topics: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self._reader = None
        self._msgdefs: dict[str, Any] = {}
        errors = []
        order = {"auto": ("rosbag2_py", "rosbags"), "rosbags": ("rosbags",), "rosbag2_py": ("rosbag2_py",)}[backend]
        for name in order:
            try:
                if name == "rosbag2_py":
                    if _rosbag2_py() is None:
                        if backend == "rosbag2_py":
                            raise BagError(f"{self.path}: backend 'rosbag2_py' requested but rosbag2_py is not importable")
                        continue
                    self._open_rosbag2_py()
                else:
                    self._open_rosbags()
                self.backend = name
                break
            except BagError as err:
                errors.append(err)
            except Exception as err:  # noqa: BLE001 - any library error is a BagError naming the file
                errors.append(BagError(f"cannot read rosbag2 recording {self.path}: {type(err).__name__}: {err}"
                                       f"{_hint(str(err))}"))
        if not self.backend:
            self.close()
            raise errors[-1] if errors else BagError(f"cannot read rosbag2 recording {self.path}")
        if len(errors) and self.backend == "rosbags":
            log.debug("rosbag2_py could not open %s (%s); read with rosbags", self.path, errors[0])

    # -- backends ------------------------------------------------------------------------------
    def _open_rosbags(self) -> None:
        from rosbags.rosbag2 import Reader

        path = self.path
        if path.is_dir() and not (path / "metadata.yaml").exists():
            files = sorted(f for f in path.iterdir() if f.suffix in (".db3", ".mcap"))
            if len(files) != 1:
                raise BagError(f"cannot read rosbag2 recording {path}: no metadata.yaml and "
                               f"{len(files)} storage files (.db3/.mcap) in it{_hint('metadata does not exist')}")
            log.warning("%s has no metadata.yaml (interrupted recording?): reading %s directly", path, files[0].name)
            path = files[0]
            self.name = str(path)
        try:
            reader = Reader(path)
            reader.open()
        except Exception as err:  # noqa: BLE001
            raise BagError(f"cannot read rosbag2 recording {path}: {err}{_hint(str(err))}") from err
        self._reader = reader
        for conn in reader.connections:
            self.topics[conn.topic] = conn.msgtype
            self.counts[conn.topic] = self.counts.get(conn.topic, 0) + int(conn.msgcount or 0)
            self._msgdefs[conn.msgtype] = conn.msgdef
        if reader.message_count:
            self.start_ns, self.end_ns = int(reader.start_time), int(reader.end_time)

    def _open_rosbag2_py(self) -> None:
        rb = _rosbag2_py()
        reader = rb.SequentialReader()
        storage_id = self.storage or ""
        reader.open(rb.StorageOptions(uri=str(self.path), storage_id=storage_id),
                    rb.ConverterOptions(input_serialization_format="cdr", output_serialization_format="cdr"))
        self._reader = reader
        for md in reader.get_all_topics_and_types():
            self.topics[md.name] = md.type
        try:
            meta = reader.get_metadata()
            for t in meta.topics_with_message_count:
                self.counts[t.topic_metadata.name] = int(t.message_count)
        except Exception:  # noqa: BLE001 - metadata API differs between distros; counts stay unknown
            pass

    # -- access --------------------------------------------------------------------------------
    @property
    def duration_s(self) -> float | None:
        if self.start_ns is None or self.end_ns is None:
            return None
        return (self.end_ns - self.start_ns) / 1e9

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[RawMessage]:
        """Messages of ``topics`` (all when None) in the recording's time order."""
        wanted = None if topics is None else {t for t in topics if t}
        if wanted is not None:
            unknown = sorted(wanted - set(self.topics))
            if unknown:
                raise BagError(f"{self.name}: no topic(s) {unknown} (it has {sorted(self.topics)})")
        try:
            if self.backend == "rosbags":
                conns = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
                for conn, t_ns, data in self._reader.messages(connections=conns):
                    yield RawMessage(conn.topic, conn.msgtype, int(t_ns), bytes(data))
            else:
                yield from self._messages_rosbag2_py(wanted)
        except BagError:
            raise
        except GeneratorExit:
            raise
        except Exception as err:  # noqa: BLE001
            raise BagError(f"cannot read rosbag2 recording {self.name}: {type(err).__name__}: {err}"
                           f"{_hint(str(err))}") from err

    def _messages_rosbag2_py(self, wanted) -> Iterator[RawMessage]:
        rb = _rosbag2_py()
        reader = rb.SequentialReader()  # a fresh reader per pass: seek support varies by distro
        reader.open(rb.StorageOptions(uri=str(self.path), storage_id=self.storage or ""),
                    rb.ConverterOptions(input_serialization_format="cdr", output_serialization_format="cdr"))
        if wanted is not None:
            reader.set_filter(rb.StorageFilter(topics=sorted(wanted)))
        while reader.has_next():
            topic, data, t_ns = reader.read_next()
            if wanted is None or topic in wanted:
                yield RawMessage(topic, self.topics.get(topic, ""), int(t_ns), bytes(data))

    def decode(self, msg: RawMessage):
        """Deserialise one message (BagError naming the file, topic and time when the CDR is bad)."""
        if msg.msgtype not in typestore().types:
            self._register(msg.msgtype)
        try:
            return decode_cdr(msg.data, msg.msgtype)
        except Exception as err:  # noqa: BLE001
            raise BagError(f"{self.name}: cannot decode a {msg.msgtype} message on {msg.topic} at "
                           f"t={msg.t_ns} ns ({type(err).__name__}: {err}): corrupt message data") from err

    def _register(self, msgtype: str) -> None:
        msgdef = self._msgdefs.get(msgtype)
        if msgdef is None or not getattr(msgdef, "data", ""):
            raise BagError(f"{self.name}: message type {msgtype} is unknown and the recording has no definition")
        from rosbags.typesys import get_types_from_idl, get_types_from_msg

        fmt = getattr(getattr(msgdef, "format", None), "name", "MSG")
        types = get_types_from_idl(msgdef.data) if fmt == "IDL" else get_types_from_msg(msgdef.data, msgtype)
        typestore().register(types)

    def first(self, topic: str):
        """The first decoded message of ``topic``, or None."""
        for m in self.messages([topic]):
            return self.decode(m)
        return None

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and hasattr(reader, "close"):
            try:
                reader.close()
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BagReader({self.name!r}, storage={self.storage}, backend={self.backend}, topics={len(self.topics)})"


# ------------------------------------------------------------------------------------ writing
class BagWriter:
    """A new rosbag2 recording (``storage`` 'sqlite3' or 'mcap'): ``add_topic`` then ``write``.

    ``write`` takes a rosbags message object (serialised with the type store) or CDR ``bytes``.
    """

    def __init__(self, path: str | os.PathLike, storage: str = "sqlite3", backend: str = "auto",
                 overwrite: bool = False) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.path = Path(path)
        self.storage = storage
        if self.path.exists():
            if not overwrite:
                raise BagError(f"{self.path} exists already (pass overwrite to replace it)")
            if self.path.is_dir() and any(self.path.iterdir()) and not (self.path / "metadata.yaml").exists() \
                    and _storage_of(self.path) is None:
                raise BagError(f"{self.path} exists and does not look like a rosbag2 recording: not overwriting it")
            shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._topics: dict[str, Any] = {}
        self._writer = None
        self.backend = ""
        self.count = 0
        rb = _rosbag2_py() if backend in ("auto", "rosbag2_py") else None
        if backend == "rosbag2_py" and rb is None:
            raise BagError(f"{self.path}: backend 'rosbag2_py' requested but rosbag2_py is not importable")
        if rb is not None:
            try:
                w = rb.SequentialWriter()
                w.open(rb.StorageOptions(uri=str(self.path), storage_id=storage),
                       rb.ConverterOptions(input_serialization_format="cdr", output_serialization_format="cdr"))
                self._writer, self.backend = w, "rosbag2_py"
            except Exception as err:  # noqa: BLE001
                if backend == "rosbag2_py":
                    raise BagError(f"cannot create rosbag2 recording {self.path} with rosbag2_py: {err}") from err
                log.debug("rosbag2_py cannot write %s (%s); using rosbags", self.path, err)
                if self.path.exists():
                    shutil.rmtree(self.path, ignore_errors=True)
        if self._writer is None:
            from rosbags.rosbag2 import StoragePlugin, Writer

            plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
            try:
                w = Writer(self.path, version=9, storage_plugin=plugin)
                w.open()
            except Exception as err:  # noqa: BLE001
                raise BagError(f"cannot create rosbag2 recording {self.path}: {err}") from err
            self._writer, self.backend = w, "rosbags"

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic in self._topics:
            return
        if self.backend == "rosbags":
            self._topics[topic] = self._writer.add_connection(topic, msgtype, typestore=typestore())
        else:
            rb = _rosbag2_py()
            try:
                md = rb.TopicMetadata(id=len(self._topics), name=topic, type=msgtype, serialization_format="cdr")
            except TypeError:  # distros before Jazzy have no id
                md = rb.TopicMetadata(name=topic, type=msgtype, serialization_format="cdr")
            self._writer.create_topic(md)
            self._topics[topic] = msgtype

    def write(self, topic: str, t_ns: int, msg, msgtype: str | None = None) -> None:
        if topic not in self._topics:
            if msgtype is None:
                msgtype = getattr(msg, "__msgtype__", None)
            if msgtype is None:
                raise ValueError(f"unknown topic {topic}: add_topic() first or pass msgtype")
            self.add_topic(topic, msgtype)
        if isinstance(msg, (bytes, bytearray, memoryview)):
            data = bytes(msg)
        else:
            data = bytes(typestore().serialize_cdr(msg, msg.__msgtype__))
        if self.backend == "rosbags":
            self._writer.write(self._topics[topic], int(t_ns), data)
        else:
            self._writer.write(topic, data, int(t_ns))
        self.count += 1

    def close(self) -> None:
        w, self._writer = self._writer, None
        if w is None:
            return
        if self.backend == "rosbags":
            w.close()
        elif hasattr(w, "close"):
            w.close()
        del w

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and self.backend == "rosbags" and self._writer is not None:
            try:
                self._writer.close()  # keep what was written readable
            except Exception:  # noqa: BLE001
                pass
            self._writer = None
            return
        self.close()


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


# --------------------------------------------------------------------------------- topic roles
@dataclass
class RobotTopics:
    """Topic names of a robot recording; None = find it (the default name, else the one topic of
    the role's message type)."""

    camera: str | None = None
    joint_states: str | None = None
    instruction: str | None = None
    action: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {r: getattr(self, r) for r in ROLES}

    def resolve(self, available: Mapping[str, str], source: str = "recording",
                required: Sequence[str] = ("camera", "joint_states")) -> "RobotTopics":
        """Concrete names for ``available`` (topic -> type); raises BagError naming ``source``."""
        out = {}
        for role in ROLES:
            given = getattr(self, role)
            types = MSG_TYPES[role]
            if given:
                name = given if given.startswith("/") else "/" + given
                if name not in available:
                    raise BagError(f"{source}: {role} topic {name} not found (topics: {_fmt_topics(available)})")
                if available[name] not in types:
                    raise BagError(f"{source}: {role} topic {name} has type {available[name]}, expected "
                                   f"{' or '.join(types)}")
                out[role] = name
                continue
            default = DEFAULT_TOPICS[role]
            if available.get(default) in types:
                out[role] = default
                continue
            candidates = sorted(t for t, ty in available.items() if ty in types)
            if role == "camera" and len(candidates) > 1:
                colour = [t for t in candidates if "depth" not in t.lower()]
                candidates = colour if colour else candidates
            if role == "action" and len(candidates) > 1:
                candidates = [t for t in candidates if t not in (out.get("joint_states"),)]
            if len(candidates) == 1:
                out[role] = candidates[0]
            elif len(candidates) > 1:
                raise BagError(f"{source}: several {role} topics {candidates}: choose one "
                               f"(--{role.replace('_', '-')}-topic)")
            else:
                out[role] = None
        missing = [r for r in required if out.get(r) is None]
        if missing:
            raise BagError(f"{source}: no {', '.join(missing)} topic ("
                           + "; ".join(f"{r}: {' or '.join(MSG_TYPES[r])}" for r in missing)
                           + f"); topics: {_fmt_topics(available)}")
        return RobotTopics(**out)


def _fmt_topics(available: Mapping[str, str]) -> str:
    return ", ".join(f"{t} ({ty})" for t, ty in sorted(available.items())) or "none"


# ---------------------------------------------------------------------------------- pairing
@dataclass
class PairedFrame:
    """One camera frame with what the robot knew and did at that time (see module docstring)."""

    index: int  # camera message ordinal in the recording (all camera messages count)
    t_ns: int  # bag receive time of the frame
    stamp_ns: int  # the image's header stamp
    image: np.ndarray | None  # HxWx3 uint8 RGB (None: undecodable frame, or decode_images=False)
    state: np.ndarray | None  # float64 [J] joint positions (None: no valid state within max_age_s)
    action: np.ndarray | None  # float64 [J] commanded targets (None: none yet / stale)
    instruction: str | None  # normalised instruction in force (None: none yet)
    episode: int = 0
    instruction_seq: int = 0  # instruction changes (to a different text) so far, as the language node counts them
    state_t_ns: int | None = None
    action_t_ns: int | None = None
    encoding: str = ""
    raw: RawMessage | None = None  # the camera message (keep_raw=True)

    @property
    def usable(self) -> bool:
        """Has image, state, action and instruction (a training / evaluation sample)."""
        return self.image is not None and self.state is not None and self.action is not None \
            and self.instruction is not None


@dataclass
class PairingStats:
    camera_frames: int = 0
    invalid_images: int = 0
    invalid_joint_states: int = 0
    invalid_actions: int = 0
    invalid_instructions: int = 0
    frames_without_state: int = 0
    frames_without_action: int = 0
    frames_without_instruction: int = 0
    episodes: int = 0
    joint_names: list[str] = field(default_factory=list)
    action_type: str = ""
    topics: dict[str, str | None] = field(default_factory=dict)
    camera_period_s: float | None = None
    gap_s: float | None = None
    errors: list[str] = field(default_factory=list)  # first few conversion errors

    def note(self, text: str) -> None:
        if len(self.errors) < 10:
            self.errors.append(text)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def estimate_period_s(times_ns: Sequence[int]) -> float | None:
    """Median positive interval between consecutive times (s), None with fewer than two."""
    dts = [(b - a) / 1e9 for a, b in zip(times_ns, times_ns[1:]) if b > a]
    return float(statistics.median(dts)) if dts else None


def default_gap_s(period_s: float | None) -> float:
    """Episode-splitting gap: 5 camera periods, at least 0.5 s."""
    return max(0.5, 5.0 * period_s) if period_s else 1.0


def resolve_joint_names(reader: BagReader, topics: RobotTopics, joint_names: Sequence[str] | None) -> list[str]:
    """Joint order: given, else DEFAULT_JOINT_NAMES when the joint states name them all, else the
    names of the first joint state (or joint_0..n-1 when it has none)."""
    if joint_names:
        return [str(j) for j in joint_names]
    msg = reader.first(topics.joint_states) if topics.joint_states else None
    names = list(getattr(msg, "name", []) or []) if msg is not None else []
    if names and all(j in names for j in DEFAULT_JOINT_NAMES):
        return list(DEFAULT_JOINT_NAMES)
    if names:
        return names
    n = len(getattr(msg, "position", [])) if msg is not None else 0
    if n == len(DEFAULT_JOINT_NAMES) or n == 0:
        return list(DEFAULT_JOINT_NAMES)
    return [f"joint_{i}" for i in range(n)]


def _time_groups(messages: Iterable[RawMessage]) -> Iterator[list[RawMessage]]:
    group: list[RawMessage] = []
    for m in messages:
        if group and m.t_ns != group[0].t_ns:
            yield group
            group = []
        group.append(m)
    if group:
        yield group


def iter_paired_frames(
    reader: BagReader,
    topics: RobotTopics | None = None,
    joint_names: Sequence[str] | None = None,
    *,
    action_align: str = "latest",
    max_age_s: float | None = 1.0,
    gap_s: float | None = None,
    decode_images: bool = True,
    keep_raw: bool = False,
    max_frames: int | None = None,
    stats: PairingStats | None = None,
    require_action: bool = True,
) -> Iterator[PairedFrame]:
    """Every camera frame of the recording, paired (see the module docstring), in time order.

    ``max_age_s`` (None/0: no limit) applies to the joint state and, with ``"latest"``, to the
    command; ``gap_s`` None: :func:`default_gap_s` of the camera period.
    """
    if action_align not in ("latest", "next"):
        raise ValueError(f"action_align must be 'latest' or 'next', got {action_align!r}")
    stats = stats if stats is not None else PairingStats()
    topics = (topics or RobotTopics()).resolve(
        reader.topics, reader.name, ("camera", "joint_states", "action") if require_action else ("camera", "joint_states"))
    joints = resolve_joint_names(reader, topics, joint_names)
    stats.joint_names = list(joints)
    stats.topics = topics.as_dict()
    stats.action_type = reader.topics.get(topics.action, "") if topics.action else ""
    if gap_s is None:
        period = estimate_period_s([m.t_ns for m in reader.messages([topics.camera])])
        stats.camera_period_s = period
        gap_s = default_gap_s(period)
    stats.gap_s = float(gap_s)
    max_age_ns = None if not max_age_s else int(max_age_s * 1e9)
    gap_ns = int(gap_s * 1e9) if gap_s and gap_s > 0 else None
    role_of = {getattr(topics, r): r for r in ROLES if getattr(topics, r)}

    state: tuple[int, np.ndarray] | None = None
    action: tuple[int, np.ndarray] | None = None
    instruction: str | None = None
    pending: list[PairedFrame] = []  # "next": frames waiting for their command
    prev_t: int | None = None
    prev_seq = -1
    instr_seq = 0
    episode = -1
    count = 0

    def fresh(item, t_ns):
        if item is None:
            return None
        if max_age_ns is not None and t_ns - item[0] > max_age_ns:
            return None
        return item

    # same-instant messages: instruction and state before the frame; the command before it for
    # "latest", after it for "next" (both inclusive)
    order = dict(_ROLE_ORDER, action=4) if action_align == "next" else _ROLE_ORDER
    for group in _time_groups(reader.messages(list(role_of))):
        group.sort(key=lambda m: order[role_of[m.topic]])
        for m in group:
            role = role_of[m.topic]
            if role == "joint_states":
                msg = reader.decode(m)
                try:
                    state = (m.t_ns, joint_state_to_vector(msg, joints))
                except ConversionError as err:
                    state = None  # as the perception node: a faulty reading invalidates the last state
                    stats.invalid_joint_states += 1
                    stats.note(f"t={m.t_ns}: {err}")
            elif role == "action":
                msg = reader.decode(m)
                try:
                    vec = action_to_vector(msg, m.msgtype, joints)
                except ConversionError as err:
                    stats.invalid_actions += 1
                    stats.note(f"t={m.t_ns}: {err}")
                    continue
                action = (m.t_ns, vec)
                if pending:
                    for f in pending:
                        f.action, f.action_t_ns = vec, m.t_ns
                    for f in pending:
                        yield f
                    pending.clear()
            elif role == "instruction":
                msg = reader.decode(m)
                try:
                    text = clean_instruction(msg.data, 2000)
                    if text != instruction:  # a repeated instruction keeps the language node's memory
                        instruction, instr_seq = text, instr_seq + 1
                except ConversionError as err:
                    stats.invalid_instructions += 1  # the language node rejects it and keeps the last one
                    stats.note(f"t={m.t_ns}: {err}")
            else:  # camera
                if max_frames is not None and count >= max_frames:
                    continue
                msg = reader.decode(m)
                image = None
                if decode_images:
                    try:
                        image = image_to_array(msg, "camera")
                        if not image.flags.writeable:  # a view of the message buffer
                            image = image.copy()
                    except ConversionError as err:
                        stats.invalid_images += 1
                        stats.note(f"t={m.t_ns}: {err}")
                if prev_t is None or instr_seq != prev_seq or (gap_ns is not None and m.t_ns - prev_t > gap_ns):
                    episode += 1
                prev_t, prev_seq = m.t_ns, instr_seq
                st = fresh(state, m.t_ns)
                frame = PairedFrame(
                    index=count, t_ns=m.t_ns, stamp_ns=stamp_ns_of(msg), image=image,
                    state=None if st is None else st[1], action=None, instruction=instruction, episode=episode,
                    instruction_seq=instr_seq,
                    state_t_ns=None if st is None else st[0], encoding=str(getattr(msg, "encoding", "")),
                    raw=m if keep_raw else None,
                )
                count += 1
                stats.camera_frames += 1
                if action_align == "latest":
                    ac = fresh(action, m.t_ns)
                    if ac is not None:
                        frame.action, frame.action_t_ns = ac[1], ac[0]
                    yield frame
                else:
                    pending.append(frame)
    for f in pending:  # "next": no command after these frames
        yield f
    stats.episodes = episode + 1


def read_paired_frames(path: str | os.PathLike, topics: RobotTopics | None = None,
                       joint_names: Sequence[str] | None = None, backend: str = "auto", **kwargs
                       ) -> tuple[list[PairedFrame], PairingStats, dict[str, Any]]:
    """All paired frames of a recording, their stats, and info about the recording."""
    stats = PairingStats()
    with BagReader(path, backend) as reader:
        frames = list(iter_paired_frames(reader, topics, joint_names, stats=stats, **kwargs))
        info = bag_info(reader)
    for f in frames:
        stats.frames_without_state += f.state is None
        stats.frames_without_action += f.action is None
        stats.frames_without_instruction += f.instruction is None
    return frames, stats, info


def bag_info(reader: BagReader) -> dict[str, Any]:
    return {"path": str(reader.path), "storage": reader.storage, "backend": reader.backend,
            "topics": dict(reader.topics), "message_counts": dict(reader.counts),
            "start_ns": reader.start_ns, "duration_s": reader.duration_s}


# ------------------------------------------------------------------------- robot bag writer
class RobotBagWriter:
    """Writes a robot recording (camera, joint states, instruction, commands) to a new bag.

    Topics are created on their first message, so a recording without instructions has no
    instruction topic.
    """

    def __init__(self, path: str | os.PathLike, storage: str = "sqlite3", topics: RobotTopics | None = None,
                 joint_names: Sequence[str] = DEFAULT_JOINT_NAMES, action_type: str = "joint_trajectory",
                 backend: str = "auto", overwrite: bool = False, frame_id: str = "camera") -> None:
        if action_type not in ACTION_TYPES and action_type not in ACTION_TYPES.values():
            raise ValueError(f"action_type must be one of {sorted(ACTION_TYPES)}, got {action_type!r}")
        self.action_msgtype = ACTION_TYPES.get(action_type, action_type)
        t = topics or RobotTopics()
        self.topics = RobotTopics(**{r: _abs(getattr(t, r) or DEFAULT_TOPICS[r]) for r in ROLES})
        self.joint_names = list(joint_names)
        self.frame_id = frame_id
        self.writer = BagWriter(path, storage, backend, overwrite)
        self.path = self.writer.path

    def image(self, t_ns: int, rgb: np.ndarray, stamp_ns: int | None = None, encoding: str = "rgb8") -> None:
        self.writer.write(self.topics.camera, t_ns, make_image(rgb, t_ns if stamp_ns is None else stamp_ns,
                                                                self.frame_id, encoding))

    def joint_state(self, t_ns: int, positions: Sequence[float], stamp_ns: int | None = None,
                    names: Sequence[str] | None = None) -> None:
        self.writer.write(self.topics.joint_states, t_ns,
                          make_joint_state(positions, self.joint_names if names is None else names,
                                           t_ns if stamp_ns is None else stamp_ns))

    def instruction(self, t_ns: int, text: str) -> None:
        self.writer.write(self.topics.instruction, t_ns, make_string(text))

    def action(self, t_ns: int, positions: Sequence[float], stamp_ns: int | None = None) -> None:
        self.writer.write(self.topics.action, t_ns,
                          make_action(positions, self.joint_names, t_ns if stamp_ns is None else stamp_ns,
                                      self.action_msgtype))

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "RobotBagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.writer.__exit__(*exc)


def _abs(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def write_synthetic_robot_bag(
    path: str | os.PathLike,
    storage: str = "sqlite3",
    *,
    n_frames: int = 20,
    camera_hz: float = 10.0,
    joint_hz: float = 50.0,
    image_size: int | tuple[int, int] = 32,
    instructions: Sequence[tuple[float, str]] = ((0.0, "pick up the red cube"),),
    gaps: Sequence[tuple[int, float]] = (),
    action_type: str = "joint_trajectory",
    joint_names: Sequence[str] = DEFAULT_JOINT_NAMES,
    start_ns: int = 1_700_000_000 * 1_000_000_000,
    camera_offset_s: float = 0.005,
    seed: int = 0,
    topics: RobotTopics | None = None,
    backend: str = "auto",
    overwrite: bool = False,
) -> dict[str, Any]:
    """A small synthetic robot recording (for tests, benchmarks, demos).

    Camera frames at ``camera_hz`` (random smooth RGB images), joint states and commands at
    ``joint_hz`` (sinusoids; the command leads the state by 0.1 s), instructions at the given times
    (s from the start). ``gaps``: (frame index, seconds) pauses inserted before those frames.
    Camera frames sit ``camera_offset_s`` after a joint sample, so "latest" pairing is unambiguous.
    Returns a description (times, counts).
    """
    rng = np.random.default_rng(seed)
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    n_j = len(joint_names)
    phase = rng.uniform(0, 2 * np.pi, n_j)
    lower, upper = np.resize(SO101_LOWER_LIMITS, n_j), np.resize(SO101_UPPER_LIMITS, n_j)
    centre, amp = (lower + upper) / 2, np.minimum(rng.uniform(0.1, 0.5, n_j), (upper - lower) / 2)

    def q(t: float) -> np.ndarray:  # within the SO-101 joint ranges
        return centre + amp * np.sin(2 * np.pi * 0.3 * t + phase)

    gap_before = dict(gaps)
    cam_times = []
    t = 0.1
    for k in range(n_frames):
        t += gap_before.get(k, 0.0)
        cam_times.append(t + camera_offset_s)
        t += 1.0 / camera_hz
    end = cam_times[-1] + 1.0 / camera_hz if cam_times else 0.0
    base = rng.integers(0, 256, (max(2, h // 4), max(2, w // 4), 3)).astype(np.float32)
    events: list[tuple[float, int, str, Any]] = []
    for k, tc in enumerate(cam_times):
        shift = np.roll(base, k, axis=1)
        img = np.kron(shift, np.ones((4, 4, 1)))[:h, :w]
        noise = rng.integers(0, 24, (h, w, 3))
        events.append((tc, 3, "camera", np.clip(img + noise, 0, 255).astype(np.uint8)))
    n_joint = int(end * joint_hz) + 1
    for i in range(n_joint):
        tj = i / joint_hz
        events.append((tj, 1, "joint", q(tj)))
        events.append((tj, 2, "action", q(tj + 0.1)))
    for ti, text in instructions:
        events.append((float(ti), 0, "instruction", text))
    events.sort(key=lambda e: (e[0], e[1]))
    counts = {"camera": 0, "joint": 0, "action": 0, "instruction": 0}
    with RobotBagWriter(path, storage, topics, joint_names, action_type, backend, overwrite) as w:
        for te, _, kind, value in events:
            t_ns = start_ns + int(round(te * 1e9))
            if kind == "camera":
                w.image(t_ns, value)
            elif kind == "joint":
                w.joint_state(t_ns, value)
            elif kind == "action":
                w.action(t_ns, value)
            else:
                w.instruction(t_ns, value)
            counts[kind] += 1
    return {"path": str(path), "storage": storage, "camera_times_s": cam_times, "counts": counts,
            "start_ns": start_ns, "joint_names": list(joint_names)}
