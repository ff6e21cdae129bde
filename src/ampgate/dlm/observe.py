"""Per-charger bookkeeping before allocation: session, phase use, under-draw, fairness time.

Turns one charger's reading and its memory into a :class:`ChargerView`: what the engine must
assume about it this cycle (which site phases it loads, its bounds, its previous setpoint). The
view carries the memory fields as plain attributes; the engine builds the next
:class:`ChargerMemory` once, at the end of the cycle (no per-step dataclass copies).
"""

from __future__ import annotations

import math
from typing import Literal

from ampgate.dlm.model import (
    MAX_CHARGING_CURRENT,
    MIN_CHARGING_CURRENT,
    ChargerMemory,
    ChargerReading,
    ChargerSpec,
    EngineSettings,
    PhaseTriple,
    VehicleState,
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
        "hi",
        "hi_code",
        "id",
        "known",
        "lo",
        "max_current",
        "measured",
        "measured_at",
        "mode",
        "online",
        "paused_at",
        "phase_switched_at",
        "phases",
        "phases_in_use",
        "previous",
        "recent_draw",
        "recent_setpoints",
        "served_s",
        "session",
        "site_phases",
        "spec",
        "switchable",
        "terminals",
        "underdraw_cap",
        "underdraw_since",
        "vehicle",
        "wants",
    )

    def memory(self, setpoint: int) -> ChargerMemory:
        """The charger's memory with ``setpoint`` (other fields as observed)."""
        return ChargerMemory(
            setpoint, self.phases, self.changed_at, self.paused_at, self.phase_switched_at,
            self.served_s, self.phases_in_use, self.underdraw_since, self.underdraw_cap,
            self.session, self.recent_draw, self.recent_setpoints,
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
    cid = spec.id
    online = reading is not None and reading.online
    mem = memory if memory is not None else _EMPTY
    setpoint = mem.setpoint
    if memory is None and reading is not None and reading.last_setpoint is not None:
        setpoint = reading.last_setpoint
    phases, changed_at, paused_at = mem.phases, mem.changed_at, mem.paused_at
    served_s, phases_in_use, session = mem.served_s, mem.phases_in_use, mem.session
    underdraw_since, underdraw_cap = mem.underdraw_since, mem.underdraw_cap
    recent_draw, recent_setpoints = mem.recent_draw, mem.recent_setpoints
    wired = spec.wired_phases
    lo = MIN_CHARGING_CURRENT if spec.min_current < MIN_CHARGING_CURRENT else spec.min_current
    max_eff = spec.max_current if spec.max_current < MAX_CHARGING_CURRENT else MAX_CHARGING_CURRENT
    if not online:
        vehicle, wants, measured = _UNKNOWN, False, _NO_DRAW
        switchable = spec.phase_change_possible and len(wired) == 3
    else:
        assert reading is not None
        vehicle = reading.vehicle
        wants = vehicle in _WANTS
        pcp = reading.phase_change_possible
        switchable = (spec.phase_change_possible if pcp is None else pcp) and len(wired) == 3
        if vehicle is _NOT_CONNECTED:  # session over: forget everything but the phase mode
            changed_at = paused_at = underdraw_since = underdraw_cap = phases_in_use = None
            served_s, session, recent_draw, recent_setpoints = 0.0, False, (), ()
        elif wants:
            if not session:
                session, served_s = True, 0.0
                phases_in_use = underdraw_since = underdraw_cap = None
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
    mode: Literal[1, 3] | None = (phases or 3) if switchable else None
    if online:
        assert reading is not None
        threshold = settings.phase_use_threshold_a
        if vehicle is _CHARGING and max(reading.currents) >= threshold:
            seen = {p for p in wired if reading.currents[p] >= threshold}
            if mode == 1:
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
    terminals = terminals_for(mode, wired, phases_in_use)
    hi, code = max_eff, "at_max_current"
    if underdraw_cap is not None and underdraw_cap < hi:
        hi, code = (lo if underdraw_cap < lo else underdraw_cap), "underdraw"
    step = ramp_step if ramp_step is not None else ramp_step_of(settings, dt)
    ramp_hi = setpoint + step if setpoint > 0 else max(lo, step)
    if ramp_hi < hi:
        hi, code = (lo if ramp_hi < lo else ramp_hi), "ramping"
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
    v.recent_setpoints = recent_setpoints
    v.measured_at = reading.timestamp if online and reading is not None else now
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
