"""Serve simulated devices over Modbus RTU on a serial port or pty, optionally emulating the line.

Like a real RS485 bus, a frame for a unit id that is not served (or a silent `FaultyDevice`) gets
no answer at all, and so does a frame with a bad CRC.

Line emulation. A pty moves bytes at memory speed whatever the baud rate, so RTU timing cannot
be measured on one. With ``line_emulation=True`` the server keeps an emulated timeline of the
line: a character takes 11 bits / baud rate (8 data bits + start + parity or second stop bit, the
Modbus RTU character), and a frame ends with a silent interval of 3.5 characters (fixed 1.75 ms
above 19200 baud, Modbus over serial line V1.02 2.5.1.1). A request that arrives at time t is on
the line until t + request chars; the device sees its end one silent interval later; its answer
then takes response chars on the line, and is written to the port when its last character would
have arrived. A request that starts before the end of the previous frame on the line plus the
silent interval would have merged with it on a real bus: the server stays silent and counts it
in ``refused_in_silent_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import serial

from ampgate.sim.device import SharedUnitId, SimulatedDevice, faults_of
from ampgate.sim.rtu_frames import answer_pdu, crc_ok, request_size, with_crc

BITS_PER_CHAR = 11
FIXED_SILENT_INTERVAL_S = 0.00175
FIXED_INTERVAL_ABOVE_BAUD = 19200
#: Real-time quiet gap after which a partial frame in the buffer is given up (pty / USB latency).
_STALE_AFTER_S = 0.02


def char_time(baudrate: int) -> float:
    """Seconds one RTU character (11 bits) takes on the line."""
    return BITS_PER_CHAR / baudrate


def silent_interval(baudrate: int) -> float:
    """The 3.5-character inter-frame silence in seconds; 1.75 ms above 19200 baud."""
    if baudrate > FIXED_INTERVAL_ABOVE_BAUD:
        return FIXED_SILENT_INTERVAL_S
    return 3.5 * char_time(baudrate)


def transaction_wire_time(request_bytes: int, response_bytes: int, baudrate: int) -> float:
    """Line time of one request/response pair: both frames plus a silent interval after each."""
    return (request_bytes + response_bytes) * char_time(baudrate) + 2 * silent_interval(baudrate)


@dataclass(slots=True)
class LineStats:
    """What the RTU server saw on its line (counters only grow)."""

    frames_received: int = 0
    """Frames with a good CRC, for any unit id."""
    answered: int = 0
    refused_in_silent_interval: int = 0
    """Frames that started inside the silent interval after the previous frame (emulation on)."""
    ignored: int = 0
    """Good frames for unit ids not served or silent."""
    bad_frames: int = 0
    """Frames with a bad CRC or cut short."""
    wire_time_s: float = 0.0
    """Total emulated line time of answered transactions (`transaction_wire_time`)."""
    last_wire_time_s: float = 0.0
    last_response_delay_s: float = 0.0
    """Emulated delay from the request's arrival to the answer's last character."""


class RtuSimServer:
    """A running Modbus RTU server on one serial port (an RS485 bus with several units)."""

    def __init__(
        self,
        devices: Mapping[int, SimulatedDevice],
        port_path: str,
        *,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        line_emulation: bool = False,
    ) -> None:
        """Prepare the server; `serve_rtu` creates and starts it."""
        if baudrate <= 0:
            raise ValueError(f"baud rate {baudrate} is not allowed (allowed: > 0)")
        self.devices = devices
        self.port_path = port_path
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.line_emulation = line_emulation
        self.stats = LineStats()
        self.char_time = char_time(baudrate)
        self.silent_interval = silent_interval(baudrate)
        self._serial: serial.Serial | None = None
        self._buffer = b""
        self._last_byte_at = 0.0
        self._line_busy_until = float("-inf")
        self._flush_handle: asyncio.TimerHandle | None = None
        self._pending: set[asyncio.TimerHandle] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Open the port and start answering."""
        self._loop = asyncio.get_running_loop()
        self._serial = serial.Serial(
            self.port_path,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            bytesize=8,
            timeout=0,
        )
        self._loop.add_reader(self._serial.fileno(), self._readable)

    async def stop(self) -> None:
        """Stop answering (pending answers are dropped) and close the port."""
        for handle in (*self._pending, self._flush_handle):
            if handle is not None:
                handle.cancel()
        self._pending.clear()
        if self._serial is not None and self._loop is not None:
            self._loop.remove_reader(self._serial.fileno())
            self._serial.close()
        self._serial = None

    async def __aenter__(self) -> RtuSimServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _readable(self) -> None:
        assert self._serial is not None and self._loop is not None
        try:
            data = os.read(self._serial.fileno(), 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # the other end of a pty closed; wait for it to come back
        if not data:
            return
        now = self._loop.time()
        if self._buffer and now - self._last_byte_at > _STALE_AFTER_S:
            self.stats.bad_frames += 1  # a frame cut short, then silence: a device drops it
            self._buffer = b""
        self._buffer += data
        self._last_byte_at = now
        self._parse(now, at_silence=False)
        if self._buffer:
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            self._flush_handle = self._loop.call_later(_STALE_AFTER_S, self._silence)

    def _silence(self) -> None:
        self._flush_handle = None
        if self._loop is not None:
            self._parse(self._loop.time(), at_silence=True)
        if self._buffer:
            self.stats.bad_frames += 1
            self._buffer = b""

    def _parse(self, now: float, *, at_silence: bool) -> None:
        while self._buffer:
            size = request_size(self._buffer)
            if size == 0:
                if not at_silence:
                    return  # unknown function code: the frame ends at the next silence
                size = len(self._buffer)
            if size is None or len(self._buffer) < size:
                return
            frame, self._buffer = self._buffer[:size], self._buffer[size:]
            if not crc_ok(frame):
                self.stats.bad_frames += 1
                self._buffer = b""  # resynchronise on the next silence, as a device does
                return
            self._handle(frame, now)

    def _handle(self, frame: bytes, now: float) -> None:
        self.stats.frames_received += 1
        request_end = now + len(frame) * self.char_time
        if self.line_emulation:
            starts_too_early = now < self._line_busy_until + self.silent_interval
            if starts_too_early:
                self.stats.refused_in_silent_interval += 1
                self._line_busy_until = max(self._line_busy_until, request_end)
                return
        self._line_busy_until = request_end
        unit_id = frame[0]
        device = self.devices.get(unit_id)
        if device is None or unit_id == 0 or faults_of(device).silent:
            self.stats.ignored += 1
            return
        faults = faults_of(device)
        answer_id = unit_id if faults.answer_as is None else faults.answer_as
        pdu = frame[1:-2]
        # two units at one id all act on the request and answer at once
        units = device.devices if isinstance(device, SharedUnitId) else [device]
        reply = _collide([with_crc(bytes([answer_id]) + answer_pdu(d, pdu)) for d in units])
        if faults.corrupt_crc:
            reply = reply[:-2] + bytes([reply[-2] ^ 0xFF, reply[-1] ^ 0x5A])
        if faults.truncate:
            reply = reply[: max(1, len(reply) // 2)]
        if faults.delay > 0:
            assert self._loop is not None
            self.stats.answered += 1
            self._pending = {h for h in self._pending if h.when() > now}
            self._pending.add(self._loop.call_at(now + faults.delay, self._write, reply))
            return
        self.stats.answered += 1
        wire = transaction_wire_time(len(frame), len(reply), self.baudrate)
        self.stats.wire_time_s += wire
        self.stats.last_wire_time_s = wire
        if not self.line_emulation:
            self.stats.last_response_delay_s = 0.0
            self._write(reply)
            return
        response_end = request_end + self.silent_interval + len(reply) * self.char_time
        self._line_busy_until = response_end
        self.stats.last_response_delay_s = response_end - now
        assert self._loop is not None
        self._pending = {h for h in self._pending if h.when() > now}
        self._pending.add(self._loop.call_at(response_end, self._write, reply))

    def _write(self, reply: bytes) -> None:
        if self._serial is not None:
            with contextlib.suppress(OSError):
                os.write(self._serial.fileno(), reply)


def _collide(replies: list[bytes]) -> bytes:
    """What the master receives when several units answer at once: identical frames look like
    one; different ones overlap into the OR of their bytes (a frame whose CRC fails)."""
    if all(r == replies[0] for r in replies):
        return replies[0]
    size = max(len(r) for r in replies)
    out = bytearray(size)
    for reply in replies:
        for i, byte in enumerate(reply):
            out[i] |= byte
    if crc_ok(bytes(out)):  # the overlap happened to be a valid frame: a receiver sees noise
        out[-1] ^= 0xFF
    return bytes(out)


async def serve_rtu(
    devices: Mapping[int, SimulatedDevice],
    port_path: str,
    baudrate: int = 9600,
    parity: str = "N",
    stopbits: int = 1,
    line_emulation: bool = False,
) -> RtuSimServer:
    """Start serving ``devices`` (unit id → device) as Modbus RTU on ``port_path``.

    ``port_path`` is a serial device or one end of a pty pair (``socat pty,link=A pty,link=B``).
    Returns the running server; ``await server.stop()`` closes it.
    """
    server = RtuSimServer(
        devices,
        port_path,
        baudrate=baudrate,
        parity=parity,
        stopbits=stopbits,
        line_emulation=line_emulation,
    )
    await server.start()
    return server
