"""One charger's view from its reading and memory (ampgate.dlm.observe), measured over commanded.

Each test builds a one-group site, observes one charger and checks the view the engine then
allocates from: the site phases it is accounted on, what it is budgeted at, its bounds and its
ramp limit.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from ampgate.dlm import (
    ChargerMemory,
    ChargerReading,
    ChargerSpec,
    EngineSettings,
    Group,
    Rotation,
    Site,
    VehicleState,
    check_site,
)
from ampgate.dlm.observe import ChargerView, observe_charger, ramp_step_of
from ampgate.dlm.topology import site_index

CHARGING = VehicleState.CHARGING
NOW = 1000.0


def observe(
    spec: ChargerSpec,
    reading: ChargerReading | None,
    memory: ChargerMemory | None = None,
    *,
    now: float = NOW,
    dt: float = 1.0,
    **engine: float,
) -> ChargerView:
    """The view of ``spec`` (alone under a 3 × 63 A group) for ``reading`` and ``memory``."""
    group = Group("main", (63.0, 63.0, 63.0))
    site = check_site(Site((group,), (spec,), (), EngineSettings(**engine)))
    return observe_charger(spec, reading, memory, site_index(site), site.settings, now, dt)


def charging(amps=(0.0, 0.0, 0.0), vehicle=CHARGING, at: float = NOW, **kw) -> ChargerReading:
    """An online reading of per-terminal ``amps``, measured at ``at``."""
    return ChargerReading(True, tuple(float(a) for a in amps), vehicle, at, **kw)


def running(setpoint: int, **kw) -> ChargerMemory:
    """The memory of a charger that has been at ``setpoint`` for a long time, in a session."""
    return ChargerMemory(setpoint=setpoint, changed_at=NOW - 600.0, session=True, **kw)


# --------------------------------------------------------------------------- phases


def test_measured_terminals_are_mapped_through_the_rotation_to_site_phases():
    spec = ChargerSpec("c", "main", rotation=Rotation.L2L3L1)  # its L1 is the site's L2
    v = observe(spec, charging((10.0, 0.0, 0.0)), running(10))
    assert v.measured == (0.0, 10.0, 0.0)
    assert v.drawing == frozenset({0})
    assert v.site_phases == (1,)


def test_a_car_seen_drawing_on_one_terminal_reserves_only_that_phase():
    spec = ChargerSpec("c", "main")
    v = observe(spec, charging((0.0, 12.0, 0.0)), running(12))
    assert v.phases_in_use == frozenset({1})
    assert v.terminals == (1,)
    assert v.site_phases == (1,)
    # once known, the phase use holds while the car pauses (draws nothing for a moment)
    idle = observe(spec, charging((0.0, 0.0, 0.0)), v.memory(12))
    assert idle.site_phases == (1,)


def test_a_charger_told_one_phase_that_draws_on_three_is_accounted_on_three():
    spec = ChargerSpec("c", "main", phase_change_possible=True)
    memory = running(10, phases=1)  # 1-phase mode, switch long confirmed
    told = observe(spec, charging((10.0, 0.0, 0.0)), memory)
    assert told.mode == 1 and told.site_phases == (0,)
    v = observe(spec, charging((10.0, 10.0, 10.0)), memory)
    assert v.mode == 1  # what it was told ...
    assert v.site_phases == (0, 1, 2)  # ... but it is budgeted where it draws


def test_a_charger_drawing_on_a_terminal_not_listed_as_wired_is_accounted_there():
    # the site file says its L1 only; it is measured drawing on its L2, which sits on the
    # site's L3 through its rotation (a miswired installation): accounted on that site phase
    spec = ChargerSpec("c", "main", Rotation.L2L3L1, wired_phases=(0,))
    v = observe(spec, charging((0.0, 10.0, 0.0)), running(10))
    assert v.measured == (0.0, 0.0, 10.0)
    assert v.drawing == frozenset({1})
    assert v.site_phases == (1, 2)  # its L1 as configured, and where it draws
    # drawing more there than its setpoint allows is over-draw, like on any terminal
    over = observe(spec, charging((0.0, 16.0, 0.0)), running(10))
    assert [n.kind for n in over.notices] == ["charger_overdraw"]
    assert over.previous + over.reserve == 16.0
    # seen there once, it stays accounted there for the session, through a pause ...
    idle = observe(spec, charging((0.0, 0.0, 0.0)), v.memory(10))
    assert idle.site_phases == (1, 2)
    # ... and while the charger is offline; a new session starts from the site file again
    gone = observe(spec, None, v.memory(10))
    assert gone.terminals == (0, 1)
    left = observe(spec, charging(vehicle=VehicleState.NOT_CONNECTED), v.memory(10))
    assert left.site_phases == (1,)


def test_a_phase_switch_not_yet_confirmed_is_accounted_on_old_and_new_phases():
    spec = ChargerSpec("c", "main", phase_change_possible=True)
    pending = running(10, phases=1, phase_pending_since=NOW - 2.0)  # told 3 → 1 two s ago
    still_three = charging((10.0, 10.0, 10.0), phases_reported=frozenset({0, 1, 2}))
    v = observe(spec, still_three, pending)
    assert v.phase_pending_since == NOW - 2.0
    assert v.site_phases == (0, 1, 2)
    # reported and measured on its L1 only: confirmed, accounted on L1 alone
    done = observe(spec, charging((10.0, 0.0, 0.0), phases_reported=frozenset({0})), pending)
    assert done.phase_pending_since is None
    assert done.site_phases == (0,)


def test_a_phase_switch_the_charger_does_not_follow_is_dropped_and_blocked():
    s = EngineSettings()
    spec = ChargerSpec("c", "main", phase_change_possible=True)
    pending = running(10, phases=1, phase_pending_since=NOW - s.phase_switch_timeout_s)
    v = observe(spec, charging((10.0, 10.0, 10.0), phases_reported=frozenset({0, 1, 2})), pending)
    assert [n.kind for n in v.notices] == ["phase_switch_not_followed"]
    assert v.phases == 3  # the mode is what the charger does
    assert v.phase_pending_since is None
    assert v.phase_blocked_until == NOW + s.phase_switch_retry_s
    assert not v.switchable and v.mode is None
    assert v.site_phases == (0, 1, 2)


# --------------------------------------------------------------------------- budget


def test_a_car_drawing_more_than_its_setpoint_is_budgeted_at_what_it_draws():
    spec = ChargerSpec("c", "main")
    v = observe(spec, charging((16.0, 16.0, 16.0)), running(10))
    assert [n.kind for n in v.notices] == ["charger_overdraw"]
    assert v.previous + v.reserve == 16.0
    assert not v.pause_overdraw  # budgeted, not paused (yet)


def test_a_car_within_the_overdraw_margin_is_not_budgeted_extra():
    spec = ChargerSpec("c", "main")
    margin = EngineSettings().overdraw_margin_a
    v = observe(spec, charging((10.0 + margin, 0.0, 0.0)), running(10))
    assert v.notices == [] and v.reserve == 0.0


def test_a_car_still_following_an_earlier_higher_setpoint_is_not_over_drawing():
    # lowered from 16 to 10 one second ago: a car has up to CAR_REACTION_S to follow
    spec = ChargerSpec("c", "main")
    memory = ChargerMemory(
        setpoint=10,
        changed_at=NOW - 1.0,
        session=True,
        recent_targets=((NOW - 60.0, (16.0, 16.0, 16.0)), (NOW - 1.0, (10.0, 10.0, 10.0))),
    )
    v = observe(spec, charging((16.0, 16.0, 16.0)), memory)
    assert v.notices == [] and v.reserve == 0.0


def test_a_car_told_a_higher_setpoint_within_its_reaction_time_may_still_draw_it():
    # raised from 10 to 16 three seconds ago, lowered back to 10 one second ago: a car that
    # went up to 16 A has not had time to come back down
    spec = ChargerSpec("c", "main")
    memory = ChargerMemory(
        setpoint=10,
        changed_at=NOW - 1.0,
        session=True,
        recent_targets=(
            (NOW - 60.0, (10.0, 10.0, 10.0)),
            (NOW - 3.0, (16.0, 16.0, 16.0)),
            (NOW - 1.0, (10.0, 10.0, 10.0)),
        ),
    )
    v = observe(spec, charging((16.0, 16.0, 16.0)), memory)
    assert v.notices == [] and v.reserve == 0.0


def test_a_car_that_draws_more_than_even_its_budget_is_paused_after_a_while():
    s = EngineSettings()
    spec = ChargerSpec("c", "main")
    budgeted = running(10, overdraw_a=6.0)  # known to draw 16 at setpoint 10
    worse = charging((26.0, 26.0, 26.0))
    first = observe(spec, worse, budgeted)
    assert first.overdraw_since == NOW and not first.pause_overdraw
    later = observe(spec, worse, first.memory(10), now=NOW + s.overdraw_pause_s)
    assert later.pause_overdraw


def test_an_offline_charger_is_not_measured_and_wants_nothing():
    spec = ChargerSpec("c", "main")
    for reading in (None, ChargerReading(online=False, currents=(16.0, 16.0, 16.0))):
        v = observe(spec, reading, running(16))
        assert not v.online and not v.wants
        assert v.vehicle is VehicleState.UNKNOWN
        assert v.measured == (0.0, 0.0, 0.0)
        assert v.previous == 16  # the engine then assumes its last setpoint or failsafe


def test_a_reading_is_dated_when_it_was_measured_not_when_it_is_used():
    spec = ChargerSpec("c", "main")
    assert observe(spec, charging((6.0, 6.0, 6.0), at=NOW - 3.0)).measured_at == NOW - 3.0
    # no time (0) or a time in the future: as of now
    assert observe(spec, charging((6.0, 6.0, 6.0), at=0.0)).measured_at == NOW
    assert observe(spec, charging((6.0, 6.0, 6.0), at=NOW + 5.0)).measured_at == NOW


def test_a_setpoint_found_on_the_charger_at_start_is_what_it_may_still_draw():
    # first sight of the charger (no memory): the setpoint it holds is the previous one, and a
    # target on the phases it draws on (through its rotation), dated at its reading
    spec = ChargerSpec("c", "main", rotation=Rotation.L3L1L2)
    v = observe(spec, charging((14.0, 0.0, 0.0), at=NOW - 1.0, last_setpoint=16))
    assert v.previous == 16 and not v.known
    assert v.recent_targets == ((NOW - 1.0, (0.0, 0.0, 16.0)),)


def test_a_car_drawing_well_below_its_setpoint_for_the_settle_time_is_capped_near_its_draw():
    s = EngineSettings()
    spec = ChargerSpec("c", "main")
    low = charging((9.0, 9.0, 9.0))
    first = observe(spec, low, running(20))
    assert first.underdraw_since == NOW and first.hi == 32
    settled = observe(spec, low, first.memory(20), now=NOW + s.underdraw_settle_s)
    assert settled.hi == math.ceil(9.0 + s.underdraw_margin_a) and settled.hi_code == "underdraw"
    # drawing its setpoint again lifts the cap
    back = observe(spec, charging((20.0, 20.0, 20.0)), settled.memory(11))
    assert back.hi == 32 and back.underdraw_cap is None


def test_a_car_leaving_ends_the_session_and_its_fairness_time():
    spec = ChargerSpec("c", "main")
    memory = running(16, served_s=900.0, phases_in_use=frozenset({0}))
    v = observe(spec, charging(vehicle=VehicleState.NOT_CONNECTED), memory)
    assert not v.session and v.served_s == 0.0 and v.phases_in_use is None
    assert v.site_phases == (0, 1, 2)


def test_charging_time_counts_only_while_the_car_has_a_setpoint():
    spec = ChargerSpec("c", "main")
    assert observe(spec, charging((8.0, 8.0, 8.0)), running(8), dt=2.5).served_s == 2.5
    assert observe(spec, charging(), running(0), dt=2.5).served_s == 0.0


def test_the_restart_delay_runs_from_when_the_paused_car_stopped_drawing():
    spec = ChargerSpec("c", "main")
    paused = ChargerMemory(setpoint=0, paused_at=NOW - 3.0, session=True)
    assert observe(spec, charging((7.0, 7.0, 7.0)), paused).stopped_at is None  # still drawing
    stopped = observe(spec, charging(at=NOW - 0.5), paused)
    assert stopped.stopped_at == NOW - 0.5


# --------------------------------------------------------------------------- bounds and ramp


def test_bounds_are_at_least_six_amps_and_at_most_what_the_charger_allows():
    v = observe(ChargerSpec("c", "main", min_current=0, max_current=32), charging())
    assert (v.lo, v.max_current) == (6, 32)
    v = observe(ChargerSpec("c", "main", min_current=8), charging(max_current=20))
    assert (v.lo, v.max_current, v.hi) == (8, 20, 20)


def test_the_ramp_limit_is_the_previous_setpoint_plus_rate_times_elapsed_time():
    spec = ChargerSpec("c", "main")
    reading = charging((10.0, 10.0, 10.0))
    assert observe(spec, reading, running(10), ramp_up_a_per_s=2.0, dt=1.0).ramp_hi == 12
    assert observe(spec, reading, running(10), ramp_up_a_per_s=2.0, dt=3.0).ramp_hi == 16
    # at least 1 A per cycle however short the cycle
    assert observe(spec, reading, running(10), ramp_up_a_per_s=2.0, dt=0.1).ramp_hi == 11


def test_a_charger_starting_from_zero_may_start_at_its_minimum_at_once():
    spec = ChargerSpec("c", "main", min_current=8)
    v = observe(spec, charging(), running(0), ramp_up_a_per_s=2.0, dt=1.0)
    assert v.ramp_hi == 8
    assert observe(spec, charging(), running(0), ramp_up_a_per_s=2.0, dt=10.0).ramp_hi == 20


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.1, 20.0),
    dt=st.floats(0.0, 30.0),
    previous=st.sampled_from([0, 6, 7, 10, 16, 31, 32]),
    min_current=st.integers(0, 12),
)
def test_ramp_limit_property(rate, dt, previous, min_current):
    spec = ChargerSpec("c", "main", min_current=min_current)
    v = observe(spec, charging(), running(previous), ramp_up_a_per_s=rate, dt=dt)
    step = max(1, math.floor(rate * dt + 1e-9))
    assert ramp_step_of(EngineSettings(ramp_up_a_per_s=rate), dt) == step
    assert v.ramp_hi >= v.lo  # never a limit below the minimum (that would mean 1–5 A)
    if previous > 0:
        assert v.ramp_hi == max(v.lo, previous + step)
    else:
        assert v.ramp_hi == max(v.lo, step)


terminal_amps = st.floats(0.0, 34.0).map(lambda x: round(x, 1))


@settings(max_examples=300, deadline=None)
@given(
    rotation=st.sampled_from(list(Rotation)),
    wired=st.sampled_from([(0, 1, 2), (0,), (1,), (2,), (0, 1)]),
    currents=st.tuples(terminal_amps, terminal_amps, terminal_amps),
    setpoint=st.sampled_from([0, 6, 10, 16, 32]),
    mode=st.sampled_from([None, 1, 3]),
    pending=st.booleans(),
    in_use=st.none() | st.frozensets(st.integers(0, 2), min_size=1),
    vehicle=st.sampled_from(list(VehicleState)),
    stray=st.booleans(),
)
def test_every_phase_a_charger_is_measured_drawing_on_is_in_its_budget(
    rotation, wired, currents, setpoint, mode, pending, in_use, vehicle, stray
):
    # measured over commanded: whatever the charger was told (its mode, a pending switch, the
    # phases its car used before, the terminals the site file lists as wired), each site phase
    # it draws on (≥ the phase-use threshold) is one it is accounted on, and what it is
    # measured drawing is mapped through its rotation
    spec = ChargerSpec("c", "main", rotation, wired, phase_change_possible=True)
    drawn = tuple(currents[t] if t in wired or stray else 0.0 for t in range(3))
    memory = ChargerMemory(
        setpoint=setpoint,
        phases=mode,
        changed_at=NOW - 600.0,
        session=True,
        phases_in_use=in_use,
        phase_pending_since=NOW - 1.0 if pending else None,
    )
    v = observe(spec, charging(drawn, vehicle=vehicle), memory)
    threshold = EngineSettings().phase_use_threshold_a
    table = {t: rotation.site_phase(t) for t in range(3)}
    drawing_on = {t for t in range(3) if drawn[t] >= threshold}
    for t in drawing_on:
        assert table[t] in v.site_phases, (t, v.site_phases)
    expected = [0.0, 0.0, 0.0]
    for t in range(3):
        expected[table[t]] += drawn[t]
    assert v.measured == tuple(expected)
    # beyond its wired terminals, only where it draws or its car drew this session
    seen = set(in_use or ()) if vehicle is not VehicleState.NOT_CONNECTED else set()
    assert set(v.site_phases) <= {table[t] for t in {*wired, *drawing_on, *seen}}
    # and a charging car over its setpoint by more than the margin is budgeted at its draw
    draw = max(drawn[t] for t in v.terminals)
    margin = EngineSettings().overdraw_margin_a
    if vehicle is CHARGING and setpoint >= v.lo and v.drawing and draw > setpoint + margin:
        assert v.previous + v.reserve >= draw - 1e-9
