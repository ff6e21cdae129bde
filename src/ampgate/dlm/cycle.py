"""One allocation cycle's working data and its steps (internal to :mod:`ampgate.dlm.engine`).

:class:`Cycle` holds the charger views, the group loads, flat ``capacity``/``fixed`` lists indexed
by resource number and the ``amps``/``results`` dicts; :func:`ampgate.dlm.engine.allocate` runs
its steps in order (reserve, admit, share) and those of :mod:`.share` and :mod:`.guard` on it.
"""

from __future__ import annotations

import math

from ampgate.dlm.fill import fill_levels
from ampgate.dlm.loads import GroupLoad, group_loads
from ampgate.dlm.model import (
    CAR_REACTION_S,
    ChargerMemory,
    EngineState,
    Measurements,
    Notice,
    PhaseAccount,
    PhaseTriple,
    Site,
    VehicleState,
    on_phases,
)
from ampgate.dlm.observe import (
    ChargerView,
    observe_charger,
    ramp_step_of,
    stray_terminals,
    terminals_for,
)
from ampgate.dlm.topology import SiteIndex, phase_label, site_index

EPS = 1e-9

_IDLE_REASONS = {
    VehicleState.NOT_CONNECTED: ("car not connected", "car_not_connected"),
    VehicleState.NOT_AUTHORISED: ("car not authorised", "not_authorised"),
    VehicleState.ERROR: ("charger in error state", "charger_error"),
    VehicleState.UNKNOWN: ("charger state unknown", "state_unknown"),
}


def describe(index: SiteIndex, resource: int, loads: dict[str, GroupLoad]) -> tuple[str, str]:
    """Reason text and code for a charger limited by resource number ``resource``."""
    key = index.resource_keys[resource]
    source = "" if isinstance(key[1], str) else loads[key[0]].source
    memo = (resource, source)
    hit = index.reason_cache.get(memo)
    if hit is None:
        hit = index.reason_cache[memo] = _describe(index, resource, loads)
    return hit


def _describe(index: SiteIndex, resource: int, loads: dict[str, GroupLoad]) -> tuple[str, str]:
    key = index.resource_keys[resource]
    if isinstance(key[1], str):  # ("power", group id); phase keys are (group id, int)
        return f"limited by group {key[1]!r} power cap", "limited_by_power_cap"
    group, phase = key
    text = f"limited by {phase_label(group, phase)}"
    source = loads[group].source
    if source == "fallback":
        return f"{text} (meter stale: fallback load)", "meter_stale_fallback"
    if source == "held":
        return f"{text} (meter stale: holding last reading)", "limited_by_group"
    return text, "limited_by_group"


def _hi_reason(v: ChargerView) -> tuple[str, str]:
    if v.hi_code == "underdraw":
        return f"lowered to measured draw + margin ({v.hi} A)", "underdraw"
    return f"at charger maximum ({v.hi} A)", "at_max_current"


class Cycle:
    """Working data of one allocation cycle (internal)."""

    def __init__(self, site: Site, measurements: Measurements, state: EngineState, now: float):
        self.site, self.state, self.now = site, state, now
        self.index = index = site_index(site)
        self.settings = settings = site.settings
        dt = now - state.time if state.time is not None else settings.cycle_period_s
        dt = max(0.0, dt)
        readings, memories = measurements.chargers, state.chargers
        step = ramp_step_of(settings, dt)
        self.views = [
            observe_charger(
                c, readings.get(c.id), memories.get(c.id), index, settings, now, dt, step
            )
            for c in site.chargers
        ]
        self.loads, self.meter_memory, notices = group_loads(
            site, index, {v.id: v for v in self.views}, measurements.meters, state, now
        )
        self.notices: list[Notice] = [n for v in self.views for n in v.notices]
        self.notices.extend(notices)
        self.amps: dict[str, int] = {}
        self.results: dict[str, tuple[str, str]] = {}
        self.capacity = list(index.base_capacity)
        self.fixed = [0.0] * len(self.capacity)
        self.switched: set[str] = set()
        self.switching: set[str] = set()
        """Chargers at 0 A this cycle only because their phase switch is not confirmed."""
        self.reserved: dict[str, PhaseTriple] = {}
        """Over-draw taken off the capacity per site phase, by charger (:meth:`reserve_fixed`)."""

    def reserve_fixed(self) -> None:
        """Offline chargers draw max(last setpoint, failsafe); idle ones get 0; an over-drawing
        car's measured excess over its setpoint is taken off the capacity of its phases."""
        index, cap, fixed = self.index, self.capacity, self.fixed
        for v in self.views:
            cid = v.id
            if not v.online:
                last = v.previous if v.known else v.spec.max_current
                assumed = max(last, v.spec.failsafe_current)
                wired = v.spec.wired_phases
                stray = stray_terminals(wired, v.phases_in_use)
                v.terminals = tuple(sorted(stray.union(wired))) if stray else wired
                v.site_phases = index.site_phases(cid, v.terminals)
                phase_res, power_res = index.uses(cid, v.site_phases)
                for r in phase_res:
                    cap[r] -= assumed
                    fixed[r] += assumed
                for r in power_res:
                    cap[r] -= assumed * len(v.site_phases)
                self.amps[cid] = assumed
                self.results[cid] = (f"charger offline: assuming {assumed} A", "charger_offline")
            elif not v.wants:
                self.amps[cid] = 0
                self.results[cid] = _IDLE_REASONS[v.vehicle]
            elif v.reserve > 0 and v.previous > 0:
                # a car over-drawing its pilot: budget what it draws above its setpoint
                phase_res, power_res = index.uses(cid, v.site_phases)
                for r in phase_res:
                    cap[r] -= v.reserve
                    fixed[r] += v.reserve
                for r in power_res:
                    cap[r] -= v.reserve * len(v.site_phases)
                self.reserved[cid] = on_phases(v.reserve, v.site_phases)
        for g in self.site.groups:
            non_ev = self.loads[g.id].non_ev
            base = 3 * index.group_position[g.id]
            cap[base] -= non_ev[0]
            cap[base + 1] -= non_ev[1]
            cap[base + 2] -= non_ev[2]
            power = index.power_resource.get(g.id)
            if power is not None:
                cap[power] -= non_ev[0] + non_ev[1] + non_ev[2]

    # ------------------------------------------------------------------ admission

    def shortfall(
        self, cid: str, phases: tuple[int, ...], need: float, remaining: list[float]
    ) -> int | None:
        """First resource (nearest group first) without ``need`` amps left, or None."""
        phase_res, power_res = self.index.uses(cid, phases)
        least = need - EPS
        if not power_res and min(map(remaining.__getitem__, phase_res)) >= least:
            return None  # fast path: everything fits
        for r in phase_res:
            if remaining[r] < least:
                return r
        if power_res:
            least = need * len(phases) - EPS
            for r in power_res:
                if remaining[r] < least:
                    return r
        return None

    def admit(self) -> list[ChargerView]:
        """Choose who charges (gets at least its minimum) and who is paused."""
        remaining = list(self.capacity)
        credit = self.settings.fairness_rotation_s
        candidates = sorted(
            (v for v in self.views if v.id not in self.amps),
            key=lambda v: (
                -v.spec.priority,
                v.served_s - credit if v.previous > 0 else v.served_s,
                v.id,
            ),
        )
        admitted: list[ChargerView] = []
        newcomer_admitted = False
        s, index, cap = self.settings, self.index, self.capacity
        for v in candidates:
            cid = v.id
            phase_res = index.uses(cid, v.site_phases)[0]
            if min(map(cap.__getitem__, phase_res)) < -EPS:
                over = next(r for r in phase_res if cap[r] < -EPS)
                g, p = index.phase_of(over)
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
            if v.pause_overdraw:
                self.amps[cid] = 0
                self.results[cid] = (
                    "paused: the car draws more than its setpoint allows", "paused_overdraw"
                )  # fmt: skip
                continue
            restarting = v.previous == 0 and v.paused_at is not None
            stopped = v.stopped_at
            if restarting and stopped is not None and self.now - stopped < s.restart_delay_s:
                left = math.ceil(s.restart_delay_s - (self.now - stopped))
                self.amps[cid] = 0
                self.results[cid] = (f"paused: restart delay ({left} s left)", "restart_delay")
                continue
            need = v.lo + (s.restart_margin_a if restarting else 0.0)
            if v.switchable and v.phase_pending_since is None:
                self.choose_mode(v, need, remaining)
                phase_res = index.uses(cid, v.site_phases)[0]
            power_res = index.uses(cid, v.site_phases)[1]
            if not power_res and min(map(remaining.__getitem__, phase_res)) >= need - EPS:
                blocked = None  # fast path of shortfall()
            else:
                blocked = self.shortfall(cid, v.site_phases, need, remaining)
            if blocked is None:
                lo = v.lo
                for r in phase_res:
                    remaining[r] -= lo
                if power_res:
                    k = lo * len(v.site_phases)
                    for r in power_res:
                        remaining[r] -= k
                admitted.append(v)
                newcomer_admitted = newcomer_admitted or v.previous == 0
                continue
            self.amps[cid] = 0
            if v.phase_pending_since is not None or cid in self.switched:
                self.switching.add(cid)
                self.results[cid] = (
                    f"waiting for the charger to switch to {v.mode} phase(s)", "phase_switching"
                )  # fmt: skip
            elif v.previous > 0 and newcomer_admitted:
                self.results[cid] = ("paused for fairness", "paused_fairness")
            else:
                text, _ = describe(index, blocked, self.loads)
                self.results[cid] = (f"paused: {text}", "paused_capacity")
        return admitted

    def choose_mode(self, v: ChargerView, need: float, remaining: list[float]) -> None:
        """Switch a phase-switchable charger 3→1 when only 1 phase fits, 1→3 when 3 fit."""
        s = self.settings
        if v.phase_switched_at is not None and (
            self.now - v.phase_switched_at < s.phase_switch_interval_s
        ):
            return
        cid, wired, index = v.id, v.spec.wired_phases, self.index
        v.phases_before = (v.mode, v.terminals, v.site_phases)
        if v.mode == 1:
            three = index.site_phases(cid, terminals_for(3, wired, v.phases_in_use))
            if self.shortfall(cid, three, v.lo + s.restart_margin_a, remaining) is None:
                v.mode = 3
                self.switched.add(cid)
        elif (
            len(v.site_phases) > 1
            and self.shortfall(cid, v.site_phases, need, remaining) is not None
            and self.shortfall(cid, index.site_phases(cid, (0,)), need, remaining) is None
        ):
            v.mode = 1
            self.switched.add(cid)
        if cid in self.switched:
            # a request until the charger confirms it: accounted on the old and new phases
            v.terminals = wired
            v.site_phases = index.site_phases(cid, wired)

    # ------------------------------------------------------------------ sharing

    def share(self, admitted: list[ChargerView]) -> None:
        """Water-fill, then the ramp and the hysteresis on increases (the engine then holds back
        increases until current is released: :func:`ampgate.dlm.share.hold_back_increases`)."""
        index = self.index
        uses = [index.fill_row(v.id, v.site_phases) for v in admitted]
        filled, limited = fill_levels(
            [v.lo for v in admitted],
            [v.hi if v.hi > v.lo else v.lo for v in admitted],
            uses,
            self.capacity,
        )
        hysteresis = self.settings.hysteresis_a
        for i, v in enumerate(admitted):
            cid, amps, by = v.id, filled[i], limited[i]
            if by is not None and amps < v.hi:
                self.results[cid] = describe(index, by, self.loads)
            else:
                self.results[cid] = _hi_reason(v)
            if amps > v.ramp_hi:
                # the fair share is computed without the ramp, so that the others are lowered
                # to theirs at once; the ramp only delays this charger reaching its own
                amps = v.ramp_hi
                self.results[cid] = ("ramping up", "ramping")
            if v.lo <= v.previous < amps < v.previous + hysteresis:
                amps = v.previous
                self.results[cid] = ("steady: increase below hysteresis", "hysteresis")
            self.amps[cid] = amps

    # ------------------------------------------------------------------ output

    def accounts(self) -> tuple[PhaseAccount, ...]:
        """Per group and site phase: limit, non-EV load, headroom, allocated, available."""
        index, amps = self.index, self.amps
        allocated = [0.0] * len(self.capacity)
        for v in self.views:
            a = amps[v.id]
            if a:
                for r in index.uses(v.id, v.site_phases)[0]:
                    allocated[r] += a
        out = []
        for i, g in enumerate(self.site.groups):
            load = self.loads[g.id]
            for p in (0, 1, 2):
                limit = g.effective_limit(p)
                headroom, non_ev = g.headroom[p], load.non_ev[p]
                available = limit - headroom - non_ev
                account = PhaseAccount(
                    g.id, p, limit, non_ev, load.source, headroom, allocated[3 * i + p],
                    available, None if load.measured is None else load.measured[p],
                    load.uncertainty[p],
                )  # fmt: skip
                out.append(account)
        return tuple(out)

    def next_memory(self, v: ChargerView) -> ChargerMemory:
        """The charger's memory for the next cycle."""
        amps = self.amps[v.id]
        if not v.online:
            return v.memory(amps)
        now, s = self.now, self.settings
        if amps > 0:
            v.paused_at = v.stopped_at = None
        elif v.previous > 0 and v.wants and v.id not in self.switching:
            v.paused_at, v.stopped_at = now, None
        if amps != v.previous:
            v.changed_at = now
        v.phases = v.mode
        switched = v.id in self.switched
        if switched:
            v.phase_switched_at, v.phases_in_use, v.phase_pending_since = now, None, now
        horizon = s.meter_lag_allowance_s + s.meter_stale_after_s + CAR_REACTION_S
        v.recent_draw = _window(v.recent_draw, v.measured_at, v.measured, now - horizon)
        targets = _since(v.recent_targets, now - horizon)
        if amps != v.previous or switched:
            terminals = (0,) if v.mode == 1 else v.terminals
            phases = self.index.site_phases(v.id, terminals)
            targets = (*targets, (now, on_phases(float(amps), phases)))
        v.recent_targets = targets
        return v.memory(amps)


Timeline = tuple[tuple[float, PhaseTriple], ...]


def _since(entries: Timeline, since: float) -> Timeline:
    """Entries after ``since`` and the last one before it (what was in effect at ``since``)."""
    start = 0
    for i, (t, _) in enumerate(entries):
        if t <= since:
            start = i
        else:
            break
    return entries[start:] if start else entries


def _window(samples: Timeline, at: float, draw: PhaseTriple, since: float) -> Timeline:
    """Samples after ``since`` (and the one before, to bracket it) with ``(at, draw)`` added.

    A reading used again (the charger was not polled since) is not added twice.
    """
    samples = _since(samples, since)
    if samples and samples[-1][0] >= at:
        return samples
    return (*samples, (at, draw))
