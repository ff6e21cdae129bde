"""Installer-requested behaviours, one scenario each, driven through the pure engine."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ampgate.dlm import (
    ChargerMemory,
    ChargerReading,
    ChargerSpec,
    EngineSettings,
    EngineState,
    Group,
    Measurements,
    MeterLocation,
    MeterReading,
    MeterSpec,
    Rotation,
    Site,
    VehicleState,
    allocate,
    check_site,
    plan_failsafe,
)
from ampgate.errors import ConfigError

CHARGING = VehicleState.CHARGING


def reading(now, amps=(0.0, 0.0, 0.0), vehicle=CHARGING, **kw) -> ChargerReading:
    return ChargerReading(True, tuple(float(a) for a in amps), vehicle, now, **kw)


def run(site, measure, seconds, start=0.0, state=None):
    """Run the engine once per second; ``measure(now, last_allocation)`` gives measurements."""
    state, alloc, out = state or EngineState(), None, []
    for i in range(seconds):
        now = start + i
        alloc = allocate(site, measure(now, alloc), state, now)
        state = alloc.state
        out.append(alloc)
    return out


def live(load, now):
    """A meter reading of ``load`` with the jitter of a real meter (it never repeats itself)."""
    wiggle = 0.01 * (round(now) % 7)
    return tuple(x - wiggle for x in load)


def follow(site, meter_load=None, location=MeterLocation.EXCLUDING, vehicles=None):
    """Measurements where every car instantly draws its setpoint on the phases of its mode
    (its wired phases, or its L1 in 1-phase mode), and the charger reports them (reg 13)."""

    def measure(now, alloc):
        chargers = {}
        for c in site.chargers:
            sp = alloc.setpoints[c.id] if alloc else None
            amps = sp.amps if sp else 0
            terminals = (0,) if sp is not None and sp.phases == 1 else c.wired_phases
            cur = [amps if t in terminals else 0 for t in range(3)]
            v = (vehicles or {}).get(c.id, CHARGING)
            chargers[c.id] = reading(now, cur, v, phases_reported=frozenset(terminals))
        meters = {}
        if meter_load is not None:
            load = list(meter_load(now) if callable(meter_load) else meter_load)
            meters["m"] = MeterReading(live(load, now), now)
        return Measurements(meters=meters, chargers=chargers)

    return measure


def site_of(groups, chargers, meter_group=None, location=MeterLocation.EXCLUDING, **settings):
    meters = (MeterSpec("m", meter_group, location),) if meter_group else ()
    return check_site(Site(tuple(groups), tuple(chargers), meters, EngineSettings(**settings)))


def test_two_one_phase_chargers_on_l1_and_l3_are_not_counted_twice_on_l1():
    site = site_of(
        [Group("main", (16.0, 16.0, 16.0))],
        [
            ChargerSpec("a", "main", Rotation.L1L2L3, wired_phases=(0,), max_current=16),
            ChargerSpec("b", "main", Rotation.L3L1L2, wired_phases=(0,), max_current=16),
        ],
    )
    last = run(site, follow(site), 20)[-1]
    assert last.setpoints["a"].amps == 16 and last.setpoints["b"].amps == 16
    allocated = {a.phase: a.allocated for a in last.accounts}
    assert allocated == {0: 16.0, 1: 0.0, 2: 16.0}


def test_capacity_for_one_car_sheds_one_and_does_not_oscillate():
    site = site_of(
        [Group("main", (11.0, 11.0, 11.0))],
        [ChargerSpec("a", "main", max_current=16), ChargerSpec("b", "main", max_current=16)],
    )
    allocs = run(site, follow(site), 200)
    history = [(a.setpoints["a"].amps, a.setpoints["b"].amps) for a in allocs]
    assert history[-1] == (11, 0)
    assert history[-1][1] == 0 and allocs[-1].setpoints["b"].reason_code == "paused_capacity"
    assert all(h == history[-1] for h in history[10:])  # settled, no flapping
    assert "limited by group 'main' L1" in allocs[-1].setpoints["a"].reason


def test_paused_car_waits_for_the_restart_delay_and_its_minimum_plus_margin():
    site = site_of([Group("main", (40.0, 40.0, 40.0))], [ChargerSpec("a", "main")], "main")
    building = {"load": 20.0}
    measure = follow(site, meter_load=lambda now: (building["load"],) * 3)
    allocs = run(site, measure, 10)
    assert allocs[-1].setpoints["a"].amps > 6
    building["load"] = 36.0  # only 4 A left: pause
    state = allocs[-1].state
    paused = run(site, measure, 1, start=10, state=state)[-1]
    assert paused.setpoints["a"].amps == 0
    building["load"] = 27.0  # 13 A free again, but the delay holds
    waiting = run(site, measure, 50, start=11, state=paused.state)
    assert all(a.setpoints["a"].amps == 0 for a in waiting)
    assert waiting[-1].setpoints["a"].reason_code == "restart_delay"
    building["load"] = 34.0  # delay over; exactly 6 A free is not 6 A + 1 A margin
    tight = run(site, measure, 5, start=70, state=waiting[-1].state)
    assert all(a.setpoints["a"].amps == 0 for a in tight)
    building["load"] = 33.0  # 7 A = minimum + margin: restart
    restarted = run(site, measure, 1, start=75, state=tight[-1].state)[-1]
    assert restarted.setpoints["a"].amps == 6


def test_stale_meter_is_held_briefly_then_the_fallback_load_is_used():
    # the building was above the fallback: that is held for a while, then the fallback
    site = site_of(
        [Group("main", (40.0, 40.0, 40.0), fallback_load=(6.0, 6.0, 6.0))],
        [ChargerSpec("a", "main")],
        "main",
    )
    good = MeterReading((10.0, 10.0, 10.0), 0.0)
    state = EngineState()
    sources = {}
    for now in (0.0, 3.0, 8.0, 12.0):
        meas = Measurements({"m": good}, {"a": reading(now)})
        alloc = allocate(site, meas, state, now)
        state = alloc.state
        sources[now] = (alloc.accounts[0].non_ev_source, alloc.accounts[0].non_ev_load)
    assert sources[0.0] == ("meter", 10.0) and sources[3.0] == ("meter", 10.0)
    assert sources[8.0] == ("held", 10.0)  # stale (5 s) but within the 10 s hold
    assert sources[12.0] == ("fallback", 6.0)


def test_a_stale_meter_never_counts_less_building_load_than_the_fallback():
    # the building may rise while the meter is not live: holding a lower reading would
    # over-allocate (a meter frozen or reading zeros as the building steps up)
    site = site_of(
        [Group("main", (40.0, 40.0, 40.0), fallback_load=(30.0, 30.0, 30.0))],
        [ChargerSpec("a", "main")],
        "main",
    )
    good = MeterReading((10.0, 10.0, 10.0), 0.0)
    state = EngineState()
    for now in (0.0, 3.0, 8.0):
        alloc = allocate(site, Measurements({"m": good}, {"a": reading(now)}), state, now)
        state = alloc.state
    assert (alloc.accounts[0].non_ev_source, alloc.accounts[0].non_ev_load) == ("fallback", 30.0)
    assert alloc.setpoints["a"].amps <= 10
    assert alloc.setpoints["a"].reason_code == "meter_stale_fallback"
    assert "meter stale: fallback load" in alloc.setpoints["a"].reason


def test_a_missing_phase_reading_is_never_zero_load():
    site = site_of(
        [Group("main", (40.0, 40.0, 40.0), fallback_load=(35.0, 35.0, 35.0))],
        [ChargerSpec("a", "main")],
        "main",
    )
    meas = Measurements({"m": MeterReading((5.0, None, 5.0), 0.0)}, {"a": reading(0.0)})
    alloc = allocate(site, meas, EngineState(), 0.0)
    assert [a.non_ev_load for a in alloc.accounts] == [35.0, 35.0, 35.0]
    assert alloc.setpoints["a"].amps == 0


def test_including_meter_subtracts_the_chargers_through_their_rotation():
    site = site_of(
        [Group("main", (40.0, 40.0, 40.0))],
        [ChargerSpec("a", "main", Rotation.L2L3L1, wired_phases=(0,))],
        "main",
        MeterLocation.INCLUDING,
    )
    # the charger's L1 sits on the site's L2: the meter's L2 includes its 10 A
    meas = Measurements({"m": MeterReading((5.0, 17.0, 5.0), 0.0)}, {"a": reading(0, (10, 0, 0))})
    alloc = allocate(site, meas, EngineState(), 0.0)
    assert [a.non_ev_load for a in alloc.accounts] == [5.0, 7.0, 5.0]


def test_under_drawing_car_is_lowered_after_settle_and_gets_current_back_later():
    site = site_of(
        [Group("main", (32.0, 32.0, 32.0))],
        [ChargerSpec("taper", "main", max_current=32), ChargerSpec("full", "main")],
    )
    draws = {"taper": 6.0}

    def measure(now, alloc):
        chargers = {}
        for cid in ("taper", "full"):
            amps = alloc.setpoints[cid].amps if alloc else 0
            if cid == "taper":
                amps = min(amps, draws["taper"])
            chargers[cid] = reading(now, (amps, amps, amps))
        return Measurements({}, chargers)

    allocs = run(site, measure, 60)
    assert allocs[10].setpoints["taper"].amps == 16  # fair half before the settle time
    last = allocs[-1]
    assert last.setpoints["taper"].amps == 8  # 6 A drawn + 2 A margin
    assert last.setpoints["taper"].reason_code == "underdraw"
    assert last.setpoints["full"].amps == 24  # the freed current went to the other car
    draws["taper"] = 32.0  # draws at its setpoint again: current comes back, ramp-limited
    back = run(site, measure, 10, start=60, state=last.state)
    amps = [a.setpoints["taper"].amps for a in back]
    assert amps[-1] == 16
    assert all(b - a <= 2 for a, b in zip([8, *amps], amps, strict=False))


def test_one_phase_car_reserves_only_the_phase_it_draws_on():
    site = site_of(
        [Group("main", (20.0, 20.0, 20.0))],
        [ChargerSpec("one", "main", max_current=16), ChargerSpec("three", "main")],
    )

    def measure(now, alloc):
        a = alloc.setpoints if alloc else {}
        one = a["one"].amps if a else 0
        three = a["three"].amps if a else 0
        return Measurements(
            {}, {"one": reading(now, (one, 0, 0)), "three": reading(now, (three,) * 3)}
        )

    last = run(site, measure, 30)[-1]
    assert last.state.chargers["one"].phases_in_use == frozenset({0})
    # L1 shared 10/10; L2 and L3 only carry the 3-phase car... which is held by L1 too
    accounts = {a.phase: a.allocated for a in last.accounts}
    assert accounts[1] == last.setpoints["three"].amps < accounts[0]


def test_phase_switch_to_one_phase_when_only_one_phase_has_room_and_not_too_often():
    site = site_of(
        [Group("main", (40.0, 40.0, 40.0))],
        [ChargerSpec("a", "main", phase_change_possible=True)],
        "main",
    )
    load = {"v": (20.0, 36.0, 36.0)}  # 20 A free on L1, 4 A on L2/L3
    allocs = run(site, follow(site, meter_load=lambda now: load["v"]), 10)
    assert allocs[-1].setpoints["a"].phases == 1 and allocs[-1].setpoints["a"].amps >= 6
    load["v"] = (5.0, 5.0, 5.0)  # room for 3 phases again, but within the interval
    later = run(site, follow(site, meter_load=lambda now: load["v"]), 200, 10, allocs[-1].state)
    assert all(a.setpoints["a"].phases == 1 for a in later)
    after = run(site, follow(site, meter_load=lambda now: load["v"]), 200, 210, later[-1].state)
    assert after[-1].setpoints["a"].phases == 3  # switched back once the interval passed


def test_phase_switch_needs_phase_change_possible():
    site = site_of([Group("main", (40.0, 40.0, 40.0))], [ChargerSpec("a", "main")], "main")
    allocs = run(site, follow(site, meter_load=(20.0, 36.0, 36.0)), 5)
    assert allocs[-1].setpoints["a"].amps == 0 and allocs[-1].setpoints["a"].phases is None


def test_power_cap_and_phase_imbalance_are_honoured():
    site = site_of(
        [Group("main", (63.0, 63.0, 63.0), power_cap_kw=11.0, max_imbalance=10.0)],
        [
            ChargerSpec("three", "main"),
            ChargerSpec("l1", "main", wired_phases=(0,)),
        ],
    )
    last = run(site, follow(site), 60)[-1]
    three, l1 = last.setpoints["three"].amps, last.setpoints["l1"].amps
    assert (3 * three + l1) * 230 <= 11000
    assert l1 <= 10  # the 1-phase charger may not put L1 more than 10 A above L2/L3


def test_building_load_alone_over_the_fuse_stops_every_charger_and_says_so():
    site = site_of(
        [Group("main", (40.0, 40.0, 40.0))],
        [ChargerSpec("a", "main"), ChargerSpec("b", "main", wired_phases=(1,))],
        "main",
    )
    last = run(site, follow(site, meter_load=(45.0, 10.0, 10.0)), 3)[-1]
    assert last.setpoints["a"].amps == 0
    assert last.setpoints["a"].reason_code == "over_limit_without_ev"
    assert "group 'main' L1" in last.setpoints["a"].reason
    assert last.setpoints["b"].amps > 0  # on L2 only: not affected by L1


def test_offline_charger_is_assumed_at_last_setpoint_or_failsafe():
    site = site_of(
        [Group("main", (32.0, 32.0, 32.0))],
        [ChargerSpec("a", "main", failsafe_current=10), ChargerSpec("b", "main")],
    )
    allocs = run(site, follow(site), 20)
    assert allocs[-1].setpoints["a"].amps == 16
    meas = Measurements({}, {"a": ChargerReading(False), "b": reading(20, (16, 16, 16))})
    off = allocate(site, meas, allocs[-1].state, 20.0)
    assert off.setpoints["a"].amps == 16 and off.setpoints["a"].reason_code == "charger_offline"
    assert off.setpoints["b"].amps == 16


def test_priority_wins_the_last_slot():
    site = site_of(
        [Group("main", (10.0, 10.0, 10.0))],
        [ChargerSpec("a", "main"), ChargerSpec("vip", "main", priority=1)],
    )
    last = run(site, follow(site), 30)[-1]
    assert last.setpoints["vip"].amps == 10 and last.setpoints["a"].amps == 0


def test_paused_car_rotates_so_no_connected_car_starves():
    site = site_of(
        [Group("main", (13.0, 13.0, 13.0))],
        [ChargerSpec(f"c{i}", "main") for i in range(3)],
        fairness_rotation_s=120.0,
    )
    allocs = run(site, follow(site), 1800)
    energy = {c: sum(a.setpoints[c].amps for a in allocs) for c in ("c0", "c1", "c2")}
    assert all(e > 0 for e in energy.values())
    assert max(energy.values()) < 1.6 * min(energy.values())
    assert any(a.setpoints[c].reason_code == "paused_fairness" for a in allocs for c in energy)


def test_every_level_of_a_hierarchy_holds_and_the_reason_names_the_sub_distribution():
    site = site_of(
        [Group("main", (63.0, 63.0, 63.0)), Group("sub", (20.0, 20.0, 20.0), parent="main")],
        [
            ChargerSpec("a", "sub"),
            ChargerSpec("b", "sub", Rotation.L2L3L1),
            ChargerSpec("c", "main"),
        ],
        "main",
    )
    last = run(site, follow(site, meter_load=(30.0, 30.0, 30.0)), 40)[-1]
    assert last.setpoints["a"].amps + last.setpoints["b"].amps <= 20
    assert "limited by group 'sub'" in last.setpoints["a"].reason
    assert sum(s.amps for s in last.setpoints.values()) + 30 <= 63


def test_not_connected_and_errors_get_zero_with_reasons():
    site = site_of([Group("main", (32.0, 32.0, 32.0))], [ChargerSpec("a", "main")])
    for vehicle, code in [
        (VehicleState.NOT_CONNECTED, "car_not_connected"),
        (VehicleState.ERROR, "charger_error"),
    ]:
        alloc = allocate(
            site, Measurements({}, {"a": reading(0, vehicle=vehicle)}), EngineState(), 0
        )
        assert alloc.setpoints["a"].amps == 0 and alloc.setpoints["a"].reason_code == code


def test_failsafe_plan_zeroes_some_chargers_and_rotates_who():
    site = site_of(
        [Group("main", (20.0, 20.0, 20.0), fallback_load=(5.0, 5.0, 5.0))],
        [ChargerSpec(f"c{i}", "main", failsafe_current=6) for i in range(3)],
    )
    zeroed = set()
    for offset in range(3):
        plan = plan_failsafe(site, EngineState(failsafe_offset=offset))
        assert sum(plan.values()) + 5 <= 20
        assert sorted(plan.values()) == [0, 6, 6]
        zeroed |= {c for c, a in plan.items() if a == 0}
    assert zeroed == {"c0", "c1", "c2"}


def test_invalid_site_lists_every_problem():
    bad = Site(
        (Group("main", (40.0, 40.0, 40.0), operator_limit=(50.0, 40.0, 40.0)),),
        (ChargerSpec("a", "nowhere", max_current=40, failsafe_current=3),),
    )
    with pytest.raises(ConfigError) as info:
        check_site(bad)
    text = "\n".join(info.value.problems)
    assert "operator_limit" in text and "'nowhere'" in text
    assert "max_current 40" in text and "failsafe_current 3" in text
    check_site(replace(bad, groups=(Group("main", (40.0, 40.0, 40.0)),), chargers=()))


def test_a_late_car_makes_the_others_drop_to_their_fair_share_at_once_while_it_ramps():
    site = site_of(
        [Group("main", (40.0, 40.0, 40.0))],
        [ChargerSpec(c, "main", max_current=32) for c in ("a", "b", "c")],
    )
    measure = follow(site)

    def arrivals(now, alloc):
        m = measure(now, alloc)
        if now < 30:  # car c plugs in at 30 s
            c = m.chargers["c"]
            m.chargers["c"] = replace(c, vehicle=VehicleState.NOT_CONNECTED)
        return m

    allocs = run(site, arrivals, 45)
    assert (allocs[29].setpoints["a"].amps, allocs[29].setpoints["b"].amps) == (20, 20)
    arrival = allocs[30].setpoints
    # the share of three is 13 A: a and b go there in the arrival cycle, not 3 A at a time
    assert arrival["a"].amps <= 14 and arrival["b"].amps <= 14
    assert [allocs[t].setpoints["c"].reason_code for t in (31, 32)] == ["ramping", "ramping"]
    last = allocs[-1].setpoints
    assert sorted(s.amps for s in last.values()) == [13, 13, 14]


def test_current_on_a_terminal_not_listed_as_wired_is_budgeted_on_its_site_phase():
    # "odd" is configured as wired on its L1 (the site's L1), but the electrician used L2: its
    # car draws on its L2 terminal. "two" is a 1-phase charger on the site's L2 (rotation).
    # The site's L2 is a 20 A fuse. Measured draw on any terminal counts on the site phase it
    # sits on: odd and two share L2 (10 + 10), and L2 is never loaded over 20 A — before, odd
    # was budgeted on L1 only and rose to 32 A on L2 while two kept its share there.
    site = site_of(
        [Group("main", (32.0, 20.0, 32.0))],
        [
            ChargerSpec("odd", "main", wired_phases=(0,)),
            ChargerSpec("two", "main", Rotation.L2L3L1, wired_phases=(0,)),
        ],
    )

    def measure(now, alloc):
        odd = alloc.setpoints["odd"].amps if alloc else 0
        two = alloc.setpoints["two"].amps if alloc else 0
        return Measurements(
            {}, {"odd": reading(now, (0, odd, 0)), "two": reading(now, (two, 0, 0))}
        )

    allocs = run(site, measure, 60)
    for alloc in allocs:
        # what the cars draw on the site's L2 once they follow these setpoints
        on_l2 = alloc.setpoints["odd"].amps + alloc.setpoints["two"].amps
        assert on_l2 <= 20, [(a.setpoints["odd"].amps, a.setpoints["two"].amps) for a in allocs]
    last = allocs[-1]
    assert (last.setpoints["odd"].amps, last.setpoints["two"].amps) == (10, 10)
    assert {a.phase: a.allocated for a in last.accounts}[1] == 20  # odd is accounted on L2


def test_an_over_drawing_car_does_not_keep_an_arriving_car_below_its_fair_share():
    # 26 A fuse; a is set to 10 A and draws 4 A more than any setpoint; b arrives. a's excess
    # is counted once: b ramps to its fair share (11 A, a budgeted at 11 + 4), where before it
    # was held at 7 A with 4 A unused. Never more than the fuse once the cars follow.
    site = site_of(
        [Group("main", (26.0, 26.0, 26.0))], [ChargerSpec("a", "main"), ChargerSpec("b", "main")]
    )
    state = EngineState(time=-1.0, chargers={"a": ChargerMemory(10, changed_at=-600.0)})

    def measure(now, alloc):
        a = alloc.setpoints["a"].amps if alloc else 10
        b = alloc.setpoints["b"].amps if alloc else 0
        return Measurements({}, {"a": reading(now, (a + 4,) * 3), "b": reading(now, (b,) * 3)})

    allocs = run(site, measure, 30, state=state)
    for alloc in allocs:
        assert alloc.setpoints["a"].amps + 4 + alloc.setpoints["b"].amps <= 26
    assert [a.setpoints["b"].amps for a in allocs[:5]] == [6, 8, 10, 11, 11]
    assert (allocs[-1].setpoints["a"].amps, allocs[-1].setpoints["b"].amps) == (11, 11)
