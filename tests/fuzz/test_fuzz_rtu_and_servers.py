"""Malformed RTU frames toward a SerialBus (socat pty pair), and random or malformed MBAP frames
toward ampgate's own servers (the simulator's TCP server, the EMS Modbus server): every request
ends cleanly, the bus reads again, the servers keep serving and nothing was written."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from ampgate.sim import Evc2Simulator, ManualClock, serve_tcp
from ampgate.sim.pty import virtual_serial_line
from ampgate.transport import RequestResult, SerialBus
from transport.rtu_responder import crc16

needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
RTU_BEHAVIOURS = ("bad_crc", "truncated", "wrong_unit", "random", "garbage_then_good", "silent")


def rtu_reply(unit: int, function: int, address: int, count: int) -> bytes:
    pdu = bytes([unit, function, 2 * count]) + struct.pack(
        f">{count}H", *((500 + address + i) & 0xFFFF for i in range(count))
    )
    return pdu + crc16(pdu)


def spoil(behaviour: str, reply: bytes, noise: bytes) -> bytes:
    if behaviour == "bad_crc":
        return reply[:-1] + bytes([reply[-1] ^ 0x5A])
    if behaviour == "truncated":
        return reply[: max(1, len(reply) - 1 - len(noise) % (len(reply) - 1))]
    if behaviour == "wrong_unit":
        pdu = bytes([(reply[0] + 1) & 0xFF]) + reply[1:-2]
        return pdu + crc16(pdu)
    if behaviour == "random":
        return noise
    if behaviour == "garbage_then_good":  # garbage before the frame: not a valid answer
        return (noise or b"\x00") + reply
    return b""


async def rtu_scenario(a: str, b: str, script: list[tuple[str, bytes]]) -> None:
    fd = os.open(b, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()
    pending = list(script)
    buffer = bytearray()

    def readable() -> None:
        try:
            buffer.extend(os.read(fd, 512))
        except BlockingIOError:
            return
        while len(buffer) >= 8:
            frame = bytes(buffer[:8])
            del buffer[:8]
            unit, function, address, count = struct.unpack(">BBHH", frame[:6])
            reply = rtu_reply(unit, function, address, count)
            if pending:
                behaviour, noise = pending.pop(0)
                reply = spoil(behaviour, reply, noise)
            if reply:
                os.write(fd, reply)

    loop.add_reader(fd, readable)
    bus = SerialBus(a, baudrate=19200, timeout=0.15, retries=0, quiet_after_timeout=0.03)
    try:
        for behaviour, _ in script:
            result = await asyncio.wait_for(bus.read_registers(3, 3, 20, 3), 2)
            assert isinstance(result, RequestResult), (behaviour, result)
            if behaviour == "garbage_then_good":  # the framer may find the frame after it
                assert not result.ok or result.words == (520, 521, 522), (behaviour, result)
            else:
                assert not result.ok, (behaviour, result)
        result = await asyncio.wait_for(bus.read_registers(3, 3, 20, 3), 2)
        assert result.ok and result.words == (520, 521, 522), (script, result)
    finally:
        await bus.close()
        loop.remove_reader(fd)
        os.close(fd)


@needs_socat
@settings(max_examples=8, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(RTU_BEHAVIOURS), st.binary(min_size=1, max_size=12)),
        min_size=1,
        max_size=3,
    )
)
def test_malformed_rtu_answers_end_requests_cleanly_and_the_bus_reads_again(
    tmp_path_factory: pytest.TempPathFactory, script: list[tuple[str, bytes]]
) -> None:
    with virtual_serial_line(tmp_path_factory.mktemp("pty")) as (a, b):
        asyncio.run(rtu_scenario(a, b, script))


# ---------------------------------------------------------------- ampgate's servers


class CountingDevice:
    """A simulated EVC2 that counts the writes it receives."""

    def __init__(self) -> None:
        self.inner = Evc2Simulator(ManualClock())
        self.writes = 0

    def read(self, function: int, address: int, count: int) -> object:
        return self.inner.read(function, address, count)

    def write(self, address: int, values: list[int]) -> object:
        self.writes += 1
        return self.inner.write(address, values)


WRITE_FUNCTIONS = (5, 6, 15, 16, 22, 23)
"""Function codes that write: a well-formed frame with one of them is a real write."""


def mbap(tid: int, unit: int, pdu: bytes, length_delta: int = 0, protocol: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1 + length_delta, unit) + pdu


def malformed_frames() -> st.SearchStrategy[bytes]:
    write16 = b"\x10\x00\x64\x00\x04\x08" + b"\x00\x78" * 3 + b"\x00\x3c"  # a limit of 12 A, 60 s
    return st.one_of(
        st.binary(min_size=1, max_size=64),
        st.builds(lambda n: mbap(1, 1, write16)[:n], st.integers(1, 18)),  # truncated write
        st.builds(lambda d: mbap(2, 1, write16, length_delta=d), st.integers(1, 200)),
        st.builds(lambda p: mbap(3, 1, write16, protocol=p), st.integers(1, 0xFFFF)),
        # any function code but the writes, with a read's body (malformed for most codes)
        st.builds(
            lambda fc: mbap(4, 1, bytes([fc]) + b"\x00\x00\x00\x01"),
            st.integers(0, 255).filter(lambda fc: fc not in WRITE_FUNCTIONS),
        ),
        st.just(mbap(5, 1, b"\x03\x00\x00\xff\xff")),  # count 65535
        # a well-formed write, but to another unit id (0 is the broadcast address)
        st.builds(lambda u: mbap(8, u, write16), st.integers(0, 255).filter(lambda u: u != 1)),
        st.just(struct.pack(">HHHB", 6, 0, 0xFFFF, 1) + b"\x03"),  # huge length
        st.just(struct.pack(">HHHB", 7, 0, 0, 1)),  # length 0
    )


async def send_garbage(port: int, frames: list[bytes]) -> None:
    loop = asyncio.get_running_loop()
    for frame in frames:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, frame)
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(loop.sock_recv(sock, 512), 0.05)
        finally:
            sock.close()


async def client_reads(port: int, unit: int, address: int, count: int) -> list[int]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    await client.connect()
    try:
        answer = await client.read_holding_registers(address, count=count, device_id=unit)
        assert not answer.isError(), answer
        return list(answer.registers)
    finally:
        client.close()


@settings(max_examples=10, deadline=None)
@given(st.lists(malformed_frames(), min_size=1, max_size=4))
def test_garbage_to_the_simulator_server_changes_nothing_and_it_keeps_serving(
    frames: list[bytes],
) -> None:
    async def run() -> None:
        device = CountingDevice()
        before = device.inner.read(3, 0, 45)
        server = await serve_tcp({1: device})
        try:
            await send_garbage(server.port, frames)
            assert await client_reads(server.port, 1, 9, 1) == [21571]
            assert device.writes == 0
            assert device.inner.read(3, 0, 45) == before
            await send_garbage(server.port, [mbap(9, 1, b"\x06\x00\x0f\x00\x06")])
            assert device.writes == 1, "a real write is counted (the check above can fail)"
        finally:
            await server.stop()

    asyncio.run(run())


async def ems_scenario(frames_list: list[list[bytes]]) -> None:
    from ampgate.config import check_config_text
    from ampgate.gateway.loop import Gateway
    from ampgate.interfaces.control import ControlChannel
    from ampgate.interfaces.ems import BASE, NONE, EmsServer
    from gateway.simsite import start_site
    from interfaces.test_ems import ems_site_text

    site = await start_site(1, limit=32)
    config, problems = check_config_text(ems_site_text(site.config_text()), "ems.toml")
    assert config is not None, problems
    channel = ControlChannel()
    gateway = Gateway(config, control=channel)
    server = EmsServer(config, gateway.store, channel)
    await server.start()
    try:
        for frames in frames_list:
            await send_garbage(server.port, frames)
            assert await client_reads(server.port, 1, BASE, 4) == [NONE, NONE, NONE, 0]
            assert channel.take() == [], frames
        write16 = b"\x10\x00\x64\x00\x04\x08" + b"\x00\x78" * 3 + b"\x00\x3c"
        await send_garbage(server.port, [mbap(9, 1, write16)])
        assert len(channel.take()) == 1, "a real write is queued (the check above can fail)"
    finally:
        await server.stop()
        await site.stop()


@settings(max_examples=1, deadline=None)
@given(st.lists(st.lists(malformed_frames(), min_size=1, max_size=4), min_size=25, max_size=25))
def test_garbage_to_the_ems_server_queues_no_limit_and_it_keeps_serving(
    frames_list: list[list[bytes]],
) -> None:
    asyncio.run(ems_scenario(frames_list))
