# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Message <-> tensor conversions, each one validating what it receives.

Every inbound message goes through one of these functions; a malformed message raises
:class:`ConversionError` (a ``ValueError``) with a human-readable reason, which the node logs
(throttled), counts as a dropped input and answers with a safe hold. Nothing here crashes on
bad data and nothing returns NaN.

* ``tensor_to_msg`` / ``tensor_from_msg``: the ``sigma_ros_msgs/Tensor`` (uint32[] dims +
  float32[] data, row-major) of every custom message; shapes are checked on receipt.
* ``image_to_array`` / ``image_to_tensor`` / ``array_to_image``: ``sensor_msgs/Image`` without
  cv_bridge (rgb8, bgr8, rgba8, bgra8, mono8; step and size checks; optional resize).
* ``depth_to_tensor``: 32FC1 (metres) or 16UC1 (millimetres) depth images.
* ``joint_state_to_vector``: ``sensor_msgs/JointState`` -> state vector in the model's joint
  order (name mapping, length and NaN checks).
* ``audio_to_mono`` and :class:`AudioBuffer`: ``sigma_ros_msgs/AudioChunk`` -> the model's
  fixed-length mono window.
* ``plan_to_msg`` / ``plan_from_msg``: ``ActionOutput`` <-> ``sigma_ros_msgs/ActionPlan``.
"""

from __future__ import annotations

import array
import math
import unicodedata
from typing import Sequence

import numpy as np
import torch

MAX_TENSOR_ELEMENTS = 50_000_000  # refuse absurd dims before allocating anything


class ConversionError(ValueError):
    """A received message is malformed; the message says why."""


# --------------------------------------------------------------------------- tensors
def _float32_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def tensor_to_msg(x, msg=None):
    """torch/numpy array -> sigma_ros_msgs/Tensor (float32, row-major)."""
    if msg is None:
        from sigma_ros_msgs.msg import Tensor

        msg = Tensor()
    arr = _float32_array(x)
    msg.dims = array.array("I", [int(d) for d in arr.shape])
    msg.data = array.array("f", arr.tobytes())
    return msg


def _shape_str(shape) -> str:
    return "[" + ",".join("*" if s is None else str(s) for s in shape) + "]"


def tensor_from_msg(msg, expected: Sequence[int | None] | None = None, name: str = "tensor",
                    allow_nonfinite: bool = False) -> torch.Tensor:
    """sigma_ros_msgs/Tensor -> float32 torch tensor, checking dims, size and finiteness.

    expected: the shape the receiver requires (None entries accept any size), or None.
    """
    try:
        dims = [int(d) for d in msg.dims]
        data = msg.data
    except (AttributeError, TypeError) as err:
        raise ConversionError(f"{name}: not a Tensor message ({err})") from err
    if any(d < 0 for d in dims):
        raise ConversionError(f"{name}: negative dims {dims}")
    n = math.prod(dims) if dims else 1
    if n > MAX_TENSOR_ELEMENTS or any(d > MAX_TENSOR_ELEMENTS for d in dims):  # a 0 among huge dims: n = 0
        raise ConversionError(f"{name}: dims {dims} ({n} elements) exceed the limit {MAX_TENSOR_ELEMENTS}")
    if len(data) != n:
        raise ConversionError(f"{name}: dims {dims} need {n} values, got {len(data)}")
    if expected is not None:
        expected = list(expected)
        if len(dims) != len(expected) or any(e is not None and e != d for e, d in zip(expected, dims)):
            raise ConversionError(f"{name}: expected shape {_shape_str(expected)}, got {dims}")
    if isinstance(data, array.array) and data.typecode == "f":
        arr = np.frombuffer(data, dtype=np.float32, count=n)
    else:
        arr = np.asarray(data, dtype=np.float32)
    arr = arr.reshape(dims) if dims else arr.reshape(())
    if not allow_nonfinite and not np.isfinite(arr).all():
        raise ConversionError(f"{name}: contains NaN or Inf")
    return torch.from_numpy(arr.copy())


def vector_from_field(values, expected_len: int | None, name: str) -> np.ndarray:
    """Return a plain float[] field (e.g. tau_l2, adapter_scale) with length and finiteness checks."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if expected_len is not None and arr.shape[0] != expected_len:
        raise ConversionError(f"{name}: expected {expected_len} values, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ConversionError(f"{name}: contains NaN or Inf")
    return arr


# ---------------------------------------------------------------------------- images
_COLOR_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3}
SUPPORTED_ENCODINGS = tuple(_COLOR_CHANNELS)


def _image_rows(msg, bytes_per_pixel: int, name: str) -> np.ndarray:
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ConversionError(f"{name}: empty image {w}x{h}")
    if h * w > 16384 * 16384:
        raise ConversionError(f"{name}: image {w}x{h} too large")
    row = w * bytes_per_pixel
    if step < row:
        raise ConversionError(f"{name}: step {step} < width*bytes_per_pixel {row} ({msg.encoding})")
    data = msg.data
    if len(data) != step * h:
        raise ConversionError(f"{name}: data has {len(data)} bytes, expected step*height = {step * h}")
    if not isinstance(data, (bytes, bytearray, memoryview, array.array)):
        data = bytes(data)
    buf = np.frombuffer(data, dtype=np.uint8)
    return buf.reshape(h, step)[:, :row]


def image_to_array(msg, name: str = "image") -> np.ndarray:
    """sensor_msgs/Image (8-bit colour or mono) -> uint8 RGB array [H, W, 3]."""
    enc = str(msg.encoding)
    if enc not in _COLOR_CHANNELS:
        raise ConversionError(f"{name}: unsupported encoding {enc!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    ch = _COLOR_CHANNELS[enc]
    rows = _image_rows(msg, ch, name)
    img = rows.reshape(int(msg.height), int(msg.width), ch)
    if ch == 1:
        img = np.repeat(img, 3, axis=2)
    elif enc in ("bgr8", "bgra8"):
        img = img[:, :, 2::-1]
    else:
        img = img[:, :, :3]
    return np.ascontiguousarray(img)


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return torch.nn.functional.interpolate(x, size=(size, size), mode=mode, **kwargs)


def rgb_array_to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [1, 3, H, W] in [0, 1] (what the vision stage gets)."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0).float().div(255.0)


def image_to_tensor(msg, image_size: int, resize: bool = False, name: str = "image") -> torch.Tensor:
    """sensor_msgs/Image -> float32 [1, 3, S, S] in [0, 1].

    A different size is an error unless ``resize`` (bilinear).
    """
    img = image_to_array(msg, name)
    h, w = img.shape[:2]
    t = rgb_array_to_tensor(img)
    if (h, w) != (image_size, image_size):
        if not resize:
            raise ConversionError(
                f"{name}: size {w}x{h} != model input {image_size}x{image_size} (set resize_images to resize)"
            )
        t = _resize(t, image_size, "bilinear").clamp_(0.0, 1.0)
    return t


def array_to_image(img: np.ndarray, encoding: str = "rgb8", stamp=None, frame_id: str = "camera"):
    """uint8 [H, W, 3] RGB (or [H, W] mono) -> sensor_msgs/Image (for publishers, sims and tests)."""
    from sensor_msgs.msg import Image

    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"array_to_image expects uint8, got {img.dtype}")
    if not (img.ndim == 3 and img.shape[2] == 3 or img.ndim == 2 and encoding == "mono8") or 0 in img.shape:
        raise ValueError(f"array_to_image expects [H, W, 3] (or [H, W] for mono8), got shape {img.shape}")
    if encoding == "mono8":
        if img.ndim == 3:
            img = img.mean(axis=2).astype(np.uint8)
        data = img
    elif encoding == "rgb8":
        data = img
    elif encoding == "bgr8":
        data = img[:, :, ::-1]
    else:
        raise ValueError(f"array_to_image: unsupported encoding {encoding}")
    data = np.ascontiguousarray(data)
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(data.shape[0]), int(data.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(data.strides[0])
    msg.data = array.array("B", data.tobytes())
    return msg


def depth_to_tensor(msg, image_size: int, resize: bool = False, name: str = "depth",
                    max_depth_m: float = 20.0) -> torch.Tensor:
    """32FC1 (metres) or 16UC1 (millimetres) -> float32 [1, 1, S, S] metres.

    Invalid pixels (NaN, Inf, 0 for 16UC1) become 0, the usual "no return" value; values are clipped to max.
    """
    enc = str(msg.encoding)
    if enc == "32FC1":
        rows = _image_rows(msg, 4, name)
        dtype = np.dtype(">f4" if msg.is_bigendian else "<f4")
        depth = rows.copy().view(dtype).reshape(int(msg.height), int(msg.width)).astype(np.float32)
    elif enc in ("16UC1", "mono16"):
        rows = _image_rows(msg, 2, name)
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        depth = rows.copy().view(dtype).reshape(int(msg.height), int(msg.width)).astype(np.float32) / 1000.0
    else:
        raise ConversionError(f"{name}: unsupported depth encoding {enc!r} (32FC1 or 16UC1)")
    depth = np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0).clip(0.0, max_depth_m)
    t = torch.from_numpy(depth)[None, None]
    if depth.shape != (image_size, image_size):
        if not resize:
            raise ConversionError(
                f"{name}: size {depth.shape[1]}x{depth.shape[0]} != model input {image_size}x{image_size}"
            )
        t = _resize(t, image_size, "nearest")
    return t


# ---------------------------------------------------------------------- joint states
def positions_by_name(positions: Sequence[float], names: Sequence[str], joint_names: Sequence[str],
                      name: str) -> np.ndarray:
    """Positions in joint_names order.

    Looked up by name when names are given (extra joints are ignored, a missing one is an error), else exactly the
    model's joints in order.
    """
    if names:
        if len(names) != len(positions):
            raise ConversionError(f"{name}: {len(names)} names but {len(positions)} positions")
        if len(set(names)) != len(names):
            raise ConversionError(f"{name}: duplicate joint names {list(names)}")
        index = {j: i for i, j in enumerate(names)}
        missing = [j for j in joint_names if j not in index]
        if missing:
            raise ConversionError(f"{name}: missing joints {missing} (got {list(names)})")
        return np.array([positions[index[j]] for j in joint_names], dtype=np.float64)
    if len(positions) != len(joint_names):
        raise ConversionError(f"{name}: expected {len(joint_names)} positions (no names given), got {len(positions)}")
    return np.asarray(positions, dtype=np.float64)


def clean_instruction(text: str, max_chars: int) -> str:
    """Validate an instruction.

    A non-empty string, not huge, no control characters other than white space (NUL would cut the text in transport);
    white space runs become one space.
    """
    if not isinstance(text, str):
        raise ConversionError("instruction: not a string")
    if len(text) > max_chars:
        raise ConversionError(f"instruction: {len(text)} characters exceed max_instruction_chars={max_chars}")
    bad = sorted({f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) == "Cc" and not ch.isspace()})
    if bad:
        raise ConversionError(f"instruction: control characters {', '.join(bad)} are not allowed")
    original, text = text, "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    text = " ".join(text.split())
    if not text:
        raise ConversionError("instruction: empty" if not original.strip() else
                              "instruction: no printable text (only format, private-use or unassigned characters)")
    return text


def joint_state_to_vector(msg, joint_names: Sequence[str], name: str = "joint_states") -> np.ndarray:
    """sensor_msgs/JointState -> float64 [len(joint_names)] in joint_names order.

    With names in the message, each required joint is looked up by name (extra joints are
    ignored; a missing one is an error). Without names, the positions must be exactly the
    model's joints in order. NaN/Inf positions are errors.
    """
    vec = positions_by_name(list(msg.position), list(msg.name), joint_names, name)
    if not np.isfinite(vec).all():
        raise ConversionError(f"{name}: non-finite positions {vec.tolist()}")
    return vec


def time_from_ns(t_ns: int):
    """Integer nanoseconds -> builtin_interfaces/Time (a header stamp)."""
    from builtin_interfaces.msg import Time

    return Time(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000))


def make_joint_state(positions: Sequence[float], joint_names: Sequence[str], stamp=None):
    from sensor_msgs.msg import JointState

    msg = JointState()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.name = list(joint_names)
    msg.position = [float(p) for p in positions]
    return msg


# ---------------------------------------------------------------------------- audio
def audio_to_mono(msg, sample_rate: int, name: str = "audio", max_samples: int = 10_000_000) -> np.ndarray:
    """sigma_ros_msgs/AudioChunk -> float32 mono samples (channel mean), clipped to [-1, 1]."""
    if int(msg.sample_rate) != int(sample_rate):
        raise ConversionError(f"{name}: sample rate {msg.sample_rate} != model rate {sample_rate} (resample upstream)")
    ch = int(msg.channels)
    if ch <= 0:
        raise ConversionError(f"{name}: channels must be >= 1, got {ch}")
    data = msg.samples
    n = len(data)
    if n == 0:
        raise ConversionError(f"{name}: empty chunk")
    if n > max_samples:
        raise ConversionError(f"{name}: {n} samples exceed the limit {max_samples}")
    if n % ch:
        raise ConversionError(f"{name}: {n} samples is not a multiple of {ch} channels")
    if isinstance(data, array.array) and data.typecode == "f":
        arr = np.frombuffer(data, dtype=np.float32)
    else:
        arr = np.asarray(data, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ConversionError(f"{name}: contains NaN or Inf")
    mono = arr.reshape(-1, ch).mean(axis=1) if ch > 1 else arr
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


def make_audio_chunk(samples: np.ndarray, sample_rate: int, channels: int = 1, stamp=None):
    from sigma_ros_msgs.msg import AudioChunk

    msg = AudioChunk()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.sample_rate = int(sample_rate)
    msg.channels = int(channels)
    msg.samples = array.array("f", np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    return msg


class AudioBuffer:
    """The newest ``size`` mono samples (zeros before any audio), as the model's audio window."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._buf = np.zeros(self.size, dtype=np.float32)
        self.received = 0

    def push(self, mono: np.ndarray) -> None:
        mono = np.asarray(mono, dtype=np.float32).reshape(-1)
        if mono.shape[0] >= self.size:
            self._buf = mono[-self.size:].copy()
        else:
            self._buf = np.concatenate([self._buf[mono.shape[0]:], mono])
        self.received += mono.shape[0]

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self._buf.copy()).unsqueeze(0)


# ----------------------------------------------------------------------- action plan
PLAN_FIELDS = (
    "action_vector", "action_chunk", "action_trajectory",
    "baseline_vector", "baseline_chunk", "baseline_trajectory",
    "residual_vector", "residual_chunk", "residual_trajectory",
    "action_condition", "condition_tau",
)


def plan_shapes(config, batch: int | None = None) -> dict[str, tuple]:
    b, a = batch, config.action_dim
    vec, chunk, traj = (b, a), (b, config.chunk_len, a), (b, config.traj_len, a)
    return {
        "action_vector": vec, "action_chunk": chunk, "action_trajectory": traj,
        "baseline_vector": vec, "baseline_chunk": chunk, "baseline_trajectory": traj,
        "residual_vector": vec, "residual_chunk": chunk, "residual_trajectory": traj,
        "action_condition": (b, config.d_model), "condition_tau": (b, config.d_tau),
    }


def plan_to_msg(action, msg=None):
    """ActionOutput -> the tensor fields of a sigma_ros_msgs/ActionPlan (header etc. by caller)."""
    if msg is None:
        from sigma_ros_msgs.msg import ActionPlan

        msg = ActionPlan()
    for f in PLAN_FIELDS:
        setattr(msg, f, tensor_to_msg(getattr(action, f)))
    return msg


def plan_from_msg(msg, config):
    """sigma_ros_msgs/ActionPlan -> (ActionOutput, adapter_scale [B], risk [B]) with shape checks."""
    from sigma_model.outputs import ActionOutput

    shapes = plan_shapes(config)
    tensors = {}
    batch = None
    for f in PLAN_FIELDS:
        shape = list(shapes[f])
        if batch is not None:
            shape[0] = batch
        t = tensor_from_msg(getattr(msg, f), shape, name=f"action_plan.{f}")
        batch = t.shape[0]
        tensors[f] = t
    if batch == 0:
        raise ConversionError("action_plan: empty batch")
    scale = (
        vector_from_field(msg.adapter_scale, batch, "action_plan.adapter_scale")
        if len(msg.adapter_scale)
        else np.ones(batch)
    )
    risk = vector_from_field(msg.risk, batch, "action_plan.risk") if len(msg.risk) else np.zeros(batch)
    return ActionOutput(**tensors), scale, risk
