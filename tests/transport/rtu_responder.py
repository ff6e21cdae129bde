"""A tiny raw Modbus RTU responder for one end of a pty pair (test peer, real framing and CRC).

pymodbus' serial server answers unknown unit ids with exception 4, so silence, bad CRCs and late
answers need a peer that does exactly what a test asks. Each unit has a behaviour:
``serve`` (answer from its registers), ``silent`` (never answer), ``bad_crc`` (answer with a
valid frame whose CRC is flipped), ``exception:N`` (answer exception N) or ``late:S`` (answer
after S seconds).
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from dataclasses import dataclass, field


def crc16(data: bytes) -> bytes:
    """Modbus CRC-16 (poly 0xA001, init 0xFFFF), low byte first as sent on the wire."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


@dataclass
class Unit:
    """One simulated unit: its registers and how it behaves."""

    registers: dict[int, int] = field(default_factory=dict)
    behaviour: str = "serve"


@dataclass
class Seen:
    """A request frame the responder received."""

    at: float
    unit_id: int
    function: int
    address: int
    count: int


class RawRtuResponder:
    """Answers RTU requests arriving on a pty path (a socat pair end)."""

    def __init__(self, path: str, units: dict[int, Unit]) -> None:
        """Serve ``units`` on the pty at ``path`` once started."""
        self.path = path
        self.units = units
        self.seen: list[Seen] = []
        self.bad_requests = 0
        self._fd = -1
        self._buffer = b""
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open the pty and start answering."""
        self._fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    async def stop(self) -> None:
        """Stop answering and close the pty."""
        for task in self._tasks:
            task.cancel()
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _readable(self) -> None:
        try:
            self._buffer += os.read(self._fd, 512)
        except BlockingIOError:
            return
        while self._buffer:
            size = self._frame_size(self._buffer)
            if size is None or len(self._buffer) < size:
                return
            frame, self._buffer = self._buffer[:size], self._buffer[size:]
            if crc16(frame[:-2]) != frame[-2:]:
                self.bad_requests += 1
                self._buffer = b""
                return
            self._handle(frame[:-2])

    @staticmethod
    def _frame_size(buf: bytes) -> int | None:
        if len(buf) < 2:
            return None
        if buf[1] in (3, 4, 6):
            return 8
        if buf[1] == 16:
            return 9 + buf[6] if len(buf) >= 7 else None
        return len(buf)  # unknown function: take everything, the CRC check rejects it

    def _handle(self, pdu: bytes) -> None:
        unit_id, function = pdu[0], pdu[1]
        address, count = struct.unpack(">HH", pdu[2:6])
        self.seen.append(Seen(time.monotonic(), unit_id, function, address, count))
        unit = self.units.get(unit_id)
        if unit is None or unit.behaviour == "silent":
            return
        if unit.behaviour.startswith("exception:"):
            reply = bytes([unit_id, function | 0x80, int(unit.behaviour.split(":")[1])])
        elif function in (3, 4):
            values = [unit.registers.get(address + i, 0) for i in range(count)]
            reply = bytes([unit_id, function, 2 * count]) + struct.pack(f">{count}H", *values)
        elif function == 6:
            unit.registers[address] = count  # FC06 carries the value where FC03 has the count
            reply = pdu
        else:
            values = struct.unpack(f">{count}H", pdu[7 : 7 + 2 * count])
            for i, value in enumerate(values):
                unit.registers[address + i] = value
            reply = pdu[:6]
        frame = reply + crc16(reply)
        if unit.behaviour == "bad_crc":
            frame = frame[:-2] + bytes([frame[-2] ^ 0xFF, frame[-1]])
        if unit.behaviour.startswith("late:"):
            task = asyncio.get_running_loop().create_task(
                self._send_later(frame, float(unit.behaviour.split(":")[1]))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        os.write(self._fd, frame)

    async def _send_later(self, frame: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._fd >= 0:
            os.write(self._fd, frame)
