"""Every shipped meter map, served over Modbus TCP and decoded back by ampgate.codec."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from ampgate.codec import decode_request, list_models, load_map, load_map_file, plan_reads
from ampgate.sim import (
    ElectricVehicle,
    Evc2Simulator,
    ManualClock,
    MeterSimulator,
    ModbusExceptionCode,
    constant_load,
    serve_tcp,
)

METERS = [m for m in list_models() if load_map(m).model.kind == "meter"]
VOLTAGES = (230.0, 231.5, 229.0)
LOAD = (10.5, 20.25, 5.0)
FREQUENCY = 49.98


def test_every_meter_map_is_covered() -> None:
    assert len(METERS) >= 6


def _expected(phases: int) -> dict[str, float]:
    n = phases
    out = {"frequency": FREQUENCY}
    for i in range(n):
        out[f"voltage_l{i + 1}"] = VOLTAGES[i]
        out[f"current_l{i + 1}"] = LOAD[i]
        out[f"power_l{i + 1}"] = VOLTAGES[i] * LOAD[i]
    out["power_total"] = sum(VOLTAGES[i] * LOAD[i] for i in range(n))
    return out


async def _read_all(client: AsyncModbusTcpClient, model: str, unit: int) -> dict[str, object]:
    rmap = load_map(model)
    values: dict[str, object] = {}
    for request in plan_reads(rmap):
        read = (
            client.read_holding_registers if request.function == 3 else client.read_input_registers
        )
        rr = await read(request.address, count=request.count, device_id=unit)
        assert not rr.isError(), (model, request, rr)
        values.update({k: r.value for k, r in decode_request(rmap, request, rr.registers).items()})
    return values


@pytest.fixture
async def served(clock: ManualClock) -> AsyncIterator[tuple[AsyncModbusTcpClient, dict]]:
    meters = {
        unit: MeterSimulator(
            model, constant_load(*LOAD), clock, voltages=VOLTAGES, frequency=FREQUENCY
        )
        for unit, model in enumerate(METERS, start=1)
    }
    server = await serve_tcp(meters)
    client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=1, retries=0)
    assert await client.connect()
    try:
        yield client, meters
    finally:
        client.close()
        await server.stop()


async def test_every_meter_serves_the_profile_values_per_its_map(served, clock) -> None:
    client, meters = served
    for unit, meter in meters.items():
        model = meter.map.id
        values = await _read_all(client, model, unit)
        for name, expected in _expected(meter.map.model.phases).items():
            if meter.map.has_field(name):
                resolution = max(meter.map.field(name).scale, abs(expected) * 1e-6)
                assert values[name] == pytest.approx(expected, abs=resolution), (model, name)
        assert values["energy_import"] == pytest.approx(
            1000.0 if meter.map.field("energy_import").unit == "kWh" else 1_000_000.0
        ), model


async def test_energy_counters_integrate_in_the_maps_unit(served, clock) -> None:
    client, meters = served
    clock.advance(3600)
    for unit, meter in meters.items():
        values = await _read_all(client, meter.map.id, unit)
        phases = meter.map.model.phases
        wh = 1_000_000.0 + sum(VOLTAGES[i] * LOAD[i] for i in range(phases))
        field = meter.map.field("energy_import")
        expected = wh / 1000.0 if field.unit == "kWh" else wh
        resolution = max(field.scale, abs(expected) * 1e-6)
        assert values["energy_import"] == pytest.approx(expected, abs=resolution), meter.map.id
        assert values["energy_export"] == 0.0


async def test_holes_answer_exception_2(served) -> None:
    client, meters = served
    holed = [(u, m) for u, m in meters.items() if m.map.holes]
    assert holed, "at least one shipped map (siemens-7km2200) has holes"
    for unit, meter in holed:
        for hole in meter.map.holes:
            function = hole.function or meter.map.model.default_function
            read = client.read_holding_registers if function == 3 else client.read_input_registers
            rr = await read(hole.start - 2, count=4, device_id=unit)
            assert rr.isError() and rr.exception_code == 2, (meter.map.id, hole)


async def test_wrong_function_code_is_refused_like_a_device(served) -> None:
    client, meters = served
    for unit, meter in meters.items():
        field = meter.map.field("voltage_l1")
        function = meter.map.function_of(field)
        other = 4 if function == 3 else 3
        read = client.read_holding_registers if other == 3 else client.read_input_registers
        rr = await read(field.address, count=2, device_id=unit)
        uses_other = any(meter.map.function_of(f) == other for f in meter.map.fields)
        assert rr.isError(), meter.map.id
        assert rr.exception_code == (2 if uses_other else 1), meter.map.id


async def test_request_over_the_maps_limit_answers_exception_3(served) -> None:
    client, meters = served
    for unit, meter in meters.items():
        limit = meter.map.max_registers_per_request
        field = meter.map.field("voltage_l1")
        function = meter.map.function_of(field)
        answer = meter.read(function, field.address, limit + 1)
        assert answer == ModbusExceptionCode.ILLEGAL_DATA_VALUE, meter.map.id
        if limit < 125:  # pymodbus' client itself refuses to ask for more than 125
            read = client.read_holding_registers if function == 3 else client.read_input_registers
            rr = await read(field.address, count=limit + 1, device_id=unit)
            assert rr.isError() and rr.exception_code == 3, meter.map.id


def test_single_phase_variant_serves_no_value_sentinel_for_absent_phases(
    tmp_path: Path, clock: ManualClock
) -> None:
    source = Path(load_map("abb-b23").source).read_text(encoding="utf-8")
    assert "phases = 3" in source
    path = tmp_path / "abb-b23-one-phase.toml"
    path.write_text(
        source.replace('id = "abb-b23"', 'id = "abb-b23-one-phase"').replace(
            "phases = 3", "phases = 1"
        ),
        encoding="utf-8",
    )
    rmap = load_map_file(path)
    meter = MeterSimulator(rmap.id, constant_load(*LOAD), clock, rmap=rmap)
    values = {}
    for request in plan_reads(rmap):
        words = meter.read(request.function, request.address, request.count)
        assert isinstance(words, list)
        values.update(decode_request(rmap, request, words))
    assert values["current_l1"].value == pytest.approx(10.5)
    for name in ("voltage_l2", "current_l3", "power_l2"):
        assert values[name].missing and values[name].value is None, name
    assert values["power_total"].value == pytest.approx(230.0 * 10.5)


def test_meter_measures_the_chargers_behind_it_on_their_site_phases(clock: ManualClock) -> None:
    charger = Evc2Simulator(clock, rotation=(2, 3, 1), amps_to_use=10)
    charger.plug_in(ElectricVehicle(phases=1, reaction_delay=0.0))
    meter = MeterSimulator("eastron-sdm630", constant_load(1.0, 1.0, 1.0), clock)
    meter.attach(charger)
    clock.advance(1)
    values = {}
    rmap = meter.map
    for request in plan_reads(rmap):
        words = meter.read(request.function, request.address, request.count)
        values.update({k: r.value for k, r in decode_request(rmap, request, words).items()})
    assert (values["current_l1"], values["current_l2"], values["current_l3"]) == (1.0, 11.0, 1.0)
    assert values["power_total"] == pytest.approx(230.0 * 13)


def test_export_is_counted_separately(clock: ManualClock) -> None:
    meter = MeterSimulator("abb-b23", constant_load(-10.0, 0.0, 0.0), clock)
    clock.advance(3600)
    meter.advance()
    assert meter.energy_export_kwh == pytest.approx(2.3)
    assert meter.energy_import_kwh == pytest.approx(1000.0)
    assert meter.image.value("current_l1") == 10.0
    assert meter.image.value("power_l1") == -2300.0


def test_meter_refuses_writes(clock: ManualClock) -> None:
    meter = MeterSimulator("eastron-sdm630", constant_load(1.0), clock)
    assert meter.write(0, [1]) == ModbusExceptionCode.ILLEGAL_DATA_ADDRESS
