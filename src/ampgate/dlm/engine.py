"""The allocator: ``allocate(site, measurements, state, now) -> Allocation``. Pure, no I/O.

One cycle, in order:

1. observe every charger (session, phase use, under-draw, fairness time) — :mod:`.observe`;
2. non-EV load per group from its meter, held reading or fallback — :mod:`.loads`;
3. offline chargers are assumed to draw max(last setpoint, failsafe) on all wired phases;
   a group phase whose non-EV load + headroom + offline draws already exceed the limit stops
   every controllable charger on it (reason ``over_limit_without_ev``);
4. admission: chargers that want current, best rank first (priority, then least charging time,
   a running car keeping ``fairness_rotation_s`` of credit), get their minimum if it fits on all
   their phases in all their groups (+ restart margin, after the restart delay, for a charger
   the engine paused); otherwise they pause at 0 A — nobody gets 1–5 A. A phase-switchable
   charger that does not fit on 3 phases may switch to 1 (at most once per interval);
5. max-min fair water-filling of what is left, each charger between its minimum and the least of
   its maximum, its under-draw cap and its ramp limit — :mod:`.fill`;
6. hysteresis on increases; increases only use current that is free even if this cycle's
   decreases have not taken effect yet (each charger counted at max(new, previous, measured));
7. phase-imbalance caps (decrease only).

Decreases always take effect in the cycle they are computed.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import replace

from ampgate.dlm.failsafe import plan_failsafe
from ampgate.dlm.fill import FillItem, water_fill
from ampgate.dlm.loads import GroupLoad, group_loads
from ampgate.dlm.model import (
    Allocation,
    ChargerMemory,
    EngineState,
    Measurements,
    PhaseAccount,
    Setpoint,
    Site,
    VehicleState,
)
from ampgate.dlm.observe import ChargerView, observe_charger
from ampgate.dlm.topology import SiteIndex, phase_label, site_index

EPS = 1e-9

_IDLE_REASONS = {
    VehicleState.NOT_CONNECTED: ("car not connected", "car_not_connected"),
    VehicleState.NOT_AUTHORISED: ("car not authorised", "not_authorised"),
    VehicleState.ERROR: ("charger in error state", "charger_error"),
    VehicleState.UNKNOWN: ("charger state unknown", "state_unknown"),
}


def _keys(index: SiteIndex, cid: str, phases: tuple[int, ...]) -> list[Hashable]:
    return [(g, p) for g in index.chain[cid] for p in phases]


def _describe(key: Hashable, loads: dict[str, GroupLoad]) -> tuple[str, str]:
    """Reason text and code for a charger limited by resource ``key``."""
    if key[0] == "power":  # type: ignore[index]
        return f"limited by group {key[1]!r} power cap", "limited_by_power_cap"  # type: ignore[index]
    group, phase = key  # type: ignore[misc]
    text = f"limited by {phase_label(group, phase)}"
    source = loads[group].source
    if source == "fallback":
        return f"{text} (meter stale: fallback load)", "meter_stale_fallback"
    if source == "held":
        return f"{text} (meter stale: holding last reading)", "limited_by_group"
    return text, "limited_by_group"


class _Cycle:
    """Working data of one allocation cycle (internal)."""

    def __init__(self, site: Site, measurements: Measurements, state: EngineState, now: float):
        self.site, self.state, self.now = site, state, now
        self.index = site_index(site)
        self.settings = site.settings
        dt = now - state.time if state.time is not None else self.settings.cycle_period_s
        self.dt = max(0.0, dt)
        self.views: dict[str, ChargerView] = {
            c.id: observe_charger(
                c,
                measurements.chargers.get(c.id),
                state.chargers.get(c.id),
                self.index,
                self.settings,
                now,
                self.dt,
            )
            for c in site.chargers
        }
        self.loads, self.meter_memory = group_loads(
            site, self.index, measurements.chargers, measurements.meters, state, now
        )
        self.amps: dict[str, int] = {}
        self.results: dict[str, tuple[str, str]] = {}
        self.fixed: dict[Hashable, float] = {}
        self.capacity: dict[Hashable, float] = {}
        self.switched: set[str] = set()

    # ------------------------------------------------------------------ capacity

    def reserve_fixed(self) -> None:
        """Offline chargers draw max(last setpoint, failsafe); idle ones get 0."""
        for cid, v in self.views.items():
            if not v.online:
                last = v.memory.setpoint if cid in self.state.chargers else v.spec.max_current
                assumed = max(last, v.spec.failsafe_current)
                v.terminals = v.spec.wired_phases
                for k in _keys(self.index, cid, v.site_phases):
                    self.fixed[k] = self.fixed.get(k, 0.0) + assumed
                self.amps[cid] = assumed
                self.results[cid] = (f"charger offline: assuming {assumed} A", "charger_offline")
            elif not v.vehicle.wants_current:
                self.amps[cid] = 0
                self.results[cid] = _IDLE_REASONS[v.vehicle]
        for g in self.site.groups:
            non_ev = self.loads[g.id].non_ev
            for p in range(3):
                self.capacity[g.id, p] = (
                    g.effective_limit(p) - g.headroom[p] - non_ev[p] - self.fixed.get((g.id, p), 0)
                )
            if g.power_cap_kw is not None:
                total = sum(non_ev[p] + self.fixed.get((g.id, p), 0.0) for p in range(3))
                self.capacity["power", g.id] = g.power_cap_kw * 1000 / g.nominal_voltage - total

    def uses(self, cid: str, phases: tuple[int, ...]) -> list[tuple[Hashable, float]]:
        """Resources (group phase, group power cap) a charger on ``phases`` uses."""
        out: list[tuple[Hashable, float]] = [(k, 1.0) for k in _keys(self.index, cid, phases)]
        for g in self.index.chain[cid]:
            if ("power", g) in self.capacity:
                out.append((("power", g), float(len(phases))))
        return out

    # ------------------------------------------------------------------ admission

    def rank(self, v: ChargerView) -> tuple[int, float, str]:
        """Sort key: priority first, then least charging time (running cars get credit)."""
        credit = self.settings.fairness_rotation_s if v.previous > 0 else 0.0
        return (-v.spec.priority, v.memory.served_s - credit, v.spec.id)

    def admit(self) -> list[ChargerView]:
        """Choose who charges (gets at least its minimum) and who is paused."""
        remaining = dict(self.capacity)
        candidates = sorted(
            (v for cid, v in self.views.items() if cid not in self.amps), key=self.rank
        )
        admitted: list[ChargerView] = []

        def shortfall(cid: str, phases: tuple[int, ...], need: float) -> Hashable | None:
            for key, coef in self.uses(cid, phases):
                if remaining[key] < need * coef - EPS:
                    return key
            return None

        for v in candidates:
            cid, s = v.spec.id, self.settings
            over = [k for k in _keys(self.index, cid, v.site_phases) if self.capacity[k] < -EPS]
            if over:
                g, p = over[0]  # type: ignore[misc]
                self.amps[cid] = 0
                self.results[cid] = (
                    f"{phase_label(g, p)} over limit without EV load: charger held at 0 A",
                    "over_limit_without_ev",
                )
                continue
            if v.max_current < v.lo:
                self.amps[cid] = 0
                self.results[cid] = (
                    f"charger maximum {v.max_current} A below minimum {v.lo} A",
                    "max_below_min",
                )
                continue
            paused_at = v.memory.paused_at
            restarting = v.previous == 0 and paused_at is not None
            if restarting and self.now - paused_at < s.restart_delay_s:  # type: ignore[operator]
                left = math.ceil(s.restart_delay_s - (self.now - paused_at))  # type: ignore[operator]
                self.amps[cid] = 0
                self.results[cid] = (f"paused: restart delay ({left} s left)", "restart_delay")
                continue
            need = v.lo + (s.restart_margin_a if restarting else 0.0)
            if v.switchable:
                self.choose_mode(v, need, shortfall)
            blocked = shortfall(cid, v.site_phases, need)
            if blocked is None:
                for key, coef in self.uses(cid, v.site_phases):
                    remaining[key] -= v.lo * coef
                admitted.append(v)
                continue
            self.amps[cid] = 0
            if v.previous > 0 and any(a.previous == 0 for a in admitted):
                self.results[cid] = ("paused for fairness", "paused_fairness")
            else:
                text, _ = _describe(blocked, self.loads)
                self.results[cid] = (f"paused: {text}", "paused_capacity")
        return admitted

    def choose_mode(self, v: ChargerView, need: float, shortfall) -> None:
        """Switch a phase-switchable charger 3→1 when only 1 phase fits, 1→3 when 3 fit."""
        s, mem = self.settings, v.memory
        allowed = (
            mem.phase_switched_at is None
            or self.now - mem.phase_switched_at >= s.phase_switch_interval_s
        )
        if not allowed:
            return
        cid = v.spec.id
        three = v.spec.site_phases(v.terminals_for(3))
        one = v.spec.site_phases((0,))
        if v.mode == 1:
            if shortfall(cid, three, v.lo + s.restart_margin_a) is None:
                v.mode, v.terminals = 3, v.spec.wired_phases
                self.switched.add(cid)
        elif (
            len(v.site_phases) > 1
            and shortfall(cid, v.site_phases, need) is not None
            and shortfall(cid, one, need) is None
        ):
            v.mode, v.terminals = 1, (0,)
            self.switched.add(cid)

    # ------------------------------------------------------------------ sharing

    def share(self, admitted: list[ChargerView]) -> None:
        """Water-fill, then hysteresis, then hold back increases until current is released."""
        items = [
            FillItem(v.spec.id, v.lo, max(v.lo, v.hi), tuple(self.uses(v.spec.id, v.site_phases)))
            for v in admitted
        ]
        filled = water_fill(items, self.capacity)
        for v in admitted:
            cid, result = v.spec.id, filled[v.spec.id]
            amps = result.amps
            if result.limited_by is not None and amps < v.hi:
                self.results[cid] = _describe(result.limited_by, self.loads)
            else:
                self.results[cid] = _hi_reason(v)
            if v.lo <= v.previous < amps < v.previous + self.settings.hysteresis_a:
                amps = v.previous
                self.results[cid] = ("steady: increase below hysteresis", "hysteresis")
            self.amps[cid] = amps
        self.hold_back_increases(admitted)

    def committed(self, v: ChargerView, amps: int) -> list[tuple[Hashable, float]]:
        """Per resource, what a charger may draw this cycle: max(new, previous, measured)."""
        out = []
        phases = (
            v.site_phases
            if v.spec.id not in self.switched
            else v.spec.site_phases(v.spec.wired_phases)
        )
        for key, coef in self.uses(v.spec.id, phases):
            if key[0] == "power":  # type: ignore[index]
                draw = max(max(amps, v.previous) * coef, sum(v.measured))
            else:
                draw = max(amps, v.previous, v.measured[key[1]])  # type: ignore[index]
            out.append((key, draw))
        return out

    def hold_back_increases(self, admitted: list[ChargerView]) -> None:
        """Grant increases only out of current that is already free."""
        load: dict[Hashable, float] = {}
        admitted_ids = {v.spec.id for v in admitted}
        rising = []
        for cid, v in self.views.items():
            if not v.online:
                continue
            amps = self.amps.get(cid, 0)
            if amps > v.previous and cid in admitted_ids:
                rising.append(v)
                amps = v.previous
            for key, draw in self.committed(v, amps):
                load[key] = load.get(key, 0.0) + draw
        for v in rising:  # admitted order is rank order
            cid, target = v.spec.id, self.amps[v.spec.id]
            own = dict(self.committed(v, v.previous))
            limit = float(target)
            for key, coef in self.uses(cid, v.site_phases):
                free = self.capacity[key] - (load[key] - own[key])
                limit = min(limit, free / coef)
            granted = min(target, math.floor(limit + EPS))
            if granted < v.previous:
                granted = v.previous
            if granted < v.lo:  # e.g. starting from 0, or a previous value below this minimum
                granted = 0
            if granted < target:
                self.amps[cid] = granted
                self.results[cid] = ("waiting for released current", "waiting_release")
            for key, draw in self.committed(v, granted):
                load[key] = load[key] - own[key] + draw

    def cap_imbalance(self, admitted: list[ChargerView]) -> None:
        """Lower 1-/2-phase chargers on the heaviest phase until a group's imbalance fits."""
        for g in self.site.groups:
            if g.max_imbalance is None:
                continue
            members = [v for v in admitted if g.id in self.index.chain[v.spec.id]]
            for _ in range(64 * max(1, len(members))):
                ev = [self.fixed.get((g.id, p), 0.0) for p in range(3)]
                for v in members:
                    for p in v.site_phases:
                        ev[p] += self.amps[v.spec.id]
                heavy, light = ev.index(max(ev)), ev.index(min(ev))
                if ev[heavy] - ev[light] <= g.max_imbalance + EPS:
                    break
                movable = [
                    v
                    for v in members
                    if self.amps[v.spec.id] > 0
                    and heavy in v.site_phases
                    and light not in v.site_phases
                ]
                if not movable:
                    break
                v = movable[-1]
                cid = v.spec.id
                self.amps[cid] = self.amps[cid] - 1 if self.amps[cid] > v.lo else 0
                self.results[cid] = (
                    f"limited by group {g.id!r} phase imbalance", "limited_by_imbalance"
                )  # fmt: skip

    # ------------------------------------------------------------------ output

    def memory_of(self, v: ChargerView) -> ChargerMemory:
        """The charger's memory for the next cycle."""
        cid, mem, amps = v.spec.id, v.memory, self.amps[v.spec.id]
        if not v.online:
            return replace(mem, setpoint=amps)
        paused_at = mem.paused_at
        if amps > 0:
            paused_at = None
        elif v.previous > 0 and v.vehicle.wants_current:
            paused_at = self.now
        changed_at = self.now if amps != v.previous else mem.changed_at
        mem = replace(mem, setpoint=amps, changed_at=changed_at, paused_at=paused_at, phases=v.mode)
        if cid in self.switched:
            mem = replace(mem, phase_switched_at=self.now, phases_in_use=None)
        window = self.settings.meter_lag_allowance_s + self.settings.meter_stale_after_s
        recent = tuple(e for e in mem.recent_draw if self.now - e[0] < window)
        if self.settings.meter_lag_allowance_s <= 0:
            recent = ()
        return replace(mem, recent_draw=(*recent, (self.now, v.measured)))

    def accounts(self) -> tuple[PhaseAccount, ...]:
        """Per group and site phase: limit, non-EV load, headroom, allocated, available."""
        allocated: dict[Hashable, float] = {}
        for cid, v in self.views.items():
            for key in _keys(self.index, cid, v.site_phases):
                allocated[key] = allocated.get(key, 0.0) + self.amps[cid]
        out = []
        for g in self.site.groups:
            load = self.loads[g.id]
            for p in range(3):
                limit = g.effective_limit(p)
                out.append(
                    PhaseAccount(
                        group=g.id,
                        phase=p,
                        limit=limit,
                        non_ev_load=load.non_ev[p],
                        non_ev_source=load.source,
                        headroom=g.headroom[p],
                        allocated=allocated.get((g.id, p), 0.0),
                        available=limit - g.headroom[p] - load.non_ev[p],
                    )
                )
        return tuple(out)


def _hi_reason(v: ChargerView) -> tuple[str, str]:
    if v.hi_code == "underdraw":
        return f"lowered to measured draw + margin ({v.hi} A)", "underdraw"
    if v.hi_code == "ramping":
        return "ramping up", "ramping"
    return f"at charger maximum ({v.hi} A)", "at_max_current"


def allocate(site: Site, measurements: Measurements, state: EngineState, now: float) -> Allocation:
    """Compute this cycle's setpoints, accounting, failsafe plan and the next engine state.

    ``site`` must be valid (:func:`ampgate.dlm.check_site`); ``now`` is the caller's monotonic
    time in seconds. Never raises on odd measurements: missing or stale data is treated
    conservatively (fallback load, offline charger).
    """
    cycle = _Cycle(site, measurements, state, now)
    cycle.reserve_fixed()
    admitted = cycle.admit()
    cycle.share(admitted)
    cycle.cap_imbalance(admitted)
    setpoints = {
        cid: Setpoint(cycle.amps[cid], *cycle.results[cid], phases=v.mode)
        for cid, v in cycle.views.items()
    }
    offset, rotated_at = state.failsafe_offset, state.failsafe_rotated_at
    if rotated_at is None:
        rotated_at = now
    elif now - rotated_at >= site.settings.failsafe_rotation_s:
        offset, rotated_at = offset + 1, now
    next_state = EngineState(
        time=now,
        chargers={cid: cycle.memory_of(v) for cid, v in cycle.views.items()},
        meters=cycle.meter_memory,
        failsafe_offset=offset,
        failsafe_rotated_at=rotated_at,
    )
    return Allocation(
        setpoints=setpoints,
        state=next_state,
        accounts=cycle.accounts(),
        failsafe=plan_failsafe(site, next_state),
    )
