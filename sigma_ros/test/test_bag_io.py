# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""rosbag2 reading/writing (sqlite3 and MCAP) with sigma_ros.bag_io.

Frame pairing, topic roles, CDR compatibility with rclpy, and clear errors for corrupt or truncated recordings.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sigma_ros.conversions import clean_instruction
from sigma_ros.bag_io import DEFAULT_JOINT_NAMES, BagError, BagReader, BagWriter, decode_cdr, typestore
from sigma_ros.bag_messages import make_action, make_image, make_joint_state
from sigma_ros.bag_pairing import RobotTopics, read_paired_frames
from sigma_ros.bag_robot_writer import RobotBagWriter, write_synthetic_robot_bag

S = 1_000_000_000  # ns
T0 = 1_700_000_000 * S
J = list(DEFAULT_JOINT_NAMES)


def _img(k: int, h: int = 8, w: int = 10) -> np.ndarray:
    return ((np.arange(h * w * 3).reshape(h, w, 3) * (k + 1)) % 251).astype(np.uint8)


def _q(k: float) -> np.ndarray:
    return np.linspace(-0.5, 0.5, len(J)) + 0.01 * k


def _write_scripted(path, storage, action_type="joint_trajectory"):
    """Hand-made recording exercising every pairing rule (times in units of 0.1 s)."""
    with RobotBagWriter(path, storage, joint_names=J, action_type=action_type) as w:
        w.joint_state(T0, _q(0))
        w.action(T0, _q(100))
        w.image(T0 + 1 * S // 10, _img(0))                       # frame 0: no instruction yet
        w.instruction(T0 + 15 * S // 100, "  pick\tthe  cube ")  # normalised like the language node
        w.joint_state(T0 + 2 * S // 10, _q(2))
        w.action(T0 + 2 * S // 10, _q(102))
        w.image(T0 + 2 * S // 10, _img(1))                       # frame 1: same stamp as state + command
        w.action(T0 + 25 * S // 100, _q(103))                    # "next" command of frame 1
        w.instruction(T0 + 26 * S // 100, "pick the cube")       # repeated text: same episode
        w.image(T0 + 3 * S // 10, _img(2))                       # frame 2
        w.joint_state(T0 + 35 * S // 100, [0.0] * (len(J) - 1), names=J[:-1])  # invalid: misses a joint
        w.image(T0 + 4 * S // 10, _img(3))                       # frame 3: state invalidated
        w.joint_state(T0 + 45 * S // 100, _q(4))
        w.instruction(T0 + 46 * S // 100, "place it")            # new instruction: new episode
        w.image(T0 + 5 * S // 10, _img(4))                       # frame 4
        w.image(T0 + 30 * S // 10, _img(5))                      # frame 5: state and command stale, time gap
        w.joint_state(T0 + 31 * S // 10, _q(31))
        w.image(T0 + 32 * S // 10, _img(6))                      # frame 6
        w.action(T0 + 33 * S // 10, _q(133))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("action_type", ["joint_trajectory", "float64_multi_array"])
def test_pairing_rules(tmp_path, storage, action_type):
    path = tmp_path / "bag"
    _write_scripted(path, storage, action_type)
    with BagReader(path) as r:
        assert r.storage == storage and r.backend in ("rosbags", "rosbag2_py")
        expected_cmd = {"joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
                        "float64_multi_array": "std_msgs/msg/Float64MultiArray"}[action_type]
        assert r.topics == {"/camera/image_raw": "sensor_msgs/msg/Image", "/joint_states": "sensor_msgs/msg/JointState",
                            "/instruction": "std_msgs/msg/String", "/action": expected_cmd}
        assert r.counts["/camera/image_raw"] == 7 and r.start_ns == T0
    frames, stats, info = read_paired_frames(path, gap_s=1.0)
    assert [f.index for f in frames] == list(range(7)) and info["storage"] == storage
    assert stats.joint_names == J and stats.invalid_joint_states == 1 and stats.episodes == 4
    for k, f in enumerate(frames):
        np.testing.assert_array_equal(f.image, _img(k))
    assert frames[0].instruction is None and frames[0].state is not None
    np.testing.assert_allclose(frames[0].action, _q(100))
    # frame 1: the state and command stamped with the frame pair with it ("latest" is inclusive)
    np.testing.assert_allclose(frames[1].state, _q(2))
    np.testing.assert_allclose(frames[1].action, _q(102))
    assert frames[1].instruction == "pick the cube" and frames[1].stamp_ns == T0 + 2 * S // 10
    assert frames[2].instruction == "pick the cube" and frames[2].episode == frames[1].episode
    assert frames[2].instruction_seq == frames[1].instruction_seq  # a repeated instruction is no change
    assert frames[3].state is None  # an invalid reading invalidates the last state (perception node rule)
    assert frames[4].instruction == "place it" and frames[4].episode == frames[3].episode + 1
    np.testing.assert_allclose(frames[4].state, _q(4))
    assert frames[5].state is None and frames[5].action is None  # older than max_age_s = 1 s
    assert frames[5].episode == frames[4].episode + 1  # a 2.5 s gap > gap_s
    assert frames[6].action is None and frames[6].state is not None
    assert frames[4].usable and not frames[0].usable and not frames[5].usable

    nxt, _, _ = read_paired_frames(path, gap_s=1.0, action_align="next")
    np.testing.assert_allclose(nxt[0].action, _q(102))  # first command at or after the frame
    np.testing.assert_allclose(nxt[1].action, _q(102))
    np.testing.assert_allclose(nxt[2].action, _q(133))
    np.testing.assert_allclose(nxt[6].action, _q(133))
    # no age limit: the stale state pairs again
    loose, _, _ = read_paired_frames(path, gap_s=1.0, max_age_s=None)
    np.testing.assert_allclose(loose[5].state, _q(4))


def test_synthetic_bag_and_single_file(tmp_path):
    info = write_synthetic_robot_bag(tmp_path / "syn", "mcap", n_frames=6, gaps=((3, 2.0),),
                                     instructions=((0.0, "a"), (0.25, "b")))
    assert info["counts"]["camera"] == 6
    frames, stats, _ = read_paired_frames(tmp_path / "syn")
    assert len(frames) == 6 and all(f.usable for f in frames[1:])
    assert [f.episode for f in frames] == [0, 0, 1, 2, 2, 2]  # instruction change, then the 2 s gap
    # a recording whose metadata.yaml is gone (interrupted `ros2 bag record`) is read from its one file
    (tmp_path / "syn" / "metadata.yaml").unlink()
    again, _, _ = read_paired_frames(tmp_path / "syn")
    assert [f.t_ns for f in again] == [f.t_ns for f in frames]
    # and the storage file can be given directly
    mcap = next((tmp_path / "syn").glob("*.mcap"))
    with BagReader(mcap) as r:
        assert r.storage == "mcap" and "/camera/image_raw" in r.topics


def test_topic_roles(tmp_path):
    topics = RobotTopics(camera="/front/rgb", joint_states="/arm/joint_states", instruction="/task",
                         action="/arm_controller/joint_trajectory")
    with RobotBagWriter(tmp_path / "b", "sqlite3", topics=topics) as w:
        w.instruction(T0, "go")
        w.joint_state(T0, _q(0))
        w.action(T0, _q(1))
        w.image(T0 + S // 10, _img(0))
        w.writer.write("/front/depth", T0, make_image(_img(1)[:, :, 0], T0, encoding="mono8"))
    with BagReader(tmp_path / "b") as r:
        found = RobotTopics().resolve(r.topics, r.name)
        assert found.as_dict() == topics.as_dict()  # one topic per type; the depth camera is not the camera
        with pytest.raises(BagError, match="camera topic /nope not found"):
            RobotTopics(camera="nope").resolve(r.topics, r.name)
        with pytest.raises(BagError, match="has type sensor_msgs/msg/Image"):
            RobotTopics(joint_states="/front/rgb").resolve(r.topics, r.name)
    with BagWriter(tmp_path / "two", "sqlite3") as w:
        for name in ("/a", "/b"):
            w.write(name, T0, make_joint_state(_q(0), J, T0))
    with BagReader(tmp_path / "two") as r:
        with pytest.raises(BagError, match=r"several joint_states topics \['/a', '/b'\]"):
            RobotTopics().resolve(r.topics, r.name)
        with pytest.raises(BagError, match="no camera"):
            RobotTopics(joint_states="/a").resolve(r.topics, r.name)


def test_cdr_is_rclpy_compatible(tmp_path):
    serialization = pytest.importorskip("rclpy.serialization")
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    store = typestore()
    cases = [(make_image(_img(3), T0 + 5, "cam"), Image), (make_joint_state(_q(1), J, T0), JointState),
             (make_action(_q(2), J, T0, "joint_trajectory", 0.5), JointTrajectory),
             (make_action(_q(3), J, T0, "float64_multi_array"), Float64MultiArray)]
    for msg, rclpy_type in cases:
        data = bytes(store.serialize_cdr(msg, msg.__msgtype__))
        decoded = serialization.deserialize_message(data, rclpy_type)  # rosbags bytes -> rclpy
        back = decode_cdr(serialization.serialize_message(decoded), msg.__msgtype__)  # and back
        assert _fields(back) == _fields(msg), msg.__msgtype__
    img = serialization.deserialize_message(bytes(store.serialize_cdr(cases[0][0], cases[0][0].__msgtype__)), Image)
    assert img.encoding == "rgb8" and img.header.frame_id == "cam" and img.header.stamp.nanosec == 5
    np.testing.assert_array_equal(np.frombuffer(bytes(img.data), np.uint8).reshape(8, 10, 3), _img(3))
    traj = serialization.deserialize_message(bytes(store.serialize_cdr(cases[2][0], cases[2][0].__msgtype__)),
                                             JointTrajectory)
    assert list(traj.joint_names) == J and traj.points[0].time_from_start.nanosec == 500_000_000
    np.testing.assert_allclose(traj.points[0].positions, _q(2))


def _fields(msg):
    """Return a rosbags message as nested plain values (arrays as lists)."""
    if isinstance(msg, np.ndarray):
        return msg.tolist()
    if isinstance(msg, (list, tuple)):
        return [_fields(m) for m in msg]
    if hasattr(msg, "__dataclass_fields__"):
        return {k: _fields(getattr(msg, k)) for k in msg.__dataclass_fields__ if k != "__msgtype__"}
    return msg


def test_clean_instruction_normalises_and_rejects():
    assert clean_instruction("  a\tb\nc  ", 2000) == "a b c"
    assert clean_instruction("caf\u00e9 \u200b ok", 2000) == "caf\u00e9 ok"
    assert clean_instruction("x" * 2000, 2000) == "x" * 2000
    for bad in ("", " \n\t ", "x" * 2001, "pick the\x00 cube", "a\x07b", "\x1b[2J"):
        with pytest.raises(ValueError):
            clean_instruction(bad, 2000)


# --------------------------------------------------------------------------- corrupt recordings
def _storage_file(path):
    return next(p for p in path.iterdir() if p.suffix in (".db3", ".mcap"))


@pytest.fixture(scope="module", params=["sqlite3", "mcap"])
def good_bag(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"good_{request.param}") / "bag"
    write_synthetic_robot_bag(path, request.param, n_frames=8, image_size=16)
    return path


@pytest.mark.parametrize("damage", ["truncate_half", "truncate_90", "garbage", "random_body", "no_storage_file",
                                    "bad_metadata", "empty_file"])
def test_corrupt_or_truncated_bag_names_the_file(good_bag, tmp_path, damage):
    bag = tmp_path / "damaged"
    shutil.copytree(good_bag, bag)
    f = _storage_file(bag)
    size = f.stat().st_size
    if damage == "truncate_half":
        with open(f, "r+b") as fh:
            fh.truncate(size // 2)
    elif damage == "truncate_90":
        with open(f, "r+b") as fh:
            fh.truncate(size * 9 // 10)
    elif damage == "garbage":
        data = bytearray(f.read_bytes())
        for i in range(16, len(data), 5):
            data[i] ^= 0xA5
        f.write_bytes(bytes(data))
    elif damage == "random_body":  # header and footer kept: the MCAP reader met a length field of random bytes
        data = bytearray(f.read_bytes())
        data[100:-100] = np.random.default_rng(0).integers(0, 256, len(data) - 200, dtype=np.uint8).tobytes()
        f.write_bytes(bytes(data))
    elif damage == "no_storage_file":
        f.unlink()
    elif damage == "bad_metadata":
        (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed\n")
    elif damage == "empty_file":
        f.write_bytes(b"")
    with pytest.raises(BagError) as err:
        read_paired_frames(bag)
    text = str(err.value)
    assert str(bag) in text, text  # the message names the recording (or its file)
    assert isinstance(err.value, ValueError)
    if damage.startswith("truncate") and f.suffix == ".mcap" or damage == "random_body":
        assert "truncated or corrupt" in text, text  # a reason and a remedy, also for an error without a message


def test_missing_bag_and_corrupt_message(tmp_path):
    with pytest.raises(BagError, match="not found: .*nowhere"):
        BagReader(tmp_path / "nowhere")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(BagError, match="empty_dir.*no metadata.yaml"):
        BagReader(tmp_path / "empty_dir")
    # a readable container holding an undecodable (cut) message
    good = bytes(typestore().serialize_cdr(make_joint_state(_q(0), J, T0), "sensor_msgs/msg/JointState"))
    with BagWriter(tmp_path / "cut", "mcap") as w:
        w.add_topic("/joint_states", "sensor_msgs/msg/JointState")
        w.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        w.write("/joint_states", T0, good[:-20])
        w.write("/camera/image_raw", T0 + 1, make_image(_img(0), T0))
    with pytest.raises(BagError, match=r"cut.*cannot decode a sensor_msgs/msg/JointState message on /joint_states"):
        read_paired_frames(tmp_path / "cut", require_action=False)
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "cut", "mcap")


# --------------------------------------------------------------------------- rosbag2_py backend
class _FakeRosbag2Py:
    """Provide rosbag2_py's Python API over rosbags.

    StorageOptions, ConverterOptions, TopicMetadata, StorageFilter, SequentialReader / SequentialWriter: they exercise
    the rosbag2_py code path where ROS 2's bag library is not installed.
    """

    class StorageOptions:
        def __init__(self, uri, storage_id=""):
            self.uri, self.storage_id = uri, storage_id

    class ConverterOptions:
        def __init__(self, input_serialization_format="", output_serialization_format=""):
            self.fmt = (input_serialization_format, output_serialization_format)

    class TopicMetadata:
        def __init__(self, id, name, type, serialization_format, offered_qos_profiles=None):  # noqa: A002 (Jazzy+)
            self.id, self.name, self.type, self.serialization_format = id, name, type, serialization_format

    class StorageFilter:
        def __init__(self, topics=()):
            self.topics = list(topics)

    class SequentialReader:
        def open(self, storage_options, converter_options):
            from rosbags.rosbag2 import Reader

            self._r = Reader(storage_options.uri)
            self._r.open()
            self._filter = None
            self._it = None

        def get_all_topics_and_types(self):
            return [_FakeRosbag2Py.TopicMetadata(0, c.topic, c.msgtype, "cdr") for c in self._r.connections]

        def set_filter(self, f):
            self._filter = set(f.topics)

        def _iter(self):
            if self._it is None:
                conns = [c for c in self._r.connections if self._filter is None or c.topic in self._filter]
                self._pending = [(c.topic, bytes(d), t) for c, t, d in self._r.messages(connections=conns)]
                self._it = iter(self._pending)
            return self._pending

        def has_next(self):
            return bool(self._iter())

        def read_next(self):
            self._iter()
            return self._pending.pop(0)

    class SequentialWriter:
        def open(self, storage_options, converter_options):
            from rosbags.rosbag2 import StoragePlugin, Writer

            plugin = StoragePlugin.MCAP if storage_options.storage_id == "mcap" else StoragePlugin.SQLITE3
            self._w = Writer(storage_options.uri, version=9, storage_plugin=plugin)
            self._w.open()
            self._conns = {}

        def create_topic(self, md):
            self._conns[md.name] = self._w.add_connection(md.name, md.type, typestore=typestore())

        def write(self, topic, data, t):
            self._w.write(self._conns[topic], t, data)

        def close(self):
            self._w.close()


def test_rosbag2_py_backend_code_path(tmp_path, monkeypatch):
    import sigma_ros.bag_io as bag_io

    monkeypatch.setattr(bag_io, "_rosbag2_py", lambda: _FakeRosbag2Py)
    info = write_synthetic_robot_bag(tmp_path / "b", "mcap", n_frames=5, image_size=8)  # auto -> rosbag2_py
    assert info["counts"]["camera"] == 5
    with BagReader(tmp_path / "b") as r:
        assert r.backend == "rosbag2_py" and r.storage == "mcap" and r.topics["/action"].endswith("JointTrajectory")
    via_py, _, _ = read_paired_frames(tmp_path / "b", backend="rosbag2_py")
    via_rosbags, _, _ = read_paired_frames(tmp_path / "b", backend="rosbags")
    assert len(via_py) == 5 and all(f.usable for f in via_py)
    for a, b in zip(via_py, via_rosbags):
        assert a.t_ns == b.t_ns and np.array_equal(a.image, b.image) and np.array_equal(a.action, b.action)

    # rosbag2_py present but unable to open it (e.g. a storage plugin missing): auto falls back to rosbags
    class Broken(_FakeRosbag2Py):
        class SequentialReader(_FakeRosbag2Py.SequentialReader):
            def open(self, *a):
                raise RuntimeError("No storage plugin found")

    monkeypatch.setattr(bag_io, "_rosbag2_py", lambda: Broken)
    with BagReader(tmp_path / "b") as r:
        assert r.backend == "rosbags"
    with pytest.raises(BagError, match="No storage plugin"):
        BagReader(tmp_path / "b", backend="rosbag2_py")
    monkeypatch.setattr(bag_io, "_rosbag2_py", lambda: None)
    with pytest.raises(BagError, match="rosbag2_py is not importable"):
        BagReader(tmp_path / "b", backend="rosbag2_py")
