"""Devices over a real pymodbus TCP server holding EVC2 and SDM630 registers."""

from __future__ import annotations

import struct

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ampgate.codec import load_map
from ampgate.devices import Charger, DeviceRequestError, Meter, ModbusDevice
from ampgate.errors import DeviceError, EncodeError
from ampgate.transport import TcpBus

EVC2_WORDS = [
    230,
    231,
    229,  # voltages
    160,
    155,
    0,  # currents ×10
    0,  # evse_status: charging
    100,
    0,  # evse_status_time, low word first
    21571,  # evse_id "TC"
    1,
    1,
    32,
    6,
    6,  # 3ph possible, phase change, amp limit, phase connected, phase to use
    16,  # amps_to_use
    0,
    0,
    0,  # stop, authorize, socket lock
    30,
    6,  # communication timeout, failsafe current
    0,
    0,  # reboot, require authorization
    1234,  # product code
    52501,
    1883,  # serial 123456789, low word first
    20206,  # firmware
    3,  # charge point state: charging
    30,
    10,
    1,  # max power from grid, user max current, lock status
    315,  # temperature ×10
    0,  # ocpp
    4,  # iec state C2
    0b10,  # warning: temperature
    0b1000_0000_0000,  # error: undocumented bit 11
    6,  # current limit cause: load balance
    1,  # max supported power
    7360,  # active power W
    1234,  # session energy /100 kWh
    600,  # session duration
    57920,
    1,
    0,
    0,  # lifetime 123456 /100 kWh, lowest word first
]
assert len(EVC2_WORDS) == 45


def f32(*values: float) -> list[int]:
    return list(struct.unpack(f">{2 * len(values)}H", struct.pack(f">{len(values)}f", *values)))


async def clamp_setpoint_to_ten(fc, start, address, count, registers, set_values):
    """A charger that applies its own 10 A user limit to the setpoint register."""
    if set_values is not None and address == 15:
        set_values[0] = min(set_values[0], 10)
    return None


async def busy_on_amps(fc, start, address, count, registers, set_values):
    if set_values is not None:
        return ExcCodes.DEVICE_BUSY
    return None


@pytest.fixture
async def site():
    sdm = [0] * 80
    sdm[0:18] = f32(230.1, 231.2, 229.3, 10.5, 11.0, 0.25, 2400.0, 2500.0, 50.0)
    sdm[0x34:0x36] = f32(4950.0)
    sdm[0x46:0x4C] = f32(50.02, 1234.5, 6.5)
    devices = [
        SimDevice(1, simdata=[SimData(0, values=list(EVC2_WORDS), datatype=DataType.REGISTERS)]),
        SimDevice(
            2,
            simdata=[SimData(0, values=list(EVC2_WORDS), datatype=DataType.REGISTERS)],
            action=clamp_setpoint_to_ten,
        ),
        SimDevice(
            3,
            simdata=[SimData(0, values=list(EVC2_WORDS), datatype=DataType.REGISTERS)],
            action=busy_on_amps,
        ),
        SimDevice(7, simdata=[SimData(0, values=sdm, datatype=DataType.REGISTERS)]),
    ]
    server = ModbusTcpServer(devices, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    bus = TcpBus("127.0.0.1", port, timeout=0.3, retries=1, backoff=0.01)
    yield bus
    await bus.close()
    await server.shutdown()


async def test_charger_fast_read_decodes_the_evc2_map(site):
    charger = Charger(site, 1, load_map("teltocharge-evc2"), name="c1")
    fast = await charger.read_fast()
    assert fast.voltages == (230, 231, 229)
    assert fast.currents == (16.0, 15.5, 0.0)
    assert fast.amps_to_use == 16 and fast.active_power == 7360
    assert fast.warnings == {"temperature warning"}
    assert fast.errors == {"unknown bit 11"}
    assert fast.readings["evse_status"].raw == 0


async def test_charger_slow_read_has_identity_settings_and_energy(site):
    charger = Charger(site, 1, load_map("teltocharge-evc2"))
    slow = await charger.read_slow()
    assert (slow.serial_number, slow.firmware_version, slow.product_code) == (
        123456789,
        20206,
        1234,
    )
    assert (slow.communication_timeout, slow.failsafe_current) == (30, 6)
    assert slow.session_energy_kwh == pytest.approx(12.34)
    assert slow.lifetime_energy_kwh == pytest.approx(1234.56)


async def test_read_plans_are_cached(site):
    charger = Charger(site, 1, load_map("teltocharge-evc2"))
    assert charger.plan(("amps_to_use",)) is charger.plan(("amps_to_use",))


async def test_set_current_writes_fc06_and_verifies(site):
    charger = Charger(site, 1, load_map("teltocharge-evc2"))
    outcome = await charger.set_current(8)
    assert outcome.result.function == 6 and outcome.words == (8,)
    assert outcome.read_back is not None and outcome.read_back.value == 8
    assert (await charger.read_fields(["amps_to_use"]))["amps_to_use"].value == 8


async def test_out_of_range_setpoint_never_reaches_the_wire(site):
    charger = Charger(site, 1, load_map("teltocharge-evc2"))
    attempts_before = site.health(1).attempts
    for bad in (5, 33, 7.5, -1):
        with pytest.raises(EncodeError, match="amps_to_use"):
            await charger.set_current(bad)
    assert site.health(1).attempts == attempts_before


async def test_read_back_mismatch_is_a_device_error(site):
    charger = Charger(site, 2, load_map("teltocharge-evc2"), name="clamped")
    expected = r"'clamped': wrote amps_to_use=16 .*reads back words \[10\]"
    with pytest.raises(DeviceError, match=expected):
        await charger.set_current(16)


async def test_refused_write_names_device_and_exception(site):
    charger = Charger(site, 3, load_map("teltocharge-evc2"), name="busy")
    expected = r"'busy': writing amps_to_use=6 failed.*server device busy"
    with pytest.raises(DeviceRequestError, match=expected):
        await charger.set_current(6)


async def test_program_watchdog_writes_both_and_validates_first(site):
    charger = Charger(site, 1, load_map("teltocharge-evc2"))
    failsafe, timeout = await charger.program_watchdog(60, 0)
    assert failsafe.read_back.value == 0 and timeout.read_back.value == 60
    attempts = site.health(1).attempts
    with pytest.raises(EncodeError, match="communication_timeout"):
        await charger.program_watchdog(601, 6)
    assert site.health(1).attempts == attempts, "nothing written when one value is bad"


async def test_identify_reports_expected_and_found(site):
    evc2 = load_map("teltocharge-evc2")
    good = await ModbusDevice(site, 1, evc2, name="c1").identify()
    assert good.matches and good.checks[0].found == 21571
    wrong = await ModbusDevice(site, 7, evc2, name="not-a-charger").identify()
    assert not wrong.matches
    assert "'not-a-charger' is NOT a teltocharge-evc2: evse_id expected 21571, found" in (
        wrong.describe()
    )


async def test_meter_measurement_is_normalised(site):
    meter = Meter(site, 7, load_map("eastron-sdm630"), name="grid")
    m = await meter.read_measurement()
    assert m.voltages == pytest.approx((230.1, 231.2, 229.3))
    assert m.currents == pytest.approx((10.5, 11.0, 0.25))
    assert m.powers == pytest.approx((2400.0, 2500.0, 50.0))
    assert m.power_total == pytest.approx(4950.0) and m.frequency == pytest.approx(50.02)
    assert m.energy_import_kwh == pytest.approx(1234.5)
    assert m.energy_export_kwh == pytest.approx(6.5)


async def test_unreachable_device_raises_with_its_name(site):
    meter = Meter(site, 99, load_map("eastron-sdm630"), name="ghost")
    with pytest.raises(DeviceRequestError, match=r"'ghost': reading .* exception 4"):
        await meter.read_measurement()
