# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""A Feetech STS3215 servo bus on a pseudo-terminal.

For running LeRobot's ``FeetechMotorsBus`` (and the robots built on it: ``so101_follower``, ``so101_leader``, ...)
without hardware.

The emulator opens a pty (``os.openpty``) and answers the Feetech protocol (protocol 0, the STS
series) on it for a set of servo ids, like the servos daisy-chained behind an SO-101's USB board:
ping, broadcast ping, read, write, sync read and sync write of any register of the STS/SMS control
table (the one ``lerobot.motors.feetech.tables`` describes: model number 777, firmware version,
homing offset, position limits, torque enable, lock, goal and present position, ...). Bad
checksums and unknown instructions get no answer, as on a real bus.

Servo model: ``Present_Position = (actual - Homing_Offset) mod 4096`` (sign-magnitude registers
as LeRobot encodes them); with torque enabled the servo moves towards ``Goal_Position``, clamped
to ``[Min_Position_Limit, Max_Position_Limit]``, at ``speed`` ticks/s; enabling torque sets the
goal to the present position (the arm holds where it is); with torque disabled the position only
changes through :meth:`FeetechBusEmulator.set_actual` (a hand moving the arm).

Every write is logged (:attr:`FeetechBusEmulator.writes`: time, id, register name, value as the
servo decodes it), so tests can check what a driver sent. ``python -m
lerobot_robot_sigma_sim.feetech_emulator`` serves a bus until SIGINT/SIGTERM, prints its port and
writes its log as JSON lines (EmulatorConfig's fields as ``--field=value``, e.g.
``--positions=[2048,2048,2048,2048,2048,2100] --log=bus.jsonl``; see ``--help``).
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
import time
import tty
from dataclasses import dataclass, field
from typing import Sequence

INST_PING, INST_READ, INST_WRITE, INST_SYNC_READ, INST_SYNC_WRITE = 1, 2, 3, 0x82, 0x83
BROADCAST_ID = 0xFE
MODEL_NUMBER = 777  # sts3215
RESOLUTION = 4096

# (address, bytes) of the registers this emulator interprets; others are plain memory. The same
# addresses as lerobot.motors.feetech.tables.STS_SMS_SERIES_CONTROL_TABLE.
REGISTERS = {
    "Firmware_Major_Version": (0, 1), "Firmware_Minor_Version": (1, 1), "Model_Number": (3, 2), "ID": (5, 1),
    "Baud_Rate": (6, 1), "Return_Delay_Time": (7, 1), "Min_Position_Limit": (9, 2), "Max_Position_Limit": (11, 2),
    "Max_Torque_Limit": (16, 2), "P_Coefficient": (21, 1), "D_Coefficient": (22, 1), "I_Coefficient": (23, 1),
    "Protection_Current": (28, 2), "Homing_Offset": (31, 2), "Operating_Mode": (33, 1), "Overload_Torque": (36, 1),
    "Torque_Enable": (40, 1), "Acceleration": (41, 1), "Goal_Position": (42, 2), "Goal_Time": (44, 2),
    "Goal_Velocity": (46, 2), "Torque_Limit": (48, 2), "Lock": (55, 1), "Present_Position": (56, 2),
    "Present_Velocity": (58, 2), "Present_Load": (60, 2), "Present_Voltage": (62, 1),
    "Present_Temperature": (63, 1), "Moving": (66, 1), "Present_Current": (69, 2), "Maximum_Acceleration": (85, 1),
}
_NAME_AT = {addr: name for name, (addr, _) in REGISTERS.items()}
_SIGN_BITS = {"Homing_Offset": 11, "Goal_Position": 15, "Present_Position": 15, "Goal_Velocity": 15,
              "Present_Velocity": 15, "Present_Load": 10}


def _decode(name: str, raw: int) -> int:
    bit = _SIGN_BITS.get(name)
    if bit is not None and raw & (1 << bit):
        return -(raw & ((1 << bit) - 1))
    return raw


def _encode(name: str, value: int) -> int:
    bit = _SIGN_BITS.get(name)
    if bit is not None and value < 0:
        return (-value) | (1 << bit)
    return value


def checksum(body: Sequence[int]) -> int:
    return ~sum(body) & 0xFF


@dataclass
class Servo:
    """One STS3215: its control table (256 bytes) and a position model."""

    id: int
    actual: float = 2048.0  # encoder position, ticks
    speed: float = 3000.0  # ticks/s while driving to the goal
    regs: bytearray = field(default_factory=lambda: bytearray(256))
    last_update: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        for name, value in (("Firmware_Major_Version", 3), ("Firmware_Minor_Version", 10),
                            ("Model_Number", MODEL_NUMBER), ("ID", self.id), ("Return_Delay_Time", 250),
                            ("Max_Position_Limit", RESOLUTION - 1), ("Max_Torque_Limit", 1000),
                            ("P_Coefficient", 32), ("D_Coefficient", 32), ("Lock", 1), ("Present_Voltage", 120),
                            ("Present_Temperature", 30)):
            self.set(name, value)
        self.set("Goal_Position", self.present())

    def get(self, name: str) -> int:
        addr, size = REGISTERS[name]
        return _decode(name, int.from_bytes(self.regs[addr:addr + size], "little"))

    def set(self, name: str, value: int) -> None:
        addr, size = REGISTERS[name]
        self.regs[addr:addr + size] = int(_encode(name, int(value))).to_bytes(size, "little")

    def present(self) -> int:
        return int(round(self.actual - self.get("Homing_Offset"))) % RESOLUTION

    def update(self, now: float) -> None:
        """Advance the position model to ``now`` and refresh the present registers."""
        dt, self.last_update = max(0.0, now - self.last_update), now
        if self.get("Torque_Enable"):
            lo, hi = self.get("Min_Position_Limit"), self.get("Max_Position_Limit")
            goal = min(max(self.get("Goal_Position"), lo), hi)
            here = self.actual - self.get("Homing_Offset")
            move = max(-self.speed * dt, min(self.speed * dt, goal - here))
            self.actual += move
            self.set("Moving", int(abs(goal - here) > 1))
        self.set("Present_Position", self.present())

    def write(self, addr: int, data: bytes) -> None:
        enabling = addr <= REGISTERS["Torque_Enable"][0] < addr + len(data) and \
            data[REGISTERS["Torque_Enable"][0] - addr] == 1 and not self.get("Torque_Enable")
        self.regs[addr:addr + len(data)] = data
        if enabling:  # the servo holds where it is when its torque comes on
            self.set("Goal_Position", self.present())
        self.set("Present_Position", self.present())


@dataclass
class Write:
    """One register write as a servo received it."""

    t: float
    id: int
    name: str
    value: int
    sync: bool


class FeetechBusEmulator:
    """STS3215 servos with ids ``ids`` answering on a pty (:attr:`port`); :meth:`start` / :meth:`stop`.

    ``positions``: the initial encoder position (ticks) of each servo; ``speed``: ticks/s.
    """

    def __init__(self, ids: Sequence[int] = (1, 2, 3, 4, 5, 6), positions: Sequence[float] | None = None,
                 speed: float = 3000.0) -> None:
        positions = list(positions) if positions is not None else [2048.0] * len(ids)
        if len(positions) != len(ids):
            raise ValueError("one position per servo id")
        self.servos = {i: Servo(i, float(p), speed) for i, p in zip(ids, positions)}
        self.lock = threading.Lock()
        self.writes: list[Write] = []
        self.packets = 0
        self.bad_packets = 0
        self.mute_reads = 0  # the next this many read packets get no status packet (a missed answer)
        self.mute_sync_reads = 0  # the same for sync read packets (e.g. the present position read before a goal)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass unchanged
        os.set_blocking(self._master, False)  # read by the server thread and by drain(), whichever comes first
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = threading.Lock()  # held by the server from reading a chunk until it is answered
        self._buf = bytearray()

    # ------------------------------------------------------------------ control
    def start(self) -> "FeetechBusEmulator":
        self._thread = threading.Thread(target=self._serve, name="feetech-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "FeetechBusEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_actual(self, servo_id: int, ticks: float) -> None:
        """Move a servo's shaft (a hand moving the arm, or a leader arm being teleoperated)."""
        with self.lock:
            servo = self.servos[servo_id]
            servo.update(time.monotonic())
            servo.actual = float(ticks)
            servo.set("Present_Position", servo.present())

    def drain(self, timeout: float = 5.0) -> None:
        """Handle every byte sent to the bus so far (sync writes get no answer to wait on).

        The bytes are read here, not counted: a read of the pseudo-terminal takes in what the kernel has not yet passed
        on from the port's side, which FIONREAD does not count (about 1 in 200 packets just written, on Linux).
        """
        deadline = time.monotonic() + timeout
        while self._thread is not None and self._thread.is_alive():
            if self._busy.acquire(timeout=0.01):
                try:
                    if not self._pump():
                        return
                except OSError:  # the port closed: nothing more can arrive
                    return
                finally:
                    self._busy.release()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the emulator did not handle the bytes sent to it within {timeout} s")

    def register(self, servo_id: int, name: str) -> int:
        self.drain()
        with self.lock:
            servo = self.servos[servo_id]
            servo.update(time.monotonic())
            return servo.get(name)

    def registers(self, name: str) -> dict[int, int]:
        return {i: self.register(i, name) for i in self.servos}

    def writes_of(self, name: str) -> list[Write]:
        self.drain()
        with self.lock:
            return [w for w in self.writes if w.name == name]

    # ------------------------------------------------------------------ protocol
    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            with self._busy:
                try:
                    self._pump()
                except OSError:  # the port closed
                    return

    def _pump(self) -> bool:
        """Read what has arrived and answer every whole packet in it (the caller holds ``_busy``); False: nothing."""
        try:
            chunk = os.read(self._master, 4096)
        except BlockingIOError:
            return False
        self._buf.extend(chunk)
        for packet in self._packets():
            reply = memoryview(self.handle(packet))
            while reply:  # the master is non-blocking: wait while the port's input buffer is full
                select.select([], [self._master], [], 1.0)
                try:
                    reply = reply[os.write(self._master, reply):]
                except BlockingIOError:
                    pass
        return bool(chunk)

    def _packets(self):
        buf = self._buf
        while True:
            start = buf.find(b"\xff\xff")
            if start < 0:
                del buf[:max(0, len(buf) - 1)]
                return
            del buf[:start]
            if len(buf) < 4:
                return
            total = buf[3] + 4
            if len(buf) < total:
                return
            packet = bytes(buf[:total])
            del buf[:total]
            if packet[-1] != checksum(packet[2:-1]):
                self.bad_packets += 1
                continue
            yield packet

    def handle(self, packet: bytes) -> bytes:
        """Return the servos' answer to one instruction packet (b"" when none answers)."""
        sid, inst, params = packet[2], packet[4], packet[5:-1]
        now = time.monotonic()
        with self.lock:
            self.packets += 1
            for servo in self.servos.values():
                servo.update(now)
            if inst == INST_PING:
                ids = list(self.servos) if sid == BROADCAST_ID else [sid]
                return b"".join(self._status(i) for i in ids if i in self.servos)
            if inst == INST_READ and self.mute_reads > 0:
                self.mute_reads -= 1
                return b""
            if inst == INST_READ and sid in self.servos and len(params) == 2:
                addr, size = params
                return self._status(sid, self.servos[sid].regs[addr:addr + size])
            if inst == INST_WRITE and len(params) >= 2:
                ids = list(self.servos) if sid == BROADCAST_ID else [sid]
                for i in ids:
                    if i in self.servos:
                        self._write(i, params[0], params[1:], now, sync=False)
                return self._status(sid) if sid in self.servos else b""
            if inst == INST_SYNC_READ and self.mute_sync_reads > 0:
                self.mute_sync_reads -= 1
                return b""
            if inst == INST_SYNC_READ and len(params) >= 2:
                addr, size = params[0], params[1]
                return b"".join(self._status(i, self.servos[i].regs[addr:addr + size])
                                for i in params[2:] if i in self.servos)
            if inst == INST_SYNC_WRITE and len(params) >= 2:
                addr, size = params[0], params[1]
                body = params[2:]
                for k in range(0, len(body) - size, size + 1):
                    if body[k] in self.servos:
                        self._write(body[k], addr, body[k + 1:k + 1 + size], now, sync=True)
                return b""
        return b""

    def _write(self, sid: int, addr: int, data: bytes, now: float, sync: bool) -> None:
        servo = self.servos[sid]
        servo.write(addr, bytes(data))
        name = _NAME_AT.get(addr, f"reg_{addr}")
        size = REGISTERS.get(name, (addr, len(data)))[1]
        value = _decode(name, int.from_bytes(bytes(data[:size]), "little"))
        self.writes.append(Write(now, sid, name, value, sync))

    @staticmethod
    def _status(sid: int, data: bytes = b"", error: int = 0) -> bytes:
        body = bytes([sid, len(data) + 2, error]) + bytes(data)
        return b"\xff\xff" + body + bytes([checksum(body)])


def relax_timeouts(bus, extra_ms: float = 500.0) -> None:
    """Give a ``FeetechMotorsBus`` ``extra_ms`` more to wait for each answer.

    The emulator answers from a Python thread or process, which a loaded machine may not schedule within LeRobot's 50 ms
    packet deadline (a servo answers within microseconds); the protocol is unchanged.
    """
    port = bus.port_handler
    patched = port.setPacketTimeout

    def set_packet_timeout(packet_length):
        patched(packet_length)
        port.packet_timeout += extra_ms

    port.setPacketTimeout = set_packet_timeout


SO101_MOTORS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def write_calibration(path: str | os.PathLike, ranges: dict[str, tuple[int, int, int]],
                      motors: Sequence[str] = SO101_MOTORS) -> None:
    """Return a LeRobot calibration file (``<calibration_dir>/<id>.json``, what ``lerobot-calibrate`` writes).

    ``ranges`` maps each motor name to (homing_offset, range_min, range_max); ids follow ``motors`` (1, 2, ...).
    """
    data = {name: {"id": motors.index(name) + 1, "drive_mode": 0, "homing_offset": int(h), "range_min": int(lo),
                   "range_max": int(hi)} for name, (h, lo, hi) in ranges.items()}
    with open(path, "w") as f:
        json.dump(data, f, indent=4)


@dataclass
class EmulatorConfig:
    """Serve emulated STS3215 servos on a pty until SIGINT/SIGTERM (prints ``port <device>`` when ready)."""

    ids: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])  # servo ids (default: an SO-101's)
    positions: list[float] | None = None  # initial encoder positions (ticks), one per id (default: 2048 each)
    speed: float = 3000.0  # servo speed (ticks/s)
    log: str = ""  # on exit, write every write and the final registers here (JSON lines)

    def __post_init__(self) -> None:
        if not self.ids or not all(0 <= i < BROADCAST_ID for i in self.ids):
            raise ValueError(f"--ids must be servo ids in [0, {BROADCAST_ID - 1}], got {self.ids}")
        if self.positions is not None and len(self.positions) != len(self.ids):
            raise ValueError(f"--positions needs one position per servo id ({len(self.ids)}), got {self.positions}")
        if not self.speed > 0:
            raise ValueError("--speed must be > 0")


def main(argv: list[str] | None = None) -> int:
    from sigma_model.cli import parse_cli

    cfg = parse_cli(EmulatorConfig, argv, "python -m lerobot_robot_sigma_sim.feetech_emulator",
                    description=EmulatorConfig.__doc__)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with FeetechBusEmulator(cfg.ids, cfg.positions, cfg.speed) as bus:
        print(f"port {bus.port}", flush=True)
        stop.wait()
        if cfg.log:
            with open(cfg.log, "w") as f:
                for w in bus.writes:
                    f.write(json.dumps({"t": w.t, "id": w.id, "name": w.name, "value": w.value, "sync": w.sync}) + "\n")
                f.write(json.dumps({"final": {name: {str(i): v for i, v in bus.registers(name).items()}
                                              for name in ("Torque_Enable", "Goal_Position", "Present_Position")}})
                        + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
