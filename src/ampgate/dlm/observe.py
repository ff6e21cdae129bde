"""Per-charger bookkeeping before allocation: session, phase use, under-draw, fairness time.

Turns one charger's reading and its memory into a :class:`ChargerView`: what the engine must
assume about it this cycle (which site phases it loads, its bounds, its previous setpoint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
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


@dataclass(slots=True)
class ChargerView:
    """The engine's working view of one charger for this cycle (internal, mutable)."""

    spec: ChargerSpec
    memory: ChargerMemory
    online: bool
    vehicle: VehicleState
    previous: int
    """Setpoint in force before this cycle."""
    mode: Literal[1, 3] | None
    """Phase mode (switchable chargers only)."""
    terminals: tuple[int, ...]
    """Charger terminals reserved this cycle."""
    measured: PhaseTriple
    """Measured draw per site phase (0 when offline)."""
    lo: int
    hi: int
    hi_code: str
    switchable: bool
    max_current: int
    """Largest setpoint this charger accepts now (config, reg 12/29 as read)."""

    @property
    def site_phases(self) -> tuple[int, ...]:
        """Site phases this charger loads this cycle (through its rotation)."""
        return self.spec.site_phases(self.terminals)

    def terminals_for(self, mode: Literal[1, 3] | None) -> tuple[int, ...]:
        """Terminals reserved in phase mode ``mode`` (1 = the charger's own L1)."""
        if mode == 1:
            return (0,)
        known = self.memory.phases_in_use
        wired = self.spec.wired_phases
        picked = tuple(p for p in wired if known and p in known)
        return picked or wired


def _phases_seen(
    reading: ChargerReading, wired: tuple[int, ...], threshold: float
) -> frozenset[int]:
    return frozenset(p for p in wired if reading.currents[p] >= threshold)


def observe_charger(
    spec: ChargerSpec,
    reading: ChargerReading | None,
    memory: ChargerMemory | None,
    index: SiteIndex,
    settings: EngineSettings,
    now: float,
    dt: float,
) -> ChargerView:
    """Update one charger's memory from its reading and return its view for this cycle."""
    online = reading is not None and reading.online
    fresh_start = memory is None
    mem = memory or ChargerMemory()
    if fresh_start and reading is not None and reading.last_setpoint is not None:
        mem = replace(mem, setpoint=reading.last_setpoint)
    vehicle = reading.vehicle if online else VehicleState.UNKNOWN  # type: ignore[union-attr]
    switchable = (
        reading.phase_change_possible
        if online and reading.phase_change_possible is not None  # type: ignore[union-attr]
        else spec.phase_change_possible
    ) and len(spec.wired_phases) == 3
    if online and vehicle is VehicleState.NOT_CONNECTED:
        mem = ChargerMemory(
            setpoint=mem.setpoint, phases=mem.phases, phase_switched_at=mem.phase_switched_at
        )
    elif online and vehicle.wants_current:
        if not mem.session:
            mem = replace(
                mem,
                session=True,
                served_s=0.0,
                phases_in_use=None,
                underdraw_since=None,
                underdraw_cap=None,
            )
        if mem.setpoint > 0:
            mem = replace(mem, served_s=mem.served_s + dt)
    mode: Literal[1, 3] | None = (mem.phases or 3) if switchable else None
    max_eff = min(spec.max_current, MAX_CHARGING_CURRENT)
    if online and reading.max_current is not None:  # type: ignore[union-attr]
        max_eff = min(max_eff, reading.max_current)  # type: ignore[union-attr]
    lo = max(MIN_CHARGING_CURRENT, spec.min_current)
    measured: PhaseTriple = (0.0, 0.0, 0.0)
    if online:
        assert reading is not None
        m = [0.0, 0.0, 0.0]
        for terminal, amps in enumerate(reading.currents):
            m[spec.rotation.site_phase(terminal)] += max(0.0, float(amps))
        measured = (m[0], m[1], m[2])
        if vehicle is VehicleState.CHARGING and max(reading.currents) >= (
            settings.phase_use_threshold_a
        ):
            seen = _phases_seen(reading, spec.wired_phases, settings.phase_use_threshold_a)
            if mode == 1:
                seen = seen | {0}
            known = mem.phases_in_use or frozenset()
            mem = replace(mem, phases_in_use=known | seen)
        mem = _track_underdraw(mem, reading, vehicle, lo, max_eff, settings, now)
    view = ChargerView(
        spec=spec, memory=mem, online=online, vehicle=vehicle, previous=mem.setpoint,
        mode=mode, terminals=spec.wired_phases, measured=measured, lo=lo,
        hi=max_eff, hi_code="at_max_current", switchable=switchable, max_current=max_eff,
    )  # fmt: skip
    view.terminals = view.terminals_for(mode)
    if mem.underdraw_cap is not None and mem.underdraw_cap < view.hi:
        view.hi, view.hi_code = max(lo, mem.underdraw_cap), "underdraw"
    step = max(1, math.floor(settings.ramp_up_a_per_s * dt + 1e-9))
    ramp_hi = mem.setpoint + step if mem.setpoint > 0 else max(lo, step)
    if ramp_hi < view.hi:
        view.hi, view.hi_code = max(lo, ramp_hi), "ramping"
    return view


def _track_underdraw(
    mem: ChargerMemory,
    reading: ChargerReading,
    vehicle: VehicleState,
    lo: int,
    max_eff: int,
    settings: EngineSettings,
    now: float,
) -> ChargerMemory:
    """Lower the cap of a car drawing well below its setpoint; lift it when it draws again."""
    if not vehicle.wants_current or mem.setpoint <= 0:
        return replace(mem, underdraw_since=None)
    terminals = tuple(mem.phases_in_use) if mem.phases_in_use else (0, 1, 2)
    draw = max(reading.currents[p] for p in terminals)
    margin = settings.underdraw_margin_a
    if draw >= mem.setpoint - margin / 2:  # drawing at its setpoint: give current back
        return replace(mem, underdraw_since=None, underdraw_cap=None)
    if draw >= mem.setpoint - margin:
        return replace(mem, underdraw_since=None)
    since = mem.underdraw_since if mem.underdraw_since is not None else now
    if now - since < settings.underdraw_settle_s:
        return replace(mem, underdraw_since=since)
    cap = min(max_eff, max(lo, math.ceil(draw + margin - 1e-9)))
    return replace(mem, underdraw_since=since, underdraw_cap=cap)
