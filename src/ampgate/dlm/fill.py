"""Max-min fair sharing of capacity between chargers (progressive filling / water-filling).

Each item (a charger) has integer bounds [lo, hi] and uses resources (a phase of a fuse, a power
cap) with a coefficient. All items start at ``lo`` (the caller has checked that Σ lo fits); a
common water level then rises, each item following it between its bounds, until a resource is
full — its items freeze there — or an item reaches ``hi``. The continuous result is floored to
whole amps and the leftover handed out one amp at a time in rank order.

Algorithm: every resource keeps the load it carries with its live members at their lower
bounds and the slope change at each breakpoint (a member starts following the level at its lo
and stops at its hi); the level at which it fills is a scan over its few distinct breakpoints.
Freezing a member updates these in O(1) per resource it uses. Resources sit in a heap keyed by
their fill level. The lowest one fills first; freezing its items can only *raise* the fill
level of the other
resources they use (a frozen item draws no more than it would have while following the rising
level), so those resources' heap entries become lower bounds and are recomputed lazily when
they reach the top. Each resource is thus recomputed only when it could be the next to fill,
instead of every resource being re-scanned in every round. Interchangeable items (same
resources, same bounds) are filled as one weighted item.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

EPS = 1e-9
INF = math.inf


@dataclass(frozen=True, slots=True)
class FillItem:
    """One charger to fill: bounds, and the resources it uses with their coefficients."""

    id: str
    lo: int
    hi: int
    uses: tuple[tuple[Hashable, float], ...]


@dataclass(frozen=True, slots=True)
class FillResult:
    """Whole amps for an item and the resource that stopped it (None: it reached ``hi``)."""

    amps: int
    limited_by: Hashable | None


def fill_levels(
    lo: Sequence[int],
    hi: Sequence[int],
    uses: Sequence[Sequence[tuple[int, float]]],
    capacity: Sequence[float],
) -> tuple[list[int], list[int | None]]:
    """Max-min fair whole amps per item and the resource number that limited each (or None).

    Items are given in rank order (best first); ``uses[i]`` lists ``(resource, coefficient)``;
    ``capacity[r]`` is what resource ``r`` may carry. Requires ``lo[i] <= hi[i]`` to be
    meaningful (an item with ``lo >= hi`` is held at ``lo``).
    """
    n = len(lo)
    size = len(capacity)
    # Items with the same row of resources (the same object: the engine passes cached rows)
    # and the same bounds follow the same level: fill them as one item of weight w.
    merged: dict[tuple[int, int, int], int] = {}
    of = [0] * n
    m_lo: list[int] = []
    m_hi: list[int] = []
    m_uses: list[Sequence[tuple[int, float]]] = []
    weight: list[int] = []
    for i in range(n):
        key = (id(uses[i]), lo[i], hi[i])
        j = merged.get(key)
        if j is None:
            j = merged[key] = len(m_lo)
            m_lo.append(lo[i])
            m_hi.append(hi[i])
            m_uses.append(uses[i])
            weight.append(1)
        else:
            weight[j] += 1
        of[i] = j
    m = len(m_lo)
    # Per resource: its members, the load when every live member sits at its lower bound
    # (frozen members at their final level), and the slope change at each breakpoint
    # (+c where a live member starts following the level, -c where it reaches hi).
    members: list[list[int]] = [[] for _ in range(size)]
    floor_load = [0.0] * size
    live = [0] * size
    slopes: list[dict[int, float]] = [{} for _ in range(size)]
    frozen = [False] * m
    for j in range(m):
        a, b, w = m_lo[j], m_hi[j], weight[j]
        if a < b:
            for r, c in m_uses[j]:
                cw = c * w
                members[r].append(j)
                floor_load[r] += cw * a
                live[r] += 1
                d = slopes[r]
                d[a] = d.get(a, 0.0) + cw
                d[b] = d.get(b, 0.0) - cw
        else:
            frozen[j] = True
            for r, c in m_uses[j]:
                floor_load[r] += c * w * a
    level = [float(x) for x in m_lo]
    m_limited: list[int | None] = [None] * m

    def fill_level(r: int) -> float:
        """Lowest water level at which resource ``r`` is full (inf: never; -inf: over at lo)."""
        cap = capacity[r]
        load = floor_load[r]
        if load > cap + EPS:
            return -INF  # cannot even hold the lower bounds: freeze at lo
        d = slopes[r]
        slope = 0.0
        prev = 0
        for point in sorted(d):
            if slope > 0.0:
                nxt = load + slope * (point - prev)
                if nxt > cap + EPS:
                    return prev + (cap - load) / slope
                load = nxt
            prev = point
            slope += d[point]
        return INF

    version = [0] * size
    heap = []
    for r in range(size):
        if live[r]:
            at = fill_level(r)
            if at != INF:
                heap.append((at, 0, r))
    heapq.heapify(heap)
    while heap:
        at, ver, r = heapq.heappop(heap)
        if ver != version[r]:
            if live[r]:
                fresh = fill_level(r)
                if fresh != INF:
                    heapq.heappush(heap, (fresh, version[r], r))
            continue
        for j in members[r]:
            b = m_hi[j]
            if frozen[j] or b <= at + EPS:
                continue  # already frozen, or reached its own maximum first
            a, w = m_lo[j], weight[j]
            x = a if at < a else at
            frozen[j] = True
            level[j] = x
            m_limited[j] = r
            for r2, c2 in m_uses[j]:
                cw = c2 * w
                floor_load[r2] += cw * (x - a)
                d = slopes[r2]
                d[a] -= cw
                d[b] += cw
                live[r2] -= 1
                version[r2] += 1
    limited = [m_limited[j] for j in of]
    used = [0.0] * size
    m_amps = [0] * m
    for j in range(m):
        a, b = m_lo[j], m_hi[j]
        x = math.floor(level[j] + EPS) if m_limited[j] is not None else b
        x = a if x < a else (b if x > b else x)
        m_amps[j] = x
        xw = x * weight[j]
        for r, c in m_uses[j]:
            used[r] += c * xw
    amps = [m_amps[j] for j in of]
    # Leftover from rounding down to whole amps: one more amp each, in rank order, where it
    # fits, so no item ends more than one amp above its fair level. Where items of larger
    # coefficients (3-phase chargers under a power cap) cannot take their amp, a few amps may
    # stay unused. A second round would hand them out, but it moves setpoints more often for
    # little current (the closed-loop benchmark lost energy with it: more changes, more waiting
    # for released current).
    for i in range(n):
        if amps[i] >= hi[i]:
            continue
        row = uses[i]
        for r, c in row:
            if used[r] + c > capacity[r] + EPS:
                break
        else:
            amps[i] += 1
            for r, c in row:
                used[r] += c
    return amps, limited


def water_fill(items: Sequence[FillItem], capacity: dict[Hashable, float]) -> dict[str, FillResult]:
    """Share ``capacity`` max-min fairly among ``items`` (given in rank order, best first).

    Resources are any hashable keys; a key missing from ``capacity`` is unlimited.
    """
    numbers: dict[Hashable, int] = {}
    caps: list[float] = []
    uses = []
    for it in items:
        row = []
        for key, c in it.uses:
            r = numbers.get(key)
            if r is None:
                r = numbers[key] = len(caps)
                caps.append(capacity.get(key, INF))
            row.append((r, c))
        uses.append(row)
    keys = list(numbers)
    amps, limited = fill_levels([it.lo for it in items], [it.hi for it in items], uses, caps)
    return {
        it.id: FillResult(amps[i], None if (by := limited[i]) is None else keys[by])
        for i, it in enumerate(items)
    }
