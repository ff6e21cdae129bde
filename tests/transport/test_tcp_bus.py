"""TcpBus against real pymodbus TCP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.simulator import DataType, SimData, SimDevice

from ampgate.errors import ConfigError, TransportError
from ampgate.transport import ResultKind, TcpBus, open_bus, parse_address
from ampgate.transport.bus import BusSettings

from .conftest import open_fds, sim_device, start_tcp_server


async def test_reads_and_writes_round_trip_with_fc06_and_fc16(tcp_server):
    _, port = tcp_server
    async with TcpBus("127.0.0.1", port, timeout=0.5) as bus:
        holding = await bus.read_registers(1, 3, 10, 5)
        assert holding.kind is ResultKind.OK and holding.words == (10, 11, 12, 13, 14)
        assert holding.attempts == 1 and holding.rtt is not None and holding.rtt > 0
        assert (await bus.read_registers(2, 4, 0, 3)).words == (100, 101, 102)

        single = await bus.write_registers(1, 20, [4242])
        multi = await bus.write_registers(1, 30, [1, 2, 3])
        assert (single.function, single.kind) == (6, ResultKind.OK)
        assert (multi.function, multi.kind) == (16, ResultKind.OK)
        assert (await bus.read_registers(1, 3, 20, 1)).words == (4242,)
        assert (await bus.read_registers(1, 3, 30, 3)).words == (1, 2, 3)


async def test_exception_responses_carry_code_and_name(tcp_server):
    _, port = tcp_server
    async with TcpBus("127.0.0.1", port, timeout=0.5, retries=2) as bus:
        beyond = await bus.read_registers(2, 3, 60, 10)
        assert beyond.kind is ResultKind.EXCEPTION
        assert (beyond.exception_code, beyond.exception_name) == (2, "illegal data address")
        assert beyond.attempts == 1, "an illegal address is not retried"
        unknown_unit = await bus.read_registers(9, 3, 0, 1)
        assert (unknown_unit.exception_code, unknown_unit.exception_name) == (
            4,
            "server device failure",
        )
        assert "exception 2 (illegal data address)" in beyond.describe()
        with pytest.raises(TransportError, match="unit 2 FC03 @60x10: exception 2"):
            beyond.raise_for_kind()
        health = bus.health(2)
        assert health.counts["exception"] == 1 and health.exception_counts == {2: 1}
        assert health.online, "a unit answering with an exception is reachable"


async def test_units_behind_one_endpoint_share_one_connection(tcp_server):
    server, port = tcp_server
    async with TcpBus("127.0.0.1", port, timeout=0.5) as bus:
        results = await asyncio.gather(
            *(bus.read_registers(unit, 3, 0, 2) for unit in (1, 2, 1, 2, 1, 2))
        )
        assert [r.words[0] for r in results] == [0, 100, 0, 100, 0, 100]
        assert bus.connects == 1
        assert len(server.active_connections) == 1


async def test_out_of_range_values_never_reach_the_wire(tcp_server):
    _, port = tcp_server
    async with TcpBus("127.0.0.1", port, timeout=0.5) as bus:
        with pytest.raises(TransportError, match=r"values \[70000\] are outside 0–65535"):
            await bus.write_registers(1, 0, [70000])
        with pytest.raises(TransportError, match="count 126 is outside 1–125"):
            await bus.read_registers(1, 3, 0, 126)
        with pytest.raises(TransportError, match="function 5 is not one of"):
            await bus.read_registers(1, 5, 0, 1)
        assert bus.connects == 0, "nothing was sent"


async def test_restarted_server_is_reconnected_without_leaking_tasks_or_fds():
    tasks_before, fds_before = len(asyncio.all_tasks()), open_fds()
    server, port = await start_tcp_server([sim_device(1, [7, 8, 9])])
    bus = TcpBus("127.0.0.1", port, timeout=0.3, retries=0, reconnect_delay=0.05)
    assert (await bus.read_registers(1, 3, 0, 3)).words == (7, 8, 9)

    await server.shutdown()
    down = await bus.read_registers(1, 3, 0, 3)
    assert down.kind is ResultKind.CONNECTION
    assert not bus.connected

    server, _ = await start_tcp_server([sim_device(1, [4, 5, 6])], port=port)
    deadline = time.monotonic() + 3
    result = await bus.read_registers(1, 3, 0, 3)
    while result.kind is not ResultKind.OK and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        result = await bus.read_registers(1, 3, 0, 3)
    assert result.words == (4, 5, 6)
    assert bus.connects >= 2

    await bus.close()
    await server.shutdown()
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == tasks_before
    assert open_fds() == fds_before


async def test_closed_port_fails_fast_as_connection_with_backoff():
    server, port = await start_tcp_server([sim_device(1, [1])])
    await server.shutdown()  # nobody listens on the port now
    async with TcpBus("127.0.0.1", port, timeout=0.3, retries=1, reconnect_delay=0.5) as bus:
        start = time.monotonic()
        first = await bus.read_registers(1, 3, 0, 1)
        second = await bus.read_registers(1, 3, 0, 1)
        elapsed = time.monotonic() - start
        assert first.kind is second.kind is ResultKind.CONNECTION
        assert bus.connects == 1, "no new connect attempt inside the reconnect delay"
        assert "next connect attempt" in second.detail
        assert elapsed < 0.3
        assert bus.health(1).counts["connection"] == 2 and not bus.health(1).online


async def test_rtu_framing_over_tcp_to_a_serial_gateway():
    server, port = await start_tcp_server([sim_device(3, [11, 22, 33])], framer=FramerType.RTU)
    try:
        bus = open_bus(parse_address(f"rtu+tcp://127.0.0.1:{port}/3?baud=19200").bus, timeout=0.5)
        async with bus:
            result = await bus.read_registers(3, 3, 0, 3)
            assert result.words == (11, 22, 33)
            assert bus.settings.inter_request_gap == pytest.approx(3.5 * 11 / 19200)
    finally:
        await server.shutdown()


def test_bus_settings_reject_unbounded_policies():
    with pytest.raises(TransportError, match="timeout 0"):
        BusSettings(timeout=0)
    with pytest.raises(TransportError, match="retries -1"):
        BusSettings(retries=-1)


async def test_serial_gap_below_the_silent_interval_is_refused():
    from ampgate.transport import SerialBus

    # 8N1 is 10 bits per character: 3.5 × 10 / 9600 s; 8E1 is 11 bits.
    with pytest.raises(ConfigError, match=r"at 9600 baud; allowed: >= 3\.65 ms"):
        SerialBus("/dev/null-ampgate", baudrate=9600, inter_request_gap=0.001)
    with pytest.raises(ConfigError, match=r"allowed: >= 4\.01 ms"):
        SerialBus("/dev/null-ampgate", baudrate=9600, parity="E", inter_request_gap=0.004)
    bus = SerialBus("/dev/null-ampgate", baudrate=38400)
    assert bus.settings.inter_request_gap == 0.00175, "fixed 1.75 ms above 19200 baud"


async def test_busy_answer_is_retried_and_the_result_is_clean():
    answers = []

    async def busy_first(fc, start, address, count, registers, set_values):
        """Answer 'server device busy' to the first request only."""
        answers.append(fc)
        return ExcCodes.DEVICE_BUSY if len(answers) == 1 else None

    device = SimDevice(
        1,
        simdata=[SimData(0, values=[7, 8, 9], datatype=DataType.REGISTERS)],
        action=busy_first,
    )
    server, port = await start_tcp_server([device])
    try:
        async with TcpBus("127.0.0.1", port, timeout=0.5, retries=1, backoff=0.01) as bus:
            result = await bus.read_registers(1, 3, 0, 3)
            assert (result.kind, result.words, result.attempts) == (ResultKind.OK, (7, 8, 9), 2)
            assert result.exception_code is None and result.exception_name is None
            assert result.detail == "" and result.rtt is not None
            health = bus.health(1)
            assert health.counts["ok"] == 1 and health.counts["exception"] == 0
            assert health.attempts == 2 and health.exception_counts == {}
            assert len(answers) == 2
    finally:
        await server.shutdown()
