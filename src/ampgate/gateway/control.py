"""Control inputs: external limits that expire and quarter-hour peak budgets, applied to the
engine's site each cycle.

A part of :class:`ampgate.gateway.loop.Gateway`. The servers (HTTP, MQTT, EMS) validate what
they receive (:func:`ampgate.interfaces.control.limit_request`) and queue it on the
:class:`~ampgate.interfaces.control.ControlChannel`; at the start of a cycle
:meth:`ControlInputs.site_for_cycle` takes the requests, expires what was not refreshed in
time and returns the site the engine allocates on: each group's per-phase limit is the lowest
of fuse, operator limit, every live external limit in amperes (and the ``on_limit_expiry``
amperes while a source's limit has expired), its power cap the lowest of ``power_cap_kw``,
every live external limit in kW and what the peak budget allows. Never above the fuse.

The failsafe plan is not made from this site: a temporary limit never reprograms the
chargers' failsafe currents (while ampgate is down only the fuse is protected).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from ampgate.config import SiteConfig
from ampgate.dlm import Allocation, Group, PeakBudget, Site
from ampgate.gateway.events import EventLog
from ampgate.gateway.runtime import MeterRuntime
from ampgate.interfaces.control import ControlChannel, LimitRequest
from ampgate.interfaces.snapshot import ExternalLimitSnapshot, GroupControlSnapshot

PhaseTriple = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class ActiveLimit:
    """One source's live limit on one group."""

    request: LimitRequest
    expires_at: float
    """Monotonic time it expires unless refreshed."""
    expires_unix: float


def _lowest(a: PhaseTriple, b: PhaseTriple | None) -> PhaseTriple:
    if b is None:
        return a
    l1, l2, l3 = (min(x, y) for x, y in zip(a, b, strict=True))
    return (l1, l2, l3)


def _lowest_kw(*caps: float | None) -> float | None:
    known = [c for c in caps if c is not None]
    return min(known) if known else None


class ControlInputs:
    """The external limits and peak budgets of one site, as the gateway applies them."""

    def __init__(
        self,
        config: SiteConfig,
        site: Site,
        events: EventLog,
        channel: ControlChannel | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Apply the requests of ``channel`` to ``site`` (the site file's engine values)."""
        self.config, self.site, self.events, self.channel = config, site, events, channel
        self.wall_clock = wall_clock
        self.limits: dict[str, dict[str, ActiveLimit]] = {g: {} for g in config.groups}
        self.expired: dict[str, set[str]] = {g: set() for g in config.groups}
        """Sources whose limit expired (not cleared): the group holds its expiry fallback."""
        self.budgets = {
            name: PeakBudget(g.peak_kw, rolling=g.peak_window == "rolling")
            for name, g in config.groups.items()
            if g.peak_kw is not None
        }
        self.month_peak: dict[str, tuple[tuple[int, int], float]] = {}
        """Per budgeted group: (year, month) and the highest quarter average in it, kW."""
        self._allowed_kw: dict[str, float] = {}
        self._cached: tuple[object, Site] | None = None

    # -- requests and expiry ---------------------------------------------------------------

    def apply(self, request: LimitRequest, now: float) -> None:
        """Set or clear one source's limit (validated by the server that received it; one
        queued before a reload for a group or source the site no longer has is dropped)."""
        group = self.config.groups.get(request.group)
        if group is None or request.source not in group.external_limits:
            return
        live = self.limits[request.group]
        self.expired[request.group].discard(request.source)
        if request.clear:
            if live.pop(request.source, None) is not None:
                self.events.emit(
                    "external_limit_cleared", group=request.group, source=request.source
                )
            return
        unit, value = ("kW", request.kw) if request.kw is not None else ("A", request.amps)
        before = live.get(request.source)
        live[request.source] = ActiveLimit(
            request, now + request.valid_for, self.wall_clock() + request.valid_for
        )
        if before is not None and (before.request.amps, before.request.kw) == (
            request.amps,
            request.kw,
        ):
            return  # a refresh of the same limit: renewed, not a new event
        self.events.emit(
            "external_limit_set",
            group=request.group,
            source=request.source,
            value=list(value) if isinstance(value, tuple) else value,
            unit=unit,
            valid_for=request.valid_for,
        )

    def _expire(self, now: float) -> None:
        for group, live in self.limits.items():
            for source in [s for s, a in live.items() if a.expires_at <= now]:
                del live[source]
                fallback = self.config.groups[group].on_limit_expiry
                if fallback != "fuse":
                    self.expired[group].add(source)
                self.events.emit(
                    "external_limit_expired",
                    "warning",
                    group=group,
                    source=source,
                    fallback=fallback,
                )

    # -- peak budgets ----------------------------------------------------------------------

    def record_import(
        self, meters: Mapping[str, MeterRuntime], allocation: Allocation | None, wall_now: float
    ) -> None:
        """Record each budgeted group's import power: its meter's total active power while
        the meter is live and measures the whole fuse, else the engine's accounts (measured or
        estimated current × nominal voltage, every phase)."""
        for group, budget in self.budgets.items():
            kw = self._import_kw(group, meters, allocation)
            if kw is None:
                continue
            budget.record(wall_now, kw)
            year, month = time.localtime(wall_now)[:2]
            average = budget.average_kw(wall_now)
            seen = self.month_peak.get(group)
            if seen is not None and seen[0] == (year, month):
                average = max(seen[1], average)
            self.month_peak[group] = ((year, month), average)

    def _import_kw(
        self, group: str, meters: Mapping[str, MeterRuntime], allocation: Allocation | None
    ) -> float | None:
        for rt in meters.values():
            m = rt.measurement
            if (
                rt.config is not None
                and rt.config.group == group
                and rt.config.location == "including"
                and not rt.stale
                and m is not None
                and m.power_total is not None
            ):
                return m.power_total / 1000.0
        if allocation is None:
            return None
        volts = self.config.groups[group].nominal_voltage
        amps = [
            a.measured if a.measured is not None else a.non_ev_load + a.allocated
            for a in allocation.accounts
            if a.group == group
        ]
        return sum(max(0.0, x) for x in amps) * volts / 1000.0 if amps else None

    # -- the site of this cycle ------------------------------------------------------------

    def site_for_cycle(self, now: float, wall_now: float) -> Site:
        """Take the queued requests, expire stale limits, and return the site to allocate on
        (the site file's own site object when nothing applies)."""
        if self.channel is not None:
            for request in self.channel.take():
                self.apply(request, now)
        self._expire(now)
        self._allowed_kw = {
            g: round(b.allowed_kw(wall_now), 1) for g, b in self.budgets.items()
        }  # rounded: the derived site is reused while the budget's cap does not move
        groups = tuple(self._group(g) for g in self.site.groups)
        if all(new is old for new, old in zip(groups, self.site.groups, strict=True)):
            return self.site
        key = tuple((g.operator_limit, g.power_cap_kw) for g in groups)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, replace(self.site, groups=groups))
        return self._cached[1]

    def _caps(self, name: str) -> tuple[PhaseTriple | None, float | None]:
        """The lowest external amperes (with an expiry fallback) and kW on a group, or None."""
        amps: PhaseTriple | None = None
        kws: list[float | None] = [self._allowed_kw.get(name)]
        for active in self.limits[name].values():
            if active.request.amps is not None:
                amps = _lowest(active.request.amps, amps)
            kws.append(active.request.kw)
        fallback = self.config.groups[name].on_limit_expiry
        if self.expired[name] and not isinstance(fallback, str):
            amps = _lowest((fallback, fallback, fallback), amps)
        return amps, _lowest_kw(*kws)

    def _group(self, g: Group) -> Group:
        amps, kw = self._caps(g.id)
        if amps is None and kw is None:
            return g
        operator = g.operator_limit
        if amps is not None:
            operator = _lowest(_lowest(g.limit, operator), amps)
        return replace(g, operator_limit=operator, power_cap_kw=_lowest_kw(g.power_cap_kw, kw))

    # -- what the snapshot shows -----------------------------------------------------------

    def status(self, wall_now: float) -> dict[str, GroupControlSnapshot]:
        """Per group: the effective limits, the live external limits and the peak budget."""
        out: dict[str, GroupControlSnapshot] = {}
        for g in self.site.groups:
            effective = self._group(g)
            budget = self.budgets.get(g.id)
            peak = self.month_peak.get(g.id)
            out[g.id] = GroupControlSnapshot(
                effective_limit_amperes=_lowest(g.limit, effective.operator_limit),
                power_cap_kw=effective.power_cap_kw,
                external_limits=tuple(
                    ExternalLimitSnapshot(
                        source=a.request.source,
                        amperes=a.request.amps,
                        kw=a.request.kw,
                        valid_for_seconds=a.request.valid_for,
                        expires_unix=a.expires_unix,
                    )
                    for a in self.limits[g.id].values()
                ),
                expiry_fallback=bool(self.expired[g.id])
                and not isinstance(self.config.groups[g.id].on_limit_expiry, str),
                peak_kw=None if budget is None else budget.peak_kw,
                quarter_average_kw=None if budget is None else budget.average_kw(wall_now),
                month_peak_kw=None if peak is None else peak[1],
                peak_allowed_kw=self._allowed_kw.get(g.id),
            )
        return out
