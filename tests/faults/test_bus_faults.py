"""Bus faults end to end: over RS485 (the simulators behind a socat pty pair, real RTU framing)
a unit answering with another unit id and two units set to the same id; over TCP a peer that
accepts the connection and never answers. Each test checks the fuse, every write the simulators
received, the event and the metric, and recovery without a restart."""

from __future__ import annotations

import asyncio
import time

import pytest

from ampgate.gateway.loop import Gateway
from ampgate.sim import ElectricVehicle, Evc2Simulator, FaultyDevice, serve_rtu
from ampgate.sim.device import SharedUnitId
from gateway.simsite import SimSite, start_site

from .faultsite import Truth, assert_writes_clean, cycles, metric, setpoints, unit, writes

REACTION_S = 0.5


def _rtu_text(site: SimSite, port: str) -> str:
    """The site file of ``site`` with its bus moved to the RS485 line at ``port``."""
    text = site.config_text(cycle_seconds=0.3, device_stale_seconds=1.5, meter_stale_seconds=1.0)
    tcp = (
        f'[buses.lan]\nkind = "tcp"\nhost = "127.0.0.1"\nport = {site.server.port}\ntimeout = 0.2\n'
    )
    assert tcp in text
    serial = f'[buses.lan]\nkind = "serial"\nport = "{port}"\nbaudrate = 38400\ntimeout = 0.1\n'
    return text.replace(tcp, serial)


def _config(text: str):
    from ampgate.config import check_config_text

    config, problems = check_config_text(text, "rtu-site.toml")
    assert config is not None, problems
    return config


def _cars(n: int) -> list[ElectricVehicle | None]:
    return [ElectricVehicle(phases=3, max_current=16, reaction_delay=REACTION_S) for _ in range(n)]


async def _c2_faulted_then_back(
    socat_pair, attribute: str, value: object, result: str | None, good: object
) -> None:
    """On an RS485 line with c1, c2 and the meter: c2's frames go bad (``Faults.attribute =
    value``) for 8 cycles, then good again (``= good``). While they are bad c2 is offline
    (event, metric, a failed request counted as ``result``), c1 and the meter are read on, no
    write to c1 is
    refused (nothing was taken from c2's frames); after, c2 is back and reprogrammed, the cars
    charge and the fuse held."""
    a, b = socat_pair
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0), cars=_cars(2))
    rtu = await serve_rtu(site.server.devices, b, baudrate=38400)
    gateway = Gateway(_config(_rtu_text(site, a)))
    truth = Truth()
    try:
        await gateway.start()
        await cycles(gateway, 10, site, truth)
        assert gateway.chargers["c2"].online
        before = site.chargers["c1"].requests
        setattr(site.faults["c2"], attribute, value)
        faulted = time.monotonic()
        await cycles(gateway, 8, site, truth)
        assert not gateway.chargers["c2"].online
        assert gateway.meters["grid"].online and gateway.chargers["c1"].online
        assert site.chargers["c1"].requests > before
        assert metric(gateway, "ampgate_device_up", device="c2") == 0
        assert gateway.events.counts.get("device_offline", 0) >= 1
        failed = {
            r: metric(gateway, "ampgate_modbus_requests_total", device="c2", result=r) or 0
            for r in ("timeout", "crc", "exception", "connection")
        }
        assert sum(failed.values()) >= 1, failed
        if result is not None:
            assert failed[result] >= 1, failed
        # nothing is taken from c2's frames for c1 or the meter: c1's registers hold what was
        # written, and the meter keeps its readings
        assert all(w.answer is None for w in writes(site, "c1", faulted))
        assert gateway.meters["grid"].measurement is not None
        setattr(site.faults["c2"], attribute, good)
        await cycles(gateway, 10, site, truth)
        assert gateway.chargers["c2"].online
        assert site.chargers["c2"].image.raw("communication_timeout") == 2
        assert min(setpoints(site).values()) >= 6
        assert truth.over(site.limit, faulted + 2) == []
        assert_writes_clean(site, max_amps=16)
    finally:
        await gateway.shutdown(write=False)
        await rtu.stop()
        await site.stop()


async def test_a_unit_answering_with_another_unit_id_is_not_taken_for_a_reading(socat_pair):
    # c2's answers carry unit id 1 (a misconfigured gateway or a unit answering for another)
    await _c2_faulted_then_back(socat_pair, "answer_as", 1, None, good=None)


async def test_two_units_with_the_same_id_collide_and_the_fuse_holds(socat_pair):
    """A second EVC2 left at unit id 2: both act on every write, their answers collide (bad
    CRC). ampgate sees c2 fail, assumes the worst for it, and the meter keeps the fuse."""
    a, b = socat_pair
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0), cars=_cars(2))
    twin = Evc2Simulator(time.monotonic, serial_number=987654321)
    twin.plug_in(ElectricVehicle(phases=3, max_current=16, reaction_delay=REACTION_S))
    site.meter.attach(twin)
    twin_unit = FaultyDevice(twin)
    devices = dict(site.server.devices)
    rtu = await serve_rtu(devices, b, baudrate=38400)
    gateway = Gateway(_config(_rtu_text(site, a)))
    truth = Truth()
    try:
        await gateway.start()
        await cycles(gateway, 10, site, truth)
        devices[2] = SharedUnitId([unit(site, "c2"), twin_unit])
        doubled = time.monotonic()
        await cycles(gateway, 15, site, truth)
        crc = metric(gateway, "ampgate_modbus_requests_total", device="c2", result="crc") or 0
        assert crc >= 1
        assert gateway.events.counts.get("device_offline", 0) >= 1
        # whatever either got written, the fuse holds after the reaction window
        assert truth.over(site.limit, doubled + 1.0 + REACTION_S) == []
        for record in twin_unit.writes:
            assert record.answer is None and record.address in (14, 15, 16, 19, 20), record
        devices[2] = unit(site, "c2")
        site.meter.chargers.remove(twin)
        await cycles(gateway, 10, site, truth)
        assert gateway.chargers["c2"].online
        assert min(setpoints(site).values()) >= 6
        assert_writes_clean(site, max_amps=16)
    finally:
        await gateway.shutdown(write=False)
        await rtu.stop()
        await site.stop()


async def _black_hole() -> tuple[asyncio.Server, int, list[bytes]]:
    """A TCP peer that accepts every connection, reads what comes and never answers."""
    received: list[bytes] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(4096):
                received.append(data)
        finally:
            writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], received


async def test_a_tcp_peer_that_accepts_and_never_answers_costs_only_its_timeout():
    # 63 A: room for the unreachable c3 at its factory 32 A plus the building and two cars
    site = await start_site(2, limit=63, building=(4.0, 4.0, 4.0), cars=_cars(2))
    hole, port, received = await _black_hole()
    text = site.config_text().replace(
        "[dlm]\n",
        f'[buses.dead]\nkind = "tcp"\nhost = "127.0.0.1"\nport = {port}\ntimeout = 0.2\n'
        '[chargers.c3]\nbus = "dead"\nunit_id = 1\ngroup = "main"\nrotation = "L1L2L3"\n'
        "failsafe_current = 6\n[dlm]\n",
    )
    gateway = Gateway(_config(text))
    truth = Truth()
    try:
        await gateway.start()
        began = time.monotonic()
        await cycles(gateway, 15, site, truth)
        elapsed = time.monotonic() - began
        assert elapsed < 15 * 0.2 * 2  # the silent peer never stalls the cycle
        assert received, "the peer got the requests"
        assert not gateway.chargers["c3"].online
        assert gateway.chargers["c1"].online and gateway.chargers["c2"].online
        assert min(setpoints(site).values()) >= 6  # the others are controlled
        assert metric(gateway, "ampgate_device_up", device="c3") == 0
        timeouts = metric(gateway, "ampgate_modbus_requests_total", device="c3", result="timeout")
        assert (timeouts or 0) >= 1
        # never programmed, c3 may be at its factory 32 A: the others leave room for that
        assert sum(setpoints(site).values()) + 32 + 4 <= site.limit
        assert truth.over(site.limit) == []
        assert_writes_clean(site, max_amps=16)
        assert gateway.counters.last_cycle_seconds < 0.2 + 0.2
    finally:
        await gateway.shutdown(write=False)
        hole.close()
        await site.stop()


BAD_FRAMES = {
    "corrupt_crc": ("corrupt_crc", True, "crc"),
    "truncated": ("truncate", True, None),
    "late": ("delay", 0.15, "timeout"),
}


@pytest.mark.parametrize("fault", list(BAD_FRAMES))
async def test_bad_frames_on_the_line_are_no_reading_and_the_unit_recovers(socat_pair, fault):
    """c2 answers with a bad CRC, a frame cut short, or after the timeout (its answer arrives
    while the next request is on the line): no reading is taken from it, c2 is offline while it
    lasts, c1 and the meter are read on, and c2 is back (programmed) once its frames are good."""
    attribute, value, result = BAD_FRAMES[fault]
    await _c2_faulted_then_back(socat_pair, attribute, value, result, good=type(value)())


async def test_connection_resets_are_reconnected_and_control_resumes():
    """The TCP gateway resets every connection for a second (``drop_connection``): every device
    behind it is offline meanwhile, then reconnected and controlled without a restart."""
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0), cars=_cars(2))
    gateway = Gateway(site.config())
    truth = Truth()
    try:
        await gateway.start()
        await cycles(gateway, 8, site, truth)
        site.faults["c1"].drop_connection = True
        faulted = time.monotonic()
        await cycles(gateway, 5, site, truth)
        assert site.server.dropped_connections >= 1
        assert not gateway.chargers["c1"].online
        conn = metric(gateway, "ampgate_modbus_requests_total", device="c1", result="connection")
        dropped = (conn or 0) + (
            metric(gateway, "ampgate_modbus_requests_total", device="c1", result="timeout") or 0
        )
        assert dropped >= 1
        site.faults["c1"].drop_connection = False
        await cycles(gateway, 12, site, truth)
        assert all(rt.online for rt in gateway.chargers.values())
        assert gateway.meters["grid"].online
        assert metric(gateway, "ampgate_device_up", device="c1") == 1
        assert gateway.events.counts.get("device_offline", 0) >= 1
        assert min(setpoints(site).values()) >= 6
        assert truth.over(site.limit, faulted + 2) == []
        assert_writes_clean(site, max_amps=16)
    finally:
        await gateway.shutdown(write=False)
        await site.stop()
