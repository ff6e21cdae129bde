"""The RTU server through a socat pty pair, with pymodbus' serial client as the real peer."""

from __future__ import annotations

import asyncio
import os
import struct
import time

import pytest
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.framer.rtu import FramerRTU

from ampgate.codec import decode_field, load_map
from ampgate.sim import Evc2Simulator, Faults, FaultyDevice, ManualClock, ModbusExceptionCode
from ampgate.sim.rtu import serve_rtu, silent_interval, transaction_wire_time
from ampgate.sim.rtu_frames import crc16, crc_ok, with_crc

EVC2 = load_map("teltocharge-evc2")


def _client(path: str, baudrate: int, timeout: float = 0.5) -> AsyncModbusSerialClient:
    return AsyncModbusSerialClient(
        path, framer=FramerType.RTU, baudrate=baudrate, timeout=timeout, retries=0
    )


@pytest.mark.parametrize(
    "frame",
    [b"\x01\x03\x00\x00\x00\x2d", b"\x64\x04\x00\x34\x00\x02", b"", bytes(range(256))],
)
def test_crc_matches_pymodbus(frame: bytes) -> None:
    assert crc16(frame) == int.from_bytes(FramerRTU.compute_CRC(frame).to_bytes(2, "big"), "little")
    assert crc_ok(with_crc(frame)) or len(frame) < 2


async def test_pymodbus_client_reads_and_writes_over_rtu(
    pty_pair: tuple[str, str], clock: ManualClock
) -> None:
    client_path, server_path = pty_pair
    charger = Evc2Simulator(clock)
    server = await serve_rtu({1: charger}, server_path, baudrate=19200)
    client = _client(client_path, 19200)
    try:
        assert await client.connect()
        rr = await client.read_holding_registers(0, count=45, device_id=1)
        assert not rr.isError()
        assert rr.registers[24:26] == [52501, 1883]
        assert decode_field(EVC2, "serial_number", rr.registers[24:26]).value == 123456789
        assert rr.registers[9] == 21571
        assert not (await client.write_register(15, 16, device_id=1)).isError()
        assert not (await client.write_registers(19, [10, 8], device_id=1)).isError()
        refused = await client.write_register(15, 33, device_id=1)
        assert refused.isError() and refused.exception_code == 3
        read_only = await client.write_registers(0, [1], device_id=1)
        assert read_only.isError() and read_only.exception_code == 2
        rr = await client.read_holding_registers(15, count=6, device_id=1)
        assert rr.registers == [16, 0, 0, 0, 10, 8]
        assert server.stats.answered == 6
    finally:
        client.close()
        await server.stop()


async def test_faults_silent_unit_bad_crc_and_exception(
    pty_pair: tuple[str, str], clock: ManualClock
) -> None:
    client_path, server_path = pty_pair
    devices = {
        1: Evc2Simulator(clock),
        2: FaultyDevice(Evc2Simulator(clock), Faults(corrupt_crc=True)),
        3: FaultyDevice(Evc2Simulator(clock), Faults(exception=ModbusExceptionCode.DEVICE_BUSY)),
        4: FaultyDevice(),
    }
    server = await serve_rtu(devices, server_path, baudrate=19200)
    client = _client(client_path, 19200, timeout=0.2)
    try:
        assert await client.connect()
        busy = await client.read_holding_registers(0, count=2, device_id=3)
        assert busy.isError() and busy.exception_code == 6
        for silent_unit in (4, 9):
            started = time.monotonic()
            with pytest.raises(ModbusIOException):
                await client.read_holding_registers(0, count=2, device_id=silent_unit)
            assert time.monotonic() - started >= 0.19
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0, count=2, device_id=2)
        await asyncio.sleep(0.05)
        ok = await client.read_holding_registers(9, count=1, device_id=1)
        assert ok.registers == [21571]
        assert server.stats.ignored == 2
        assert server.stats.answered == 3  # busy, the corrupt answer, the good one
    finally:
        client.close()
        await server.stop()


async def test_line_emulation_response_time_is_the_wire_time_at_9600(
    pty_pair: tuple[str, str], clock: ManualClock
) -> None:
    client_path, server_path = pty_pair
    server = await serve_rtu({1: Evc2Simulator(clock)}, server_path, 9600, line_emulation=True)
    client = _client(client_path, 9600, timeout=1.0)
    try:
        assert await client.connect()
        samples = []
        for _ in range(3):
            await asyncio.sleep(2 * silent_interval(9600))
            started = time.monotonic()
            rr = await client.read_holding_registers(0, count=45, device_id=1)
            samples.append(time.monotonic() - started)
            assert not rr.isError()
        wire = transaction_wire_time(8, 5 + 2 * 45, 9600)
        assert server.stats.last_wire_time_s == pytest.approx(wire)
        # The answer arrives when its last character would: one trailing silent interval early.
        expected = wire - silent_interval(9600)
        assert server.stats.last_response_delay_s == pytest.approx(expected)
        assert expected == pytest.approx(0.1222, abs=0.001)
        best = min(samples)
        assert expected <= best <= expected + 0.03, samples
        assert server.stats.refused_in_silent_interval == 0
    finally:
        client.close()
        await server.stop()


def _read_frame(unit: int, address: int, count: int) -> bytes:
    return with_crc(struct.pack(">BBHH", unit, 3, address, count))


async def _read_answer(fd: int, size: int, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < size and time.monotonic() < deadline:
        try:
            data += os.read(fd, 256)
        except BlockingIOError:
            await asyncio.sleep(0.0005)
    return data


async def test_request_inside_the_silent_interval_is_refused_and_counted(
    pty_pair: tuple[str, str], clock: ManualClock
) -> None:
    client_path, server_path = pty_pair
    baudrate = 1200  # silent interval 32 ms: a margin for a loaded machine
    server = await serve_rtu({1: Evc2Simulator(clock)}, server_path, baudrate, line_emulation=True)
    fd = os.open(client_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        # Two frames back to back: the second starts while the first is still on the line.
        os.write(fd, _read_frame(1, 9, 1) + _read_frame(1, 9, 1))
        answer = await _read_answer(fd, 7, timeout=1.0)
        assert answer == with_crc(bytes([1, 3, 2]) + struct.pack(">H", 21571))
        assert server.stats.refused_in_silent_interval == 1
        # Right after the answer, inside its 3.5-character silence: refused, no answer.
        os.write(fd, _read_frame(1, 9, 1))
        assert await _read_answer(fd, 7, timeout=0.3) == b""
        assert server.stats.refused_in_silent_interval == 2
        # After a silent interval: answered again.
        await asyncio.sleep(2 * silent_interval(baudrate))
        os.write(fd, _read_frame(1, 9, 1))
        assert len(await _read_answer(fd, 7, timeout=1.0)) == 7
        assert server.stats.answered == 2
        assert server.stats.frames_received == 4
    finally:
        os.close(fd)
        await server.stop()


async def test_garbage_on_the_line_is_dropped_and_the_next_frame_answered(
    pty_pair: tuple[str, str], clock: ManualClock
) -> None:
    client_path, server_path = pty_pair
    server = await serve_rtu({1: Evc2Simulator(clock)}, server_path, 19200)
    fd = os.open(client_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        bad_crc = _read_frame(1, 9, 1)[:-1] + b"\x00"
        for junk in (bad_crc, b"\x01\x03\x00", b"\x01\x2b\x0e\x01\x00\xff\xff", bytes(range(40))):
            os.write(fd, junk)
            await asyncio.sleep(0.05)  # a silence: the server gives the fragment up
        assert await _read_answer(fd, 1, timeout=0.05) == b""
        os.write(fd, _read_frame(1, 9, 1))
        answer = await _read_answer(fd, 7, timeout=1.0)
        assert answer == with_crc(bytes([1, 3, 2]) + struct.pack(">H", 21571))
        assert server.stats.bad_frames >= 3
        assert server.stats.answered == 1
    finally:
        os.close(fd)
        await server.stop()


async def test_unsupported_function_answers_exception_1(
    pty_pair: tuple[str, str], clock: ManualClock
) -> None:
    client_path, server_path = pty_pair
    server = await serve_rtu({1: Evc2Simulator(clock)}, server_path, 19200)
    fd = os.open(client_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, with_crc(bytes([1, 0x11])))  # FC 17 report server id: not implemented
        assert await _read_answer(fd, 5, timeout=1.0) == with_crc(bytes([1, 0x91, 1]))
    finally:
        os.close(fd)
        await server.stop()
