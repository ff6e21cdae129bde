"""The EMS Modbus TCP server end to end: an independent Modbus client reads the documented map
and writes a limit; the gateway lowers the simulated chargers within two cycles and raises them
again when the limit expires (ampgate.interfaces.ems)."""

from __future__ import annotations

import asyncio
import time

import pytest
from pymodbus.client import AsyncModbusTcpClient

from ampgate.config import check_config_text
from ampgate.gateway.loop import Gateway
from ampgate.interfaces.control import ControlChannel
from ampgate.interfaces.ems import BASE, MAP_VERSION, NONE, EmsServer
from gateway.simsite import start_site


def ems_site_text(text: str) -> str:
    """The simulated site with the EMS allowed on the main fuse and its server on."""
    text = text.replace("fallback_load = 8\n", 'fallback_load = 8\nexternal_limits = ["ems"]\n')
    return text + '[ems]\nlisten = "127.0.0.1:0"\n'


@pytest.fixture
async def ems_site():
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0))
    config, problems = check_config_text(ems_site_text(site.config_text()), "ems.toml")
    assert config is not None, problems
    channel = ControlChannel()
    gateway = Gateway(config, control=channel)
    server = EmsServer(config, gateway.store, channel)
    await gateway.start()
    await server.start()
    client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=1, retries=0)
    await client.connect()
    try:
        yield site, gateway, client
    finally:
        client.close()
        await server.stop()
        await gateway.shutdown()
        await site.stop()


async def cycles(gateway: Gateway, n: int) -> None:
    for _ in range(n):
        await gateway.cycle()
        await asyncio.sleep(0.05)


def setpoints(gateway: Gateway) -> dict[str, int | None]:
    return {name: rt.setpoint for name, rt in gateway.chargers.items()}


async def test_the_map_reads_version_measurements_and_limits(ems_site):
    site, gateway, client = ems_site
    await cycles(gateway, 8)
    version = await client.read_holding_registers(0, count=1, device_id=1)
    assert version.registers == [MAP_VERSION]
    held = await client.read_holding_registers(BASE, count=4, device_id=1)
    assert held.registers == [NONE, NONE, NONE, 0]  # no EMS limit
    measured = await client.read_input_registers(BASE, count=7, device_id=1)
    truth = site.true_currents()
    for reg, amps in zip(measured.registers[:3], truth, strict=True):
        assert abs(reg / 10 - amps) < 3.0  # the meter's reading, 0.1 A, one cycle old
    assert measured.registers[3:6] == [320, 320, 320]  # the fuse
    assert measured.registers[6] == 2  # both cars charging
    beyond = await client.read_input_registers(BASE + 10, count=1, device_id=1)
    assert beyond.isError()  # one group: nothing at the next base


async def test_a_limit_lowers_the_chargers_within_two_cycles_and_expires_back(ems_site):
    _, gateway, client = ems_site
    await cycles(gateway, 10)
    before = setpoints(gateway)
    assert all(a is not None and a >= 10 for a in before.values()), before
    wrote = await client.write_registers(BASE, [120, 120, 120, 2], device_id=1)
    assert not wrote.isError()
    assert (await client.read_holding_registers(BASE, count=4, device_id=1)).registers == [
        120,
        120,
        120,
        2,
    ]
    await cycles(gateway, 2)
    lowered = setpoints(gateway)
    # 12 A minus about 4 A of building: room for one car at 6-8 A, never both above it
    assert sum(a or 0 for a in lowered.values()) <= 12 - 4 + 0.5, lowered
    assert gateway.events.counts.get("external_limit_set") == 1
    effective = await client.read_input_registers(BASE + 3, count=3, device_id=1)
    assert effective.registers == [120, 120, 120]
    deadline = time.monotonic() + 6
    while gateway.events.counts.get("external_limit_expired", 0) == 0:
        assert time.monotonic() < deadline, "the limit never expired"
        await cycles(gateway, 1)
    await cycles(gateway, 10)
    after = setpoints(gateway)
    assert sum(a or 0 for a in after.values()) > sum(a or 0 for a in lowered.values()), after
    held = await client.read_holding_registers(BASE, count=4, device_id=1)
    assert held.registers[:3] == [NONE, NONE, NONE]


@pytest.mark.parametrize(
    ("address", "values"),
    [
        (BASE, [3300, 3300, 3300, 60]),  # 330 A: above the fuse
        (BASE, [30, 120, 120, 60]),  # 3 A: below a charger's minimum
        (BASE, [120, 120, 120, 0]),  # valid for 0 s
        (0, [2]),  # the map version
    ],
)
async def test_an_out_of_range_write_is_exception_03_and_changes_nothing(ems_site, address, values):
    _, gateway, client = ems_site
    await cycles(gateway, 4)
    before = setpoints(gateway)
    answer = await client.write_registers(address, values, device_id=1)
    assert answer.isError() and answer.exception_code == 3
    await cycles(gateway, 2)
    assert "external_limit_set" not in gateway.events.counts
    assert (await client.read_holding_registers(BASE, count=4, device_id=1)).registers == [
        NONE,
        NONE,
        NONE,
        0,
    ]
    assert (await client.read_holding_registers(0, count=1, device_id=1)).registers == [1]
    assert all((setpoints(gateway)[n] or 0) >= (before[n] or 0) for n in before)
