"""Sharing within one cycle: the fair share (Cycle.share) and the steps after it
(ampgate.dlm.share: increases held back until current is released, phase-imbalance caps).

The steps are run on a :class:`~ampgate.dlm.cycle.Cycle` one by one, in the engine's order
(reserve, admit, share, hold back, imbalance), so each test sees what one step did.
"""

from __future__ import annotations

from dlm_strategies import measurements, sites
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

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
)
from ampgate.dlm.cycle import Cycle
from ampgate.dlm.observe import ChargerView
from ampgate.dlm.share import cap_imbalance, hold_back_increases

CHARGING = VehicleState.CHARGING
NOW = 100.0
EPS = 1e-6
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST_RAMP = 100.0
"""A ramp rate that never binds in one cycle, so a test sees the fair share itself."""


def site_of(groups, chargers, meters=(), ramp_up_a_per_s=FAST_RAMP, **engine) -> Site:
    """A valid site; the ramp does not bind unless ``ramp_up_a_per_s`` is given."""
    settings = EngineSettings(ramp_up_a_per_s=ramp_up_a_per_s, **engine)
    return check_site(Site(tuple(groups), tuple(chargers), tuple(meters), settings))


def one_phase(cid: str, rotation: Rotation = Rotation.L1L2L3, **kw) -> ChargerSpec:
    """A charger wired on its L1 only (which site phase that is depends on ``rotation``)."""
    return ChargerSpec(cid, kw.pop("group", "main"), rotation, wired_phases=(0,), **kw)


def three_phase(cid: str, **kw) -> ChargerSpec:
    """A charger wired on all three phases, standard rotation."""
    return ChargerSpec(cid, kw.pop("group", "main"), **kw)


def drawing(amps=(0.0, 0.0, 0.0), vehicle=CHARGING, at: float = NOW) -> ChargerReading:
    """An online reading of per-terminal ``amps`` (a connected car drawing nothing by default)."""
    return ChargerReading(True, tuple(float(a) for a in amps), vehicle, at)


def at_setpoint(setpoint: int) -> ChargerMemory:
    """The memory of a charger that has been at ``setpoint`` for a long time."""
    return ChargerMemory(setpoint=setpoint, changed_at=NOW - 600.0, session=True)


def cycle_of(site, readings, memories=None, meters=None, now: float = NOW) -> Cycle:
    """A cycle one second after the last (``memories``: the chargers' memory by id)."""
    state = EngineState(time=now - 1.0, chargers=memories or {})
    return Cycle(site, Measurements(meters or {}, readings), state, now)


def shared(site, readings, memories=None, meters=None) -> tuple[Cycle, list[ChargerView]]:
    """The cycle after reserve, admission and the fair share (before any later step)."""
    cycle = cycle_of(site, readings, memories, meters)
    cycle.reserve_fixed()
    admitted = cycle.admit()
    cycle.share(admitted)
    return cycle, admitted


def codes(cycle: Cycle) -> dict[str, str]:
    """The reason code of every charger decided so far."""
    return {cid: code for cid, (_, code) in cycle.results.items()}


# --------------------------------------------------------------------------- the fair share


def test_equal_chargers_share_equally_and_the_leftover_goes_one_amp_each_in_rank_order():
    site = site_of([Group("main", (20.0, 20.0, 20.0))], [three_phase(f"c{i}") for i in range(3)])
    cycle, _ = shared(site, {f"c{i}": drawing() for i in range(3)})
    # 20 / 3 = 6.67 A: 6 A each, and the 2 A left to the first two in rank order (by id here)
    assert cycle.amps == {"c0": 7, "c1": 7, "c2": 6}


def test_a_charger_held_back_on_one_phase_leaves_the_rest_of_another_to_the_others():
    # max-min fairness per phase: the 3-phase charger is limited by L2 at 16 A; the 1-phase
    # charger on L1 takes what the 3-phase one cannot use there, not an equal half of L1
    site = site_of([Group("main", (40.0, 16.0, 16.0))], [one_phase("one"), three_phase("three")])
    cycle, _ = shared(site, {"one": drawing(), "three": drawing()})
    assert cycle.amps == {"one": 24, "three": 16}
    assert codes(cycle)["three"] == "limited_by_group"
    assert "L1" not in cycle.results["three"][0]  # L2 or L3, both full at 16 A


def test_one_phase_chargers_are_counted_on_the_site_phase_their_rotation_puts_them_on():
    site = site_of(
        [Group("main", (10.0, 20.0, 40.0))],
        [
            one_phase("on_l1", Rotation.L1L2L3),
            one_phase("on_l2", Rotation.L2L3L1),  # its L1 is the site's L2
            one_phase("on_l3", Rotation.L3L1L2),  # its L1 is the site's L3
        ],
    )
    cycle, _ = shared(site, {c: drawing() for c in ("on_l1", "on_l2", "on_l3")})
    assert cycle.amps == {"on_l1": 10, "on_l2": 20, "on_l3": 32}  # 32: the charger maximum
    assert codes(cycle)["on_l3"] == "at_max_current"


def test_when_not_everyone_fits_six_amps_some_are_paused_rather_than_throttled():
    site = site_of([Group("main", (10.0, 10.0, 10.0))], [three_phase("a"), three_phase("b")])
    cycle, admitted = shared(site, {"a": drawing(), "b": drawing()})
    assert [v.id for v in admitted] == ["a"]
    assert cycle.amps == {"a": 10, "b": 0}
    assert codes(cycle)["b"] == "paused_capacity"


def test_a_charger_with_a_higher_minimum_gets_that_minimum_or_nothing():
    site = site_of([Group("main", (7.0, 7.0, 7.0))], [three_phase("a", min_current=8)])
    cycle, admitted = shared(site, {"a": drawing()})
    assert admitted == [] and cycle.amps == {"a": 0}
    roomy = site_of([Group("main", (9.0, 9.0, 9.0))], [three_phase("a", min_current=8)])
    assert shared(roomy, {"a": drawing()})[0].amps == {"a": 9}


def test_the_higher_priority_is_served_first_when_only_one_fits():
    site = site_of(
        [Group("main", (10.0, 10.0, 10.0))], [three_phase("a"), three_phase("b", priority=1)]
    )
    cycle, _ = shared(site, {"a": drawing(), "b": drawing()})
    assert cycle.amps == {"a": 0, "b": 10}


def test_a_late_car_ramps_up_while_the_others_drop_to_their_fair_share_at_once():
    site = site_of(
        [Group("main", (32.0, 32.0, 32.0))],
        [three_phase("a"), three_phase("b")],
        ramp_up_a_per_s=2.0,
    )
    readings = {"a": drawing((20.0, 20.0, 20.0)), "b": drawing()}
    cycle, _ = shared(site, readings, {"a": at_setpoint(20)})
    assert cycle.amps["a"] == 16  # its fair share, not 32 − what b may take this second
    assert cycle.amps["b"] == 6  # from 0: its minimum, the ramp does the rest
    assert codes(cycle)["b"] == "ramping"


def test_an_increase_below_the_hysteresis_is_not_made_a_decrease_always_is():
    site = site_of([Group("main", (11.0, 11.0, 11.0))], [three_phase("a")], hysteresis_a=2)
    cycle, _ = shared(site, {"a": drawing((10.0, 10.0, 10.0))}, {"a": at_setpoint(10)})
    assert cycle.amps == {"a": 10} and codes(cycle)["a"] == "hysteresis"
    tight = site_of([Group("main", (9.0, 9.0, 9.0))], [three_phase("a")], hysteresis_a=2)
    lowered, _ = shared(tight, {"a": drawing((10.0, 10.0, 10.0))}, {"a": at_setpoint(10)})
    assert lowered.amps == {"a": 9}


@PROPERTY
@given(st.data())
def test_the_fair_share_fits_every_resource_and_keeps_every_charger_in_its_bounds(data):
    site = data.draw(sites())
    first = allocate(site, data.draw(measurements(site, 0.0)), EngineState(), 0.0)
    now = 30.0  # long enough for the ramp to allow any step from the first cycle's setpoints
    cycle = Cycle(site, data.draw(measurements(site, now)), first.state, now)
    cycle.reserve_fixed()
    before = dict(cycle.amps)  # offline and idle chargers, decided before the share
    admitted = cycle.admit()
    cycle.share(admitted)
    load = [0.0] * len(cycle.capacity)
    for v in admitted:
        a = cycle.amps[v.id]
        assert v.lo <= a <= max(v.hi, v.lo), (v.id, a, v.lo, v.hi)  # never 1–5 A
        for r, coefficient in cycle.index.fill_row(v.id, v.site_phases):
            load[r] += a * coefficient
    for r, cap in enumerate(cycle.capacity):
        if load[r] > 0.0:  # (a resource over its limit without EV load carries no charger)
            assert load[r] <= cap + EPS, (cycle.index.resource_keys[r], load[r], cap)
    for cid, a in before.items():
        assert cycle.amps[cid] == a


# --------------------------------------------------------------------------- hold back increases


def release_site(*meters: MeterSpec) -> Site:
    """Two 3-phase chargers under a 3 × 26 A fuse."""
    return site_of(
        [Group("main", (26.0, 26.0, 26.0))],
        [three_phase("a"), three_phase("b")],
        meters,
    )


def test_an_increase_is_granted_only_out_of_current_already_released():
    # a ran at 16 A; b arrives. The fair share is 13 + 13, but a's decrease has not taken effect
    # (a car takes seconds to follow): b may have only the 26 − 16 = 10 A already free
    site = release_site()
    readings = {"a": drawing((16.0, 16.0, 16.0)), "b": drawing()}
    cycle, admitted = shared(site, readings, {"a": at_setpoint(16)})
    assert cycle.amps == {"a": 13, "b": 13}
    hold_back_increases(cycle, admitted)
    assert cycle.amps == {"a": 13, "b": 10}
    assert codes(cycle)["b"] == "waiting_release"


def test_a_car_slow_to_follow_its_decrease_is_counted_at_what_it_still_draws():
    # a was lowered from 16 to 10 A two seconds ago and still draws 14: b may have only
    # 26 − 14 = 12 A, not the 26 − 13 its fair share would leave
    site = release_site()
    lowered = ChargerMemory(
        setpoint=10,
        changed_at=NOW - 2.0,
        session=True,
        recent_targets=((NOW - 60.0, (16.0, 16.0, 16.0)), (NOW - 2.0, (10.0, 10.0, 10.0))),
    )
    readings = {"a": drawing((14.0, 14.0, 14.0)), "b": drawing()}
    cycle, admitted = shared(site, readings, {"a": lowered})
    assert cycle.amps == {"a": 13, "b": 13}
    hold_back_increases(cycle, admitted)
    assert cycle.amps == {"a": 13, "b": 12}
    assert codes(cycle)["b"] == "waiting_release"


def overdrawing(setpoint: int, excess: float) -> ChargerMemory:
    """A charger at ``setpoint`` for a long time whose car is known to draw ``excess`` more."""
    return ChargerMemory(setpoint=setpoint, changed_at=NOW - 600.0, session=True, overdraw_a=excess)


def test_an_over_drawing_cars_excess_is_counted_once_when_increases_are_held_back():
    # a is set to 10 A and draws 14; b arrives. a's 4 A excess is taken off the capacity once
    # (26 − 4 = 22 to share: 11 + 11, a then budgeted at 11 + 4 = 15); counting its measured
    # 14 A again on top of that excess left b 8 A, for ever, of the 12 A free
    site = release_site()
    readings = {"a": drawing((14.0, 14.0, 14.0)), "b": drawing()}
    cycle, admitted = shared(site, readings, {"a": overdrawing(10, 4.0)})
    assert cycle.fixed[:3] == [4.0, 4.0, 4.0]  # its excess, reserved on each of its phases
    assert cycle.amps == {"a": 11, "b": 11}
    hold_back_increases(cycle, admitted)
    assert cycle.amps == {"a": 11, "b": 11}
    # safe by what is measured: b's 11 A fit in the 26 − 14 A free now, and in what a draws
    # once it follows its own increase with its excess (11 + 4)
    assert cycle.amps["b"] <= 26 - 14 and cycle.amps["b"] + 11 + 4 <= 26


def test_an_over_drawing_car_being_lowered_is_counted_at_what_it_still_draws_once():
    # a is set to 16 A and draws 20 (4 A over); b arrives: a is lowered to its fair share but
    # still draws 20 A for a few seconds, so b may have the 6 A free now — not 26 − 20 − 4
    site = release_site()
    readings = {"a": drawing((20.0, 20.0, 20.0)), "b": drawing()}
    cycle, admitted = shared(site, readings, {"a": overdrawing(16, 4.0)})
    assert cycle.amps == {"a": 11, "b": 11}
    hold_back_increases(cycle, admitted)
    assert cycle.amps == {"a": 11, "b": 6}
    assert codes(cycle)["b"] == "waiting_release"


def test_under_a_live_meter_an_increase_leaves_a_margin_free():
    site = release_site(MeterSpec("m", "main", MeterLocation.EXCLUDING))
    readings = {"a": drawing((16.0, 16.0, 16.0)), "b": drawing()}
    meters = {"m": MeterReading((0.0, 0.0, 0.0), NOW)}
    cycle, admitted = shared(site, readings, {"a": at_setpoint(16)}, meters)
    hold_back_increases(cycle, admitted)
    margin = site.settings.increase_margin_a
    assert cycle.amps["b"] == int(10 - margin)  # 9: the meter's noise does not flap it


def test_an_increase_that_fits_is_granted_in_full():
    site = release_site()
    cycle, admitted = shared(site, {"a": drawing(), "b": drawing()})
    hold_back_increases(cycle, admitted)
    assert cycle.amps == {"a": 13, "b": 13}
    assert set(codes(cycle).values()) == {"limited_by_group"}


def test_a_rising_charger_is_never_lowered_below_its_previous_setpoint_by_the_hold_back():
    # b was at 8 A and its fair share is higher; the 20 A a still holds leaves b only 6 A:
    # b keeps its 8 A (a decrease would come from the share, not from the hold-back)
    site = release_site()
    readings = {"a": drawing((20.0, 20.0, 20.0)), "b": drawing((8.0, 8.0, 8.0))}
    cycle, admitted = shared(site, readings, {"a": at_setpoint(20), "b": at_setpoint(8)})
    assert cycle.amps == {"a": 13, "b": 13}
    hold_back_increases(cycle, admitted)
    assert cycle.amps == {"a": 13, "b": 8}


def test_no_charger_rises_while_its_groups_meter_is_held():
    site = site_of(
        [Group("main", (40.0, 40.0, 40.0))],
        [three_phase("a")],
        [MeterSpec("m", "main", MeterLocation.EXCLUDING)],
        ramp_up_a_per_s=2.0,
    )
    meas = Measurements({"m": MeterReading((5.0, 5.0, 5.0), 0.0)}, {"a": drawing(at=0.0)})
    state = allocate(site, meas, EngineState(), 0.0).state
    a = state.chargers["a"].setpoint
    assert a == 6
    # next second, no meter reading: its last one is held
    cycle = Cycle(site, Measurements({}, {"a": drawing((6.0, 6.0, 6.0), at=1.0)}), state, 1.0)
    cycle.reserve_fixed()
    admitted = cycle.admit()
    cycle.share(admitted)
    assert cycle.loads["main"].source == "held"
    assert cycle.amps["a"] > a  # the share would raise it ...
    hold_back_increases(cycle, admitted)
    assert cycle.amps["a"] == a  # ... but what the meter would show is not known
    assert codes(cycle)["a"] == "meter_held"


@PROPERTY
@given(st.data())
def test_every_increase_fits_with_the_others_counted_at_least_at_their_draw(data):
    # each charger given more than its previous setpoint fits on each of its phases with every
    # other charger counted at the larger of its new setpoint (plus any over-draw it is
    # budgeted with) and its measured draw (a decrease has not taken effect yet; a car may be
    # slow to follow), and its own over-draw on top of its new setpoint. The capacity is that
    # before any over-draw was reserved: each excess is counted once, never less than measured
    site = data.draw(sites())
    first = allocate(site, data.draw(measurements(site, 0.0)), EngineState(), 0.0)
    now = 30.0
    cycle = Cycle(site, data.draw(measurements(site, now)), first.state, now)
    cycle.reserve_fixed()
    admitted = cycle.admit()
    cycle.share(admitted)
    hold_back_increases(cycle, admitted)
    index, amps = cycle.index, cycle.amps
    online = [v for v in cycle.views if v.online]
    risen = [v for v in admitted if amps[v.id] > v.previous and v.id not in cycle.switched]
    target(float(len(risen)))  # steer towards cycles with many increases
    target(float(len(cycle.reserved)), label="over-drawing cars")
    free = list(cycle.capacity)  # what is free before the over-draws are reserved
    for x in online:
        extra = cycle.reserved.get(x.id, (0.0, 0.0, 0.0))
        for g in index.chain[x.id]:
            base = 3 * index.group_position[g]
            for p in range(3):
                free[base + p] += extra[p]
            power = index.power_resource.get(g)
            if power is not None:
                free[power] += sum(extra)
    counted: dict[str, list[float]] = {}
    for v in online:
        extra = cycle.reserved.get(v.id, (0.0, 0.0, 0.0))
        per_phase = [0.0, 0.0, 0.0]
        for p in range(3):
            told = amps[v.id] if p in v.site_phases else 0.0
            per_phase[p] = max(told + extra[p], v.measured[p])
        counted[v.id] = per_phase
    for v in risen:
        k = len(v.site_phases)
        own = cycle.reserved.get(v.id, (0.0, 0.0, 0.0))
        for g in index.chain[v.id]:
            base = 3 * index.group_position[g]
            members = [x for x in online if x.id != v.id and g in index.chain[x.id]]
            for p in v.site_phases:
                others = sum(counted[x.id][p] for x in members)
                assert others + amps[v.id] + own[p] <= free[base + p] + EPS, (v.id, g, p)
            power = index.power_resource.get(g)
            if power is not None:
                others = sum(sum(counted[x.id]) for x in members)
                assert others + k * amps[v.id] + sum(own) <= free[power] + EPS, (v.id, g)


# --------------------------------------------------------------------------- imbalance caps


def imbalance_cycle(
    site: Site, amps: dict[str, int], offline=()
) -> tuple[Cycle, list[ChargerView]]:
    """A cycle whose online chargers have the setpoints ``amps`` (as the share would leave)."""
    readings = {c.id: drawing() for c in site.chargers if c.id not in offline}
    readings.update({cid: ChargerReading(online=False) for cid in offline})
    memories = {cid: at_setpoint(16) for cid in offline}
    cycle = cycle_of(site, readings, memories)
    cycle.reserve_fixed()
    admitted = [v for v in cycle.views if v.online]
    cycle.amps.update(amps)
    return cycle, admitted


def test_a_one_phase_charger_is_lowered_until_the_groups_imbalance_fits():
    site = site_of(
        [Group("main", (63.0, 63.0, 63.0), max_imbalance=10.0)],
        [one_phase("one"), three_phase("three")],
    )
    cycle, admitted = imbalance_cycle(site, {"one": 16, "three": 10})
    cap_imbalance(cycle, admitted)
    assert cycle.amps == {"one": 10, "three": 10}  # L1 26 → 20 A, L2 and L3 at 10 A
    assert codes(cycle)["one"] == "limited_by_imbalance"


def test_the_imbalance_is_counted_on_the_site_phases_of_rotated_chargers():
    # two 1-phase chargers on different site phases through their rotation: balanced enough
    site = site_of(
        [Group("main", (63.0, 63.0, 63.0), max_imbalance=10.0)],
        [one_phase("a", Rotation.L1L2L3), one_phase("b", Rotation.L2L3L1), three_phase("c")],
    )
    cycle, admitted = imbalance_cycle(site, {"a": 16, "b": 16, "c": 6})
    cap_imbalance(cycle, admitted)
    # L1 22, L2 22, L3 6: a (site L1) and b (site L2) are lowered in turn to 10 A each; were
    # b counted on its own L1 (the site's L1), L1 would carry 38 A and b would be paused
    assert cycle.amps == {"a": 10, "b": 10, "c": 6}


def test_below_its_minimum_a_charger_is_paused_by_the_imbalance_cap_not_throttled():
    site = site_of(
        [Group("main", (63.0, 63.0, 63.0), max_imbalance=6.0)],
        [one_phase("one", min_current=8), three_phase("three")],
    )
    cycle, admitted = imbalance_cycle(site, {"one": 8, "three": 6})
    cap_imbalance(cycle, admitted)
    assert cycle.amps == {"one": 0, "three": 6}


def test_offline_chargers_count_towards_the_imbalance_but_only_controllable_ones_are_lowered():
    site = site_of(
        [Group("main", (63.0, 63.0, 63.0), max_imbalance=10.0)],
        [one_phase("gone"), one_phase("one")],
    )
    cycle, admitted = imbalance_cycle(site, {"one": 10}, offline=("gone",))
    assert cycle.amps["gone"] == 16  # assumed: its last setpoint
    cap_imbalance(cycle, admitted)
    assert cycle.amps == {"gone": 16, "one": 0}  # L1 is 16 A over the others even without it


def test_a_group_without_an_imbalance_cap_is_left_alone():
    site = site_of(
        [
            Group("main", (63.0, 63.0, 63.0)),
            Group("sub", (32.0, 32.0, 32.0), "main", max_imbalance=10.0),
        ],
        [one_phase("free"), one_phase("capped", group="sub")],
    )
    cycle, admitted = imbalance_cycle(site, {"free": 32, "capped": 16})
    cap_imbalance(cycle, admitted)
    assert cycle.amps == {"free": 32, "capped": 10}


@st.composite
def imbalance_cases(draw):
    wirings = st.sampled_from([(0,), (0, 1), (0, 1, 2)])
    chargers = []
    amps = {}
    for i in range(draw(st.integers(1, 6))):
        lo = draw(st.integers(6, 10))
        spec = ChargerSpec(
            f"c{i}",
            "main",
            draw(st.sampled_from(list(Rotation))),
            wired_phases=draw(wirings),
            min_current=lo,
        )
        chargers.append(spec)
        amps[spec.id] = draw(st.just(0) | st.integers(lo, 32))
    limit = draw(st.floats(6.0, 32.0))
    site = site_of([Group("main", (100.0, 100.0, 100.0), max_imbalance=limit)], chargers)
    return site, amps


@settings(max_examples=300, deadline=None)
@given(imbalance_cases())
def test_imbalance_caps_only_lower_one_and_two_phase_chargers_until_balanced(case):
    site, amps = case
    cycle, admitted = imbalance_cycle(site, amps)
    cap_imbalance(cycle, admitted)
    limit = site.groups[0].max_imbalance
    after = cycle.amps
    phases = {v.id: v.site_phases for v in admitted}
    lo = {v.id: v.lo for v in admitted}
    for cid, a in amps.items():
        assert after[cid] <= a
        assert after[cid] == 0 or after[cid] >= lo[cid]  # never below the minimum
        if len(phases[cid]) == 3:
            assert after[cid] == a  # a 3-phase charger loads every phase alike
    ev = [0.0, 0.0, 0.0]
    for cid, a in after.items():
        for p in phases[cid]:
            ev[p] += a
    heavy, light = ev.index(max(ev)), ev.index(min(ev))
    if ev[heavy] - ev[light] > limit + EPS:
        # not balanced: then nothing that could still be lowered is on the heavy phase alone
        assert not [
            cid
            for cid, a in after.items()
            if a > 0 and heavy in phases[cid] and light not in phases[cid]
        ]
