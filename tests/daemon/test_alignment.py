"""The engine's input timing: charger readings older or newer than the meter reading.

The gateway polls chargers alongside the meters, so right after a lowering a charger reading
can still show the old, higher draw while the meter already sees the lower one. Subtracting the
stale reading under-estimates the building load and over-allocates (seen in CI as 34 A on a
32 A fuse). ``align_reading_times`` (what the daemon sets) must subtract the draw as it was
when the meter measured, never more.
"""

from __future__ import annotations

from dataclasses import replace

from ampgate.config import check_config_text
from ampgate.daemon.site import build_site
from ampgate.dlm import (
    ChargerReading,
    EngineState,
    Measurements,
    MeterReading,
    VehicleState,
    allocate,
)

SITE = """
[buses.lan]
kind = "tcp"
host = "127.0.0.1"
[groups.main]
limit = 32
[meters.grid]
model = "eastron-sdm630"
bus = "lan"
unit_id = 100
group = "main"
location = "including"
[chargers.c1]
bus = "lan"
unit_id = 1
group = "main"
[chargers.c2]
bus = "lan"
unit_id = 2
group = "main"
[dlm]
ramp_up_amps_per_second = 40
restart_delay_seconds = 0
[metrics]
enabled = false
"""


def _site(**settings):
    config, problems = check_config_text(SITE, "align.toml")
    assert config is not None, problems
    site = build_site(config)
    return replace(site, settings=replace(site.settings, **settings))


def _charger(amps: float, at: float, setpoint: int) -> ChargerReading:
    return ChargerReading(True, (amps, amps, amps), VehicleState.CHARGING, at, setpoint)


def _lowering_then_stale_readings(site):
    """Two cars at 13 A, building 6 A; the building steps to 20 A; the next cycle's charger
    readings are still those from before the lowering while the meter sees the cars at 6 A."""
    state = EngineState()
    t = 0.0
    for _ in range(3):  # steady: building 6 A + 2 × 13 A = 32 A
        t += 1.0
        meas = Measurements(
            {"grid": MeterReading((32.0, 32.0, 32.0), t)},
            {"c1": _charger(13, t - 0.05, 13), "c2": _charger(13, t - 0.05, 13)},
        )
        state = allocate(site, meas, state, t).state
    # the load step: the meter sees building 20 A + cars at 13 A; fresh charger readings
    t += 1.0
    stale_chargers = {"c1": _charger(13, t - 0.05, 13), "c2": _charger(13, t - 0.05, 13)}
    step = allocate(
        site, Measurements({"grid": MeterReading((46.0, 46.0, 46.0), t)}, stale_chargers), state, t
    )
    lowered = {n: s.amps for n, s in step.setpoints.items()}
    # next cycle: the cars followed (meter: 20 + 6 + 6), the charger polls have not answered
    t += 1.0
    after = allocate(
        site,
        Measurements({"grid": MeterReading((32.0, 32.0, 32.0), t)}, stale_chargers),
        step.state,
        t,
    )
    return lowered, after


def test_a_stale_charger_reading_after_a_lowering_never_hides_building_load():
    lowered, after = _lowering_then_stale_readings(_site(align_reading_times=True))
    assert lowered == {"c1": 6, "c2": 6}
    non_ev = [a.non_ev_load for a in after.accounts]
    assert min(non_ev) >= 20.0 - 1e-9, non_ev
    assert 20.0 + sum(s.amps for s in after.setpoints.values()) <= 32.0


def test_without_alignment_the_same_readings_over_allocate():
    # the first version's behaviour: the stale 13 A readings are subtracted from a meter that
    # already sees 6 A per car, so the building looks like 6 A and the cars are raised again
    _, after = _lowering_then_stale_readings(_site(align_reading_times=False))
    assert 20.0 + sum(s.amps for s in after.setpoints.values()) > 32.0


def test_a_charger_reading_newer_than_the_meter_is_matched_to_the_meter_time():
    # c1 was raised 6 -> 13 A; the meter read before the car followed (6 A), the charger
    # reading just after (13 A): subtracting 13 A would hide 7 A of building load
    site = _site(align_reading_times=True)
    state = EngineState()
    for t in (1.0, 2.0, 3.0):
        meas = Measurements(
            {"grid": MeterReading((16.0, 16.0, 16.0), t)},
            {"c1": _charger(6, t - 0.01, 6), "c2": _charger(0, t - 0.01, 0)},
        )
        state = allocate(site, meas, state, t).state
    meas = Measurements(
        {"grid": MeterReading((10.0 + 6.0, 10.0 + 6.0, 10.0 + 6.0), 4.0)},
        {"c1": _charger(13, 4.02, 6), "c2": _charger(0, 4.02, 0)},
    )
    out = allocate(site, meas, state, 4.05)
    assert min(a.non_ev_load for a in out.accounts) >= 10.0 - 1e-9
