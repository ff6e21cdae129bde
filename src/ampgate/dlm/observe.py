"""Per-charger bookkeeping before allocation: what each charger really does, measured.

Turns one charger's reading and its memory into a :class:`ChargerView`: which site phases it
loads, its bounds, its previous setpoint — from what is *measured* (reference dlm.md 9):

- **phases**: a charger is accounted on the phases its mode allows (1-phase mode: its L1; a
  car seen drawing on fewer phases: those) *and* on every terminal it is measured drawing on,
  whatever it was told — a terminal the site file does not list as wired included (a miswired
  installation, a charger that ignores its phase setting): while it is measured drawing there,
  and for the rest of the session once seen (a car that drew there once will again when it
  resumes). A commanded phase switch is a request until the charger confirms it
  (the phases it reports, and the currents when the car draws): until then the charger is
  accounted on the old and the new phases. Not confirmed within
  ``phase_switch_timeout_s``: notice ``phase_switch_not_followed``, the charger's mode is what
  it reports, and it is not switched again for ``phase_switch_retry_s``;
- **over-draw**: a car drawing more than its setpoint + ``overdraw_margin_a`` once it had
  :data:`~ampgate.dlm.loads.CAR_REACTION_S` to follow is budgeted at what it draws (notice
  ``charger_overdraw``); one that keeps drawing more than even that — it does not follow its
  pilot — for ``overdraw_pause_s`` is paused;
- **stops**: after the engine paused a car, the time the car stopped drawing is kept: the
  restart delay protects a contactor that opened, and runs from then;
- session, phase use, under-draw and fairness time as before.

The view carries the memory fields as plain attributes; the engine builds the next
:class:`ChargerMemory` once, at the end of the cycle.

Longer than 400 lines on purpose: measured-over-commanded is one set of rules that read each
other's results (phases, found draw, switch confirmation, over- and under-draw, stops), and
:func:`observe_charger` applies them in one pass per charger on the hot path.
"""

from __future__ import annotations

import math
from typing import Literal

from ampgate.dlm.model import (
    CAR_REACTION_S,
    MAX_CHARGING_CURRENT,
    MIN_CHARGING_CURRENT,
    WRITE_S,
    ChargerMemory,
    ChargerReading,
    ChargerSpec,
    EngineSettings,
    Notice,
    PhaseTriple,
    VehicleState,
    on_phases,
)
from ampgate.dlm.topology import SiteIndex

_CHARGING = VehicleState.CHARGING
_NOT_CONNECTED = VehicleState.NOT_CONNECTED
_UNKNOWN = VehicleState.UNKNOWN
_WANTS = frozenset(v for v in VehicleState if v.wants_current)
_NO_DRAW: PhaseTriple = (0.0, 0.0, 0.0)


class ChargerView:
    """The engine's working view of one charger for this cycle (internal, mutable)."""

    __slots__ = (
        "changed_at",
        "drawing",
        "hi",
        "hi_code",
        "id",
        "known",
        "lo",
        "max_current",
        "measured",
        "measured_at",
        "mode",
        "notices",
        "online",
        "overdraw_a",
        "overdraw_since",
        "pause_overdraw",
        "paused_at",
        "phase_blocked_until",
        "phase_pending_since",
        "phase_switched_at",
        "phases",
        "phases_before",
        "phases_in_use",
        "previous",
        "ramp_hi",
        "recent_draw",
        "recent_targets",
        "reserve",
        "served_s",
        "session",
        "site_phases",
        "spec",
        "stopped_at",
        "switchable",
        "terminals",
        "underdraw_cap",
        "underdraw_since",
        "vehicle",
        "wants",
    )  # fmt: skip
    spec: ChargerSpec
    id: str
    known: bool
    """The engine has a memory of this charger from earlier cycles."""
    online: bool
    vehicle: VehicleState
    wants: bool
    previous: int
    """The setpoint in effect before this cycle."""
    phases: Literal[1, 3] | None
    changed_at: float | None
    paused_at: float | None
    phase_switched_at: float | None
    served_s: float
    phases_in_use: frozenset[int] | None
    underdraw_since: float | None
    underdraw_cap: int | None
    session: bool
    recent_draw: tuple[tuple[float, PhaseTriple], ...]
    recent_targets: tuple[tuple[float, PhaseTriple], ...]
    lo: int
    max_current: int
    switchable: bool
    measured: PhaseTriple
    measured_at: float
    drawing: frozenset[int]
    """The terminals the car is measured drawing on (wired or not)."""
    mode: Literal[1, 3] | None
    terminals: tuple[int, ...]
    site_phases: tuple[int, ...]
    phases_before: tuple[Literal[1, 3] | None, tuple[int, ...], tuple[int, ...]]
    phase_pending_since: float | None
    phase_blocked_until: float | None
    overdraw_a: float
    overdraw_since: float | None
    stopped_at: float | None
    reserve: float
    pause_overdraw: bool
    hi: int
    hi_code: str
    ramp_hi: int
    notices: list[Notice]

    def memory(self, setpoint: int) -> ChargerMemory:
        """The charger's memory with ``setpoint`` (other fields as observed)."""
        return ChargerMemory(
            setpoint, self.phases, self.changed_at, self.paused_at, self.phase_switched_at,
            self.served_s, self.phases_in_use, self.underdraw_since, self.underdraw_cap,
            self.session, self.recent_draw, self.recent_targets, self.phase_pending_since,
            self.phase_blocked_until, self.overdraw_a, self.overdraw_since, self.stopped_at,
        )  # fmt: skip


def terminals_for(
    mode: Literal[1, 3] | None, wired: tuple[int, ...], known: frozenset[int] | None
) -> tuple[int, ...]:
    """Terminals reserved in phase mode ``mode`` (1 = the charger's own L1).

    Otherwise the wired terminals the car has been seen drawing on, or all wired ones.
    """
    if mode == 1:
        return (0,)
    if known and not known.issuperset(wired):
        picked = tuple(p for p in wired if p in known)
        if picked:
            return picked
    return wired


def stray_terminals(wired: tuple[int, ...], known: frozenset[int] | None) -> frozenset[int]:
    """Terminals not listed as wired that the car has been seen drawing on this session."""
    if not known:
        return frozenset()
    return known.difference(wired)


def confirms(
    mode: Literal[1, 3],
    wired: tuple[int, ...],
    reported: frozenset[int] | None,
    drawing: frozenset[int],
) -> bool:
    """True when the charger's reported phases and its currents show phase mode ``mode``."""
    if mode == 1:
        if drawing - {0}:
            return False
        if reported is not None:
            return bool(reported) and reported <= {0}
        return drawing == {0}
    if reported is not None:
        return reported >= set(wired)
    return len(drawing) > 1


def _actual_mode(reported: frozenset[int] | None, drawing: frozenset[int]) -> Literal[1, 3]:
    seen = drawing or reported or frozenset()
    return 1 if seen and seen <= {0} else 3


def observe_charger(
    spec: ChargerSpec,
    reading: ChargerReading | None,
    memory: ChargerMemory | None,
    index: SiteIndex,
    settings: EngineSettings,
    now: float,
    dt: float,
    ramp_step: int | None = None,
) -> ChargerView:
    """Update one charger's memory from its reading and return its view for this cycle.

    ``ramp_step`` is the largest increase this cycle (computed from ``dt`` when not given).
    """
    v = ChargerView()
    v.notices = []
    cid = spec.id
    online = reading is not None and reading.online
    mem = memory if memory is not None else _EMPTY
    setpoint = mem.setpoint
    found: int | None = None
    if memory is None and reading is not None and reading.last_setpoint is not None:
        setpoint = found = reading.last_setpoint
    phases, changed_at, paused_at = mem.phases, mem.changed_at, mem.paused_at
    served_s, phases_in_use, session = mem.served_s, mem.phases_in_use, mem.session
    underdraw_since, underdraw_cap = mem.underdraw_since, mem.underdraw_cap
    recent_draw, recent_targets = mem.recent_draw, mem.recent_targets
    pending, blocked = mem.phase_pending_since, mem.phase_blocked_until
    overdraw_a, overdraw_since, stopped_at = mem.overdraw_a, mem.overdraw_since, mem.stopped_at
    wired = spec.wired_phases
    lo = MIN_CHARGING_CURRENT if spec.min_current < MIN_CHARGING_CURRENT else spec.min_current
    max_eff = spec.max_current if spec.max_current < MAX_CHARGING_CURRENT else MAX_CHARGING_CURRENT
    drawing: frozenset[int] = frozenset()
    reported = None
    measured_at = now
    if not online:
        vehicle, wants, measured = _UNKNOWN, False, _NO_DRAW
        switchable = spec.phase_change_possible and len(wired) == 3
    else:
        assert reading is not None
        vehicle = reading.vehicle
        wants = vehicle in _WANTS
        if 0.0 < reading.timestamp <= now:
            measured_at = reading.timestamp
        pcp = reading.phase_change_possible
        switchable = (spec.phase_change_possible if pcp is None else pcp) and len(wired) == 3
        if vehicle is _NOT_CONNECTED:  # session over: forget everything but the phase mode
            changed_at = paused_at = underdraw_since = underdraw_cap = phases_in_use = None
            served_s, session, recent_targets = 0.0, False, ()
            overdraw_a, overdraw_since, stopped_at = 0.0, None, None
        elif wants:
            if not session:
                session, served_s = True, 0.0
                phases_in_use = underdraw_since = underdraw_cap = None
                overdraw_a, overdraw_since = 0.0, None
            if setpoint > 0:
                served_s += dt
        if reading.max_current is not None and reading.max_current < max_eff:
            max_eff = reading.max_current
        table = index.rotation_tables[cid]
        m = [0.0, 0.0, 0.0]
        currents = reading.currents
        for terminal in (0, 1, 2):
            amps = float(currents[terminal])
            if amps > 0.0:
                m[table[terminal]] += amps
        measured = (m[0], m[1], m[2])
        threshold = settings.phase_use_threshold_a
        # every terminal, wired or not: current measured where the site file says nothing is
        # wired flows through a fuse all the same
        drawing = frozenset(t for t in (0, 1, 2) if currents[t] >= threshold)
        reported = reading.phases_reported
        if found:  # what it was told before the engine started: the car may still draw it
            on = {table[t] for t in (drawing or frozenset(wired))}
            recent_targets = ((measured_at, on_phases(float(found), on)),)
    if blocked is not None and now >= blocked:
        blocked = None
    if pending is not None and online and switchable and phases in (1, 3):
        if confirms(phases, wired, reported, drawing):
            pending = None
        elif now - pending >= settings.phase_switch_timeout_s:
            actual = _actual_mode(reported, drawing)
            v.notices.append(
                Notice(
                    "phase_switch_not_followed",
                    cid,
                    {
                        "wanted_phases": phases,
                        "reported": None if reported is None else sorted(t + 1 for t in reported),
                        "drawing_on": sorted(t + 1 for t in drawing),
                        "retry_after_s": settings.phase_switch_retry_s,
                    },
                )
            )
            phases, pending = actual, None
            blocked = now + settings.phase_switch_retry_s
    if blocked is not None:
        switchable = False
    mode: Literal[1, 3] | None = (phases or 3) if switchable else None
    if online:
        assert reading is not None
        if vehicle is _CHARGING and drawing:
            seen = set(drawing)
            if mode == 1 and pending is None:
                seen.add(0)
            if not phases_in_use:
                phases_in_use = frozenset(seen)
            elif not seen <= phases_in_use:
                phases_in_use = phases_in_use | seen
        if not wants or setpoint <= 0:
            underdraw_since = None
        else:
            underdraw_since, underdraw_cap = _track_underdraw(
                reading, phases_in_use, setpoint, lo, max_eff, settings, now,
                underdraw_since, underdraw_cap,
            )  # fmt: skip
        if setpoint == 0 and paused_at is not None and stopped_at is None and not drawing:
            stopped_at = measured_at  # the car followed the pause: its contactor opened
        elif setpoint > 0:
            stopped_at = None
    base = wired if pending is not None else terminals_for(mode, wired, phases_in_use)
    extra = drawing.union(stray_terminals(wired, phases_in_use)).difference(base)
    terminals = tuple(sorted(extra.union(base))) if extra else base
    reserve = 0.0
    if online and vehicle is _CHARGING and setpoint >= lo and drawing:
        assert reading is not None
        # the most it may draw by what it was told: its setpoint, or a higher one it was told
        # within its reaction time (and the write's) before this reading
        ceiling = float(setpoint)
        recent = measured_at - CAR_REACTION_S - WRITE_S
        settled_on = None  # the last target it had time to reach before the recent ones
        for t, target in recent_targets:
            if t > recent:
                ceiling = max(ceiling, target[0], target[1], target[2])
            else:
                settled_on = target
        if settled_on is not None:
            ceiling = max(ceiling, settled_on[0], settled_on[1], settled_on[2])
        draw = max(reading.currents[t] for t in terminals)
        excess = draw - ceiling
        settled = changed_at is None or measured_at - changed_at >= CAR_REACTION_S + WRITE_S
        margin = settings.overdraw_margin_a
        if excess > margin:
            if overdraw_a <= 0.0:
                v.notices.append(
                    Notice(
                        "charger_overdraw",
                        cid,
                        {"amps": round(draw, 1), "setpoint": setpoint, "excess": round(excess, 1)},
                    )
                )
                overdraw_a, overdraw_since = excess, None
            elif settled and excess > overdraw_a + margin:  # more than even its budget
                overdraw_since = overdraw_since if overdraw_since is not None else now
            else:
                overdraw_a, overdraw_since = max(overdraw_a, excess), None
            reserve = max(overdraw_a, excess)
        elif settled and draw - setpoint <= margin / 2:
            overdraw_a, overdraw_since = 0.0, None
        else:
            reserve = overdraw_a
    hi, code = max_eff, "at_max_current"
    if underdraw_cap is not None and underdraw_cap < hi:
        hi, code = (lo if underdraw_cap < lo else underdraw_cap), "underdraw"
    step = ramp_step if ramp_step is not None else ramp_step_of(settings, dt)
    ramp_hi = setpoint + step if setpoint > 0 else max(lo, step)
    v.ramp_hi = lo if ramp_hi < lo else ramp_hi
    v.spec, v.id, v.known, v.online, v.vehicle, v.wants = (
        spec, cid, memory is not None, online, vehicle, wants,
    )  # fmt: skip
    v.previous, v.phases, v.changed_at, v.paused_at = setpoint, phases, changed_at, paused_at
    v.phase_switched_at, v.served_s, v.phases_in_use = (
        mem.phase_switched_at, served_s, phases_in_use,
    )  # fmt: skip
    v.underdraw_since, v.underdraw_cap, v.session = underdraw_since, underdraw_cap, session
    v.recent_draw, v.lo, v.max_current, v.switchable = recent_draw, lo, max_eff, switchable
    v.measured, v.mode, v.terminals = measured, mode, terminals
    v.recent_targets, v.measured_at, v.drawing = recent_targets, measured_at, drawing
    v.phase_pending_since, v.phase_blocked_until = pending, blocked
    v.overdraw_a, v.overdraw_since, v.stopped_at, v.reserve = (
        overdraw_a, overdraw_since, stopped_at, reserve,
    )  # fmt: skip
    v.pause_overdraw = (
        overdraw_since is not None and now - overdraw_since >= settings.overdraw_pause_s
    )
    v.site_phases = index.site_phases(cid, terminals)
    v.hi, v.hi_code = hi, code
    return v


def ramp_step_of(settings: EngineSettings, dt: float) -> int:
    """Largest setpoint increase after ``dt`` seconds: ramp rate × dt, at least 1 A."""
    return max(1, math.floor(settings.ramp_up_a_per_s * dt + 1e-9))


_EMPTY = ChargerMemory()


def _track_underdraw(
    reading: ChargerReading,
    phases_in_use: frozenset[int] | None,
    setpoint: int,
    lo: int,
    max_eff: int,
    settings: EngineSettings,
    now: float,
    since: float | None,
    cap: int | None,
) -> tuple[float | None, int | None]:
    """Under-draw (since, cap) of a car with a setpoint: lower the cap of a car drawing well
    below its setpoint for ``underdraw_settle_s``; lift it when it draws again."""
    currents = reading.currents
    if phases_in_use and len(phases_in_use) < 3:
        draw = max(currents[p] for p in phases_in_use)
    else:
        draw = max(currents)
    margin = settings.underdraw_margin_a
    if draw >= setpoint - margin / 2:  # drawing at its setpoint: give current back
        return None, None
    if draw >= setpoint - margin:
        return None, cap
    if since is None:
        since = now
    if now - since >= settings.underdraw_settle_s:
        cap = min(max_eff, max(lo, math.ceil(draw + margin - 1e-9)))
    return since, cap
