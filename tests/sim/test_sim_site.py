"""The served site (`start_simulation` / `run_simulation`) and TCP fault injection."""

from __future__ import annotations

import asyncio
import time

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from ampgate.codec import decode_field, load_map
from ampgate.sim import (
    METER_UNIT_ID,
    Evc2Simulator,
    Faults,
    FaultyDevice,
    ManualClock,
    ModbusExceptionCode,
    Simulation,
    run_simulation,
    serve_tcp,
    start_simulation,
)


async def test_simulated_site_serves_chargers_and_meter_over_tcp() -> None:
    sim = await start_simulation(
        chargers=3, meter_model="eastron-sdm630", tcp_port=0, serial_port=None, speed=50
    )
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.tcp.port, timeout=1, retries=0)
    try:
        assert await client.connect()
        for unit in (1, 2, 3):
            rr = await client.read_holding_registers(9, count=1, device_id=unit)
            assert rr.registers == [21571]
            assert not (await client.write_register(15, 16, device_id=unit)).isError()
        await asyncio.sleep(0.1)  # 5 simulated seconds: past the cars' 2 s reaction
        rr = await client.read_holding_registers(3, count=3, device_id=2)
        assert rr.registers == [160, 160, 160]
        sdm = load_map("eastron-sdm630")
        field = sdm.field("current_l1")
        rr = await client.read_input_registers(field.address, count=2, device_id=METER_UNIT_ID)
        building = sim.meter.load_profile(sim.clock())
        amps = decode_field(sdm, field, rr.registers).value
        assert amps == pytest.approx(building[0] + 3 * 16.0, abs=0.5)  # one charger per phase
        assert any("unit 100: eastron-sdm630" in line for line in sim.describe())
    finally:
        client.close()
        await sim.stop()


async def test_run_simulation_serves_until_cancelled() -> None:
    started: list[Simulation] = []
    task = asyncio.create_task(run_simulation(1, None, 0, None, on_started=started.append))
    for _ in range(100):
        if started:
            break
        await asyncio.sleep(0.01)
    assert started and started[0].tcp is not None
    port = started[0].tcp.port
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    assert await client.connect()
    assert (await client.read_holding_registers(9, count=1, device_id=1)).registers == [21571]
    client.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_start_simulation_needs_somewhere_to_serve() -> None:
    with pytest.raises(ValueError, match="nothing to serve"):
        await start_simulation(1, None, None, None)


async def test_tcp_faults_silent_exception_and_dropped_connection(clock: ManualClock) -> None:
    dropper = FaultyDevice(Evc2Simulator(clock), Faults())
    devices = {
        1: Evc2Simulator(clock),
        2: FaultyDevice(),
        3: FaultyDevice(Evc2Simulator(clock), Faults(exception=ModbusExceptionCode.DEVICE_BUSY)),
        4: dropper,
    }
    server = await serve_tcp(devices)
    client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=0.2, retries=0)
    try:
        assert await client.connect()
        for silent in (2, 77):
            started = time.monotonic()
            with pytest.raises(ModbusIOException):
                await client.read_holding_registers(0, count=1, device_id=silent)
            assert time.monotonic() - started >= 0.19
        busy = await client.read_holding_registers(0, count=1, device_id=3)
        assert busy.isError() and busy.exception_code == 6
        assert (await client.read_holding_registers(9, count=1, device_id=4)).registers == [21571]
        dropper.faults.drop_connection = True
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        # MBAP: transaction 9, protocol 0, length 6, unit 4; PDU: FC 03, address 9, count 1.
        writer.write(bytes([0, 9, 0, 0, 0, 6, 4, 3, 0, 9, 0, 1]))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), timeout=1.0) == b""  # closed, no answer
        writer.close()
        assert server.dropped_connections >= 2  # the raw connection and the pymodbus client
    finally:
        client.close()
        await server.stop()
