"""A raw Modbus TCP peer on 127.0.0.1 for the fuzz tests: it answers each request with the next
scripted behaviour (a malformed or foreign MBAP frame, random bytes, silence, a closed
connection) and, once the script is used up, with a correct reply written by hand."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

BEHAVIOURS = (
    "wrong_tid",
    "wrong_length",
    "truncated",
    "random",
    "huge_length",
    "other_unit",
    "other_function",
    "exception_of_other_function",
    "wrong_protocol",
    "wrong_byte_count",
    "short_registers",
    "silent",
    "close",
)


def register_value(address: int) -> int:
    return (1000 + address) & 0xFFFF


def good_reply(tid: int, unit: int, function: int, address: int, count: int) -> bytes:
    """The reply a correct device gives to FC 3/4 (registers ``1000 + address``)."""
    values = [register_value(address + i) for i in range(count)]
    pdu = bytes([function, 2 * count]) + struct.pack(f">{count}H", *values)
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


@dataclass
class Step:
    behaviour: str
    amount: int = 1
    """How far off: added to the tid/length/unit, or bytes kept when truncating."""
    noise: bytes = b""


@dataclass
class MbapPeer:
    script: list[Step] = field(default_factory=list)
    requests: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                self.requests += 1
                function = pdu[0]
                address, count = struct.unpack(">HH", pdu[1:5])
                reply = good_reply(tid, unit, function, address, count)
                if self.script:
                    step = self.script.pop(0)
                    if step.behaviour == "close":
                        break
                    reply = self._spoil(step, reply, tid, unit, function, address, count)
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    def _spoil(
        step: Step, reply: bytes, tid: int, unit: int, function: int, address: int, count: int
    ) -> bytes:
        b, k = step.behaviour, step.amount
        if b == "wrong_tid":
            return struct.pack(">H", (tid + k) & 0xFFFF) + reply[2:]
        if b == "wrong_length":
            length = struct.unpack(">H", reply[4:6])[0]
            return reply[:4] + struct.pack(">H", max(0, length + k) & 0xFFFF) + reply[6:]
        if b == "truncated":
            return reply[: k % len(reply)]
        if b == "random":
            return step.noise
        if b == "huge_length":
            return reply[:4] + b"\xff\xff" + reply[6:] + step.noise
        if b == "other_unit":
            return reply[:6] + bytes([(unit + k) & 0xFF]) + reply[7:]
        if b == "other_function":
            other = 4 if function == 3 else 3
            return reply[:7] + bytes([other]) + reply[8:]
        if b == "exception_of_other_function":
            pdu = bytes([(7 - function) | 0x80, 2])  # FC 3 <-> FC 4
            return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu
        if b == "wrong_protocol":
            return reply[:2] + struct.pack(">H", k & 0xFFFF or 1) + reply[4:]
        if b == "wrong_byte_count":
            return reply[:8] + bytes([(reply[8] + k) & 0xFF]) + reply[9:]
        if b == "short_registers":  # a well-formed reply with fewer registers than asked
            short = good_reply(tid, unit, function, address, max(0, count - k))
            return short
        return b""  # silent
