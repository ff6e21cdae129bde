"""The DLM under real dynamics, end to end: the daemon's gateway against misbehaving simulators.

Each test runs a time-compressed scenario (``tests/e2e/scenarios``, the same format as
``benchmarks/scenarios``) with :func:`ampgate.sim.live.run_live`: the simulators answer real
Modbus TCP, or RTU over a socat pty pair with line emulation, and the truth (what really flows
through the fuse) is scored by the benchmark's scorer. The assertions are the DLM-dynamics
promises: no overload beyond the reaction window, the misbehaviour is named by its event, cars
found at 32 A are lowered in the first cycle before anything else is written, and stopping is
bounded when the line is dead. Quality numbers over long runs are in
``benchmarks/bench_daemon_scenarios.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ampgate.devices.evc2 import PHASE_TO_USE
from ampgate.sim.live import SETPOINT_REGISTER, LiveRun, run_live
from ampgate.sim.scenario import Scenario, load_scenario

SCENARIOS = Path(__file__).parent / "scenarios"
WATCHDOG_REGISTER = 19
PHASE_REGISTER = 14


@pytest.fixture(autouse=True)
def _quiet_pymodbus():
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def scenario(name: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.toml")


def assert_fuse_held(run: LiveRun) -> None:
    score = run.score
    assert score.overload_beyond_reaction_amp_s == 0.0, score
    assert score.overload_amp_s >= 0.0


def first_cycle_recorder():
    """An on_cycle hook recording the time (since start) the first decision cycle ended."""
    ended: list[float] = []

    def on_cycle(gateway) -> None:
        if gateway.allocation is not None and not ended:
            ended.append(gateway.clock() - gateway.started_at)

    return ended, on_cycle


def assert_lowered_first(run: LiveRun, sc: Scenario, first_cycle_end: float) -> None:
    """Every charger found above its share got a lower setpoint before any other write."""
    for charger, plan in sc.chargers.items():
        if plan.found_amps <= 0:
            continue
        writes = [(t, a, v) for t, c, a, v in run.writes if c == charger]
        assert writes, f"{charger}: nothing written"
        t, address, values = writes[0]
        assert address == SETPOINT_REGISTER and values[0] < plan.found_amps, (charger, writes[:3])
        assert t <= first_cycle_end + 0.5, (charger, t, first_cycle_end)  # in the first cycle
        assert any(a == WATCHDOG_REGISTER for _, a, _ in writes), f"{charger}: never programmed"


async def test_chargers_found_at_32_a_over_tcp_are_lowered_in_the_first_cycle():
    sc = scenario("found_at_32a")
    ended, on_cycle = first_cycle_recorder()
    run = await run_live(sc, on_cycle=on_cycle)
    assert_lowered_first(run, sc, ended[0])
    assert_fuse_held(run)
    # lowered, not paused: every car keeps charging (its share stays above 6 A)
    assert all((run.setpoint_before_stop(c) or 0) >= 6 for c in sc.chargers), run.writes
    assert run.score.waiting_with_room_share == 0.0
    assert run.events.get("overload_measured", 0) >= 1  # the start-up overload is named


async def test_slow_cars_found_at_32_a_on_an_rs485_line():
    sc = scenario("slow_cars_rtu8")
    ended, on_cycle = first_cycle_recorder()
    run = await run_live(sc, on_cycle=on_cycle)
    assert_lowered_first(run, sc, ended[0])
    assert_fuse_held(run)
    assert run.events.get("device_offline", 0) == 0  # no request collided on the line
    # found at 32 A, the cars are lowered, not paused, through the start-up transient
    found = [c for c, plan in sc.chargers.items() if plan.found_amps > 0]
    for charger in found:
        early = [amps for t, amps in run.setpoint_writes(charger) if t < 16.0]
        assert early and min(early) >= 6, (charger, early)
    # cars arriving while the others are lowered get their current (c8, arriving at 12 s, and
    # the cars found at 32 A after the building step are the bench's "waiting with room" case
    # on a slow line: not asserted here, measured by bench_daemon_scenarios)
    for car in sc.cars:
        if 0 < car.arrive_s <= 9:
            assert (run.setpoint_before_stop(car.charger) or 0) >= 6, (car.id, run.writes)


async def test_a_phase_switch_the_charger_ignores_is_not_counted_and_is_named():
    sc = scenario("phase_switch_ignored")
    run = await run_live(sc, dlm={"phase_switch_timeout_seconds": 5})
    switches = [(t, v) for t, c, a, v in run.writes if c == "c1" and a == PHASE_REGISTER]
    assert switches and switches[0][1][0] == PHASE_TO_USE[1], run.writes  # it was told to
    assert run.events.get("phase_switch_not_followed") == 1
    assert len(switches) == 1  # not switched again while it is blocked
    assert_fuse_held(run)


async def test_a_car_that_over_draws_its_pilot_is_budgeted_at_its_draw():
    sc = scenario("overdraw")
    run = await run_live(sc)
    assert run.events.get("charger_overdraw") == 1
    assert_fuse_held(run)


async def test_a_frozen_meter_is_not_believed_while_cars_ramp_up():
    sc = scenario("meter_freeze")
    run = await run_live(sc)
    assert run.events.get("meter_implausible") == 1
    assert run.events.get("meter_plausible") == 1  # and believed again once it moves
    assert_fuse_held(run)


async def test_stopping_is_bounded_when_every_charger_on_the_line_went_silent():
    sc = scenario("slow_cars_rtu8")

    def silence(plant, now: float) -> None:
        if now >= 4.0:
            for faults in plant.charger_faults.values():
                faults.silent = True

    run = await run_live(sc, duration_s=8, during=silence)
    assert run.stop_s < 3.0, run.stop_s  # the cycle is cut short; the dead units are skipped
    assert run.events.get("device_offline", 0) >= 1
