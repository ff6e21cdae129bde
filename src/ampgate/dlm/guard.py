"""The meter is the final word: lower the chargers on a phase the meter shows over its limit.

After the allocation, for every group with a live meter and every site phase whose measured
current (the meter, when it includes the chargers; the meter plus the chargers' measured draw,
when it excludes them) is above limit − headroom, the setpoints must take at least the excess
off that phase, counted from what the chargers on it were *measured* drawing while the meter
measured (the most each drew over ``[reading − meter_lag_allowance_s, reading]``: a lagging
meter still showing a lowering that has been made is not answered twice):

    measured − Σ (measured draw − planned budget) ≤ limit − headroom

whatever the model says (reference dlm.md rule 11). A charger's planned budget on a phase is
its new setpoint plus any over-draw it is budgeted with, on every phase it is accounted on or
measured drawing on — a charger that draws on a phase keeps drawing there unless it is
paused. If the allocation does not already do it, the chargers on the phase are lowered — the
highest setpoints first, one ampere at a time, down to their minimum — and then paused, lowest
rank first (lowest priority, then most charging time), until it does. Lowered chargers give
the reason ``overload_measured``.

The guard only ever lowers. It is a backstop: with a true building-load estimate and the
chargers' phases and over-draw accounted, the allocation already satisfies it; it acts when
something the model does not know about draws current.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from ampgate.dlm.loads import GroupLoad
from ampgate.dlm.model import PHASE_NAMES, Group, MeasuredOverload, Notice
from ampgate.dlm.topology import SiteIndex

EPS = 1e-6


class GuardedCharger(Protocol):
    """What the guard needs of a charger's view."""

    id: str
    online: bool
    lo: int
    measured: tuple[float, float, float]
    site_phases: tuple[int, ...]
    reserve: float
    served_s: float


def guard_measured(
    groups: Iterable[Group],
    index: SiteIndex,
    loads: Mapping[str, GroupLoad],
    views: Sequence[GuardedCharger],
    amps: dict[str, int],
    results: dict[str, tuple[str, str]],
    priority: Mapping[str, int],
    was_overloaded: frozenset[tuple[str, int]],
    tolerance: float = 0.5,
) -> tuple[list[MeasuredOverload], list[Notice]]:
    """Lower ``amps`` in place where the meters show overload; return overloads and notices.

    An excess left after the planned changes of at most ``tolerance`` amps (the meter's and the
    chargers' measurement error) is not acted on.
    """
    overloads: list[MeasuredOverload] = []
    notices: list[Notice] = []
    for g in groups:
        load = loads[g.id]
        measured, most = load.measured, load.most or {}
        if measured is None:
            continue
        members = [v for v in views if v.online and g.id in index.chain[v.id]]
        for p in range(3):
            limit = g.effective_limit(p) - g.headroom[p]
            total = measured[p]
            if total <= limit + EPS:
                continue
            overloads.append(MeasuredOverload(g.id, p, total, g.effective_limit(p)))
            if (g.id, p) not in was_overloaded:
                notices.append(
                    Notice(
                        "overload_measured",
                        g.id,
                        {"phase": PHASE_NAMES[p], "amps": round(total, 1), "limit": limit},
                    )
                )
            on = [v for v in members if p in v.site_phases or v.measured[p] > 0.0]
            relief = sum(most.get(v.id, v.measured)[p] - _budget(v, amps) for v in on)
            need = total - relief - limit
            if need > tolerance:
                label = f"group {g.id!r} {PHASE_NAMES[p]} measured {total:.1f} A over {limit:g} A"
                _shed(on, p, need, amps, results, priority, label)
    return overloads, notices


def _budget(v: GuardedCharger, amps: Mapping[str, int]) -> float:
    a = amps.get(v.id, 0)
    return a + v.reserve if a > 0 else 0.0


def _shed(
    on: list[GuardedCharger],
    phase: int,
    need: float,
    amps: dict[str, int],
    results: dict[str, tuple[str, str]],
    priority: Mapping[str, int],
    label: str,
) -> None:
    """Lower the highest setpoints on ``phase`` by ``need`` amps; pause if that is not enough."""
    lowerable = [v for v in on if amps.get(v.id, 0) > v.lo]
    while need > EPS and lowerable:
        v = max(lowerable, key=lambda c: (amps[c.id], c.served_s))
        amps[v.id] -= 1
        need -= 1
        results[v.id] = (f"lowered: {label}", "overload_measured")
        if amps[v.id] <= v.lo:
            lowerable.remove(v)
    running = sorted(
        (v for v in on if amps.get(v.id, 0) > 0),
        key=lambda c: (priority.get(c.id, 0), -c.served_s, c.id),
    )
    for v in running:
        if need <= EPS:
            break
        need -= _budget(v, amps)
        amps[v.id] = 0
        results[v.id] = (f"paused: {label}", "overload_measured")
