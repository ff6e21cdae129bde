"""The engine's input from what the loop last read (ampgate.gateway.inputs), without a bus."""

from __future__ import annotations

from ampgate.codec import Reading
from ampgate.config import check_config_text
from ampgate.devices.charger import charger_fast_from, charger_slow_from
from ampgate.devices.meter import meter_measurement_from
from ampgate.dlm import VehicleState
from ampgate.gateway.inputs import charger_reading, first_measurement_complete, measurements
from ampgate.gateway.runtime import ChargerRuntime, MeterRuntime

SITE = """
[buses.line]
kind = "serial"
port = "/dev/ttyUSB0"
[groups.main]
limit = [32, 32, 32]
[meters.grid]
model = "eastron-sdm630"
bus = "line"
unit_id = 1
group = "main"
[chargers.c1]
model = "teltocharge-evc2"
bus = "line"
unit_id = 2
group = "main"
"""


def config(text: str = SITE):
    site, problems = check_config_text(text, "site.toml")
    assert problems == [], problems
    return site


def reading(name: str, raw: float | None, value: object = None, unit: str | None = None):
    return Reading(name, raw, raw if value is None else value, unit, missing=raw is None)


def charger(**fields: float | None) -> ChargerRuntime:
    readings = {n: reading(n, v) for n, v in fields.items()}
    rt = ChargerRuntime(name="c1", device=None, config=None)
    rt.fast, rt.slow = charger_fast_from(readings), charger_slow_from(readings)
    rt.online, rt.last_ok, rt.measured_at = True, 100.0, 99.5
    return rt


def test_a_charger_reading_carries_measured_currents_state_phases_and_limits():
    rt = charger(
        current_l1=15.5,
        current_l2=None,  # missing: the charger measures every terminal, so 0 A
        current_l3=0.0,
        evse_status=0,
        phase_connected=0,  # its L1 only
        amp_limit=20,
        user_max_current=16,
        phase_change_possible=1,
    )
    rt.setpoint = 16
    got = charger_reading(rt, config(), 101.0)
    assert got.online and got.currents == (15.5, 0.0, 0.0)
    assert got.vehicle is VehicleState.CHARGING
    assert got.phases_reported == frozenset({0})
    assert got.max_current == 16  # the lower of the charger's and the user's limit
    assert got.phase_change_possible is True
    assert (got.timestamp, got.last_setpoint) == (99.5, 16)


def test_a_silent_or_refused_charger_is_offline_and_an_unread_one_unknown():
    site = config()
    rt = charger(current_l1=6.0)
    assert not charger_reading(rt, site, 100.0 + site.dlm.device_stale_seconds + 1).online
    rt.refused = "is NOT a teltocharge-evc2"
    assert not charger_reading(rt, site, 101.0).online
    never = ChargerRuntime(name="c1", device=None, config=None)
    got = charger_reading(never, site, 101.0)
    assert not got.online and got.vehicle is VehicleState.UNKNOWN
    assert got.currents == (0.0, 0.0, 0.0) and got.max_current is None


def test_phase_switching_off_in_the_site_file_wins_over_the_charger():
    site = config(SITE + 'phase_switching = "off"\n')
    got = charger_reading(charger(phase_change_possible=1), site, 101.0)
    assert got.phase_change_possible is False


def test_a_meter_never_read_is_left_out_and_a_missing_phase_stays_unknown():
    site = config()
    grid = MeterRuntime(name="grid", device=None, config=None)
    chargers = {"c1": charger(current_l1=6.0)}
    assert measurements(chargers, {"grid": grid}, site, 101.0).meters == {}
    values = {
        "current_l1": reading("current_l1", 10.0),
        "current_l2": reading("current_l2", None),  # missing is not 0 A of building load
        "current_l3": reading("current_l3", 3.0),
    }
    grid.measurement, grid.measured_at = meter_measurement_from(values), 100.2
    got = measurements(chargers, {"grid": grid}, site, 101.0)
    assert got.meters["grid"].currents == (10.0, None, 3.0)
    assert got.meters["grid"].timestamp == 100.2
    assert set(got.chargers) == {"c1"}


def test_no_decision_before_every_charger_was_polled_and_every_meter_read_or_given_up():
    site = config()
    c1 = ChargerRuntime(name="c1", device=None, config=None)
    grid = MeterRuntime(name="grid", device=None, config=None)
    assert not first_measurement_complete({"c1": c1}, {"grid": grid}, site, 0.0, 1.0)
    c1.polled = True
    assert not first_measurement_complete({"c1": c1}, {"grid": grid}, site, 0.0, 1.0)
    late = site.dlm.meter_stale_seconds
    assert first_measurement_complete({"c1": c1}, {"grid": grid}, site, 0.0, late)
    grid.last_ok = 0.5
    assert first_measurement_complete({"c1": c1}, {"grid": grid}, site, 0.0, 1.0)
