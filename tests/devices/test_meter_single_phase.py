"""Single-phase meters over a real pymodbus TCP server serving images built from their maps."""

from __future__ import annotations

import struct

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ampgate.codec import RegisterMap, load_map
from ampgate.devices import Meter
from ampgate.sim import RegisterImage
from ampgate.transport import TcpBus

SDM120_VALUES = {
    "voltage_l1": 231.5,
    "current_l1": 7.25,
    "power_l1": 1650.0,
    "frequency": 49.98,
    "energy_import": 812.5,
    "energy_export": 3.25,
}
# ABB B21 has both registers: the meter must report its own total, not power_l1.
ABB_B21_VALUES = {"voltage_l1": 229.0, "current_l1": 4.0, "power_l1": 900.0, "power_total": 910.0}


def served_image(unit_id: int, rmap: RegisterMap, values: dict[str, float]) -> SimDevice:
    """A pymodbus device serving ``values`` where ``rmap`` places them (zeros in between)."""
    image = RegisterImage(rmap)
    for name, value in values.items():
        image.set(name, value)
    names = [f.name for f in rmap.fields if rmap.function_of(f) == rmap.model.default_function]
    start = min(rmap.field(n).address for n in names)
    end = max(rmap.field(n).address + rmap.field(n).words for n in names)
    words = [0] * (end - start)
    for name in names:
        field = rmap.field(name)
        words[field.address - start : field.address - start + field.words] = image.words_of(name)
    return SimDevice(unit_id, simdata=[SimData(start, values=words, datatype=DataType.REGISTERS)])


@pytest.fixture
async def bus():
    sdm120, abb_b21 = load_map("eastron-sdm120"), load_map("abb-b21")
    server = ModbusTcpServer(
        [served_image(11, sdm120, SDM120_VALUES), served_image(12, abb_b21, ABB_B21_VALUES)],
        address=("127.0.0.1", 0),
    )
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    bus = TcpBus("127.0.0.1", port, timeout=0.5, retries=0)
    yield bus
    await bus.close()
    await server.shutdown()


def test_the_sdm120_image_is_ieee_floats_high_word_first():
    image = RegisterImage(load_map("eastron-sdm120"))
    image.set("power_l1", 1650.0)
    assert image.words_of("power_l1") == list(struct.unpack(">2H", struct.pack(">f", 1650.0)))


async def test_sdm120_without_power_total_reports_power_l1_as_the_total(bus):
    sdm120 = load_map("eastron-sdm120")
    assert sdm120.model.phases == 1 and not sdm120.has_field("power_total")
    m = await Meter(bus, 11, sdm120, name="house").read_measurement()
    assert m.power_total == pytest.approx(1650.0)
    assert m.powers == (pytest.approx(1650.0), None, None)
    assert m.voltages == (pytest.approx(231.5), None, None)
    assert m.currents == (pytest.approx(7.25), None, None)
    assert m.frequency == pytest.approx(49.98)
    assert (m.energy_import_kwh, m.energy_export_kwh) == (pytest.approx(812.5), 3.25)
    assert "power_total" not in m.readings, "the readings stay what the device holds"
    assert bus.health(11).counts["ok"] >= 1


async def test_single_phase_map_with_a_total_register_reports_that_register(bus):
    m = await Meter(bus, 12, load_map("abb-b21"), name="sub").read_measurement()
    assert m.power_total == pytest.approx(910.0)
    assert m.powers[0] == pytest.approx(900.0)
