# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Read and write rosbag2 recordings (sqlite3 and MCAP) without needing a ROS install.

A robot recording for Sigma holds four kinds of topics (any names; see
``sigma_ros.bag_pairing.RobotTopics``):

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
message names the file and says what is wrong. Message builders and the robot bag writer are in
``sigma_ros.bag_messages``, pairing camera frames with states and commands in
``sigma_ros.bag_pairing``. Importing this module needs no rclpy.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
ROLE_ORDER = {"instruction": 0, "joint_states": 1, "action": 2, "camera": 3}


class BagError(ValueError):
    """A rosbag2 recording cannot be opened, read, decoded or written; the message names the file."""


# ------------------------------------------------------------------------------------ helpers
def _typestore():
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, "ROS2_KILTED", None) or getattr(Stores, "LATEST")
    return get_typestore(store)


_TYPESTORE = None


def typestore():
    """Return the shared rosbags type store (ROS 2 Kilted message definitions)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = _typestore()
    return _TYPESTORE


def decode_cdr(data: bytes, msgtype: str):
    """CDR bytes -> rosbags message object.

    Trailing bytes after the message are tolerated (rclpy's ``serialize_message`` returns some, and Python bag writers
    store them).
    """
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


def _reason(err: Exception) -> str:
    """Return a library error as one line: its type and message, and what may repair the file.

    Some read errors carry no message: a MemoryError from a corrupt length field, a struct.error from a cut record.
    """
    corrupt = isinstance(err, (MemoryError, EOFError, OverflowError, struct.error, UnicodeDecodeError))
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return text + _hint(text, corrupt)


def _hint(reason: str, corrupt: bool = False) -> str:
    low = reason.lower()
    if corrupt or any(k in low for k in ("malformed", "not a database", "magic", "truncat", "unexpected end",
                                         "short read")):
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
                            raise BagError(
                                f"{self.path}: backend 'rosbag2_py' requested but rosbag2_py is not importable"
                            )
                        continue
                    self._open_rosbag2_py()
                else:
                    self._open_rosbags()
                self.backend = name
                break
            except BagError as err:
                errors.append(err)
            except Exception as err:  # noqa: BLE001 - any library error is a BagError naming the file
                errors.append(BagError(f"cannot read rosbag2 recording {self.path}: {_reason(err)}"))
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
            raise BagError(f"cannot read rosbag2 recording {path}: {_reason(err)}") from err
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
            raise BagError(f"cannot read rosbag2 recording {self.name}: {_reason(err)}") from err

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
        """Return the first decoded message of ``topic``, or None."""
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


def bag_info(reader: BagReader) -> dict[str, Any]:
    return {"path": str(reader.path), "storage": reader.storage, "backend": reader.backend,
            "topics": dict(reader.topics), "message_counts": dict(reader.counts),
            "start_ns": reader.start_ns, "duration_s": reader.duration_s}
