"""Max-min fair sharing of capacity between chargers (progressive filling / water-filling).

Each item (a charger) has integer bounds [lo, hi] and uses resources (a phase of a fuse, a power
cap) with a coefficient. All items start at ``lo`` (the caller has checked that Σ lo fits); a
common water level then rises, each item following it between its bounds, until a resource is
full — its items freeze there — or an item reaches ``hi``. The continuous result is floored to
whole amps and the leftover handed out one amp at a time in rank order.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

EPS = 1e-9


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


def _max_level(fixed: float, cap: float, members: list[tuple[float, int, int]]) -> float:
    """Largest level L with fixed + Σ c·clamp(L, lo, hi) ≤ cap (members: (c, lo, hi))."""
    points = sorted({p for _, lo, hi in members for p in (lo, hi)})

    def load(level: float) -> float:
        return fixed + sum(c * min(max(level, lo), hi) for c, lo, hi in members)

    prev_level = points[0]
    prev_load = load(prev_level)
    if prev_load > cap + EPS:
        return prev_level  # cannot even hold the lower bounds; freeze at lo
    for point in points[1:]:
        cur = load(point)
        if cur > cap + EPS:
            slope = (cur - prev_load) / (point - prev_level)
            return prev_level + (cap - prev_load) / slope
        prev_level, prev_load = point, cur
    return math.inf


def water_fill(items: Sequence[FillItem], capacity: dict[Hashable, float]) -> dict[str, FillResult]:
    """Share ``capacity`` max-min fairly among ``items`` (given in rank order, best first)."""
    level_of: dict[str, float] = {it.id: float(it.lo) for it in items}
    limited: dict[str, Hashable | None] = {}
    members: dict[Hashable, list[FillItem]] = {}
    for it in items:
        for key, _ in it.uses:
            members.setdefault(key, []).append(it)
    coef = {(it.id, key): c for it in items for key, c in it.uses}
    frozen: set[str] = {it.id for it in items if it.lo >= it.hi}
    for it in items:
        if it.id in frozen:
            limited[it.id] = None
    while len(frozen) < len(items):
        best = math.inf
        binding: list[Hashable] = []
        for key, group in members.items():
            live = [(coef[it.id, key], it.lo, it.hi) for it in group if it.id not in frozen]
            if not live:
                continue
            fixed = sum(coef[it.id, key] * level_of[it.id] for it in group if it.id in frozen)
            level = _max_level(fixed, capacity.get(key, math.inf), live)
            if level < best - EPS:
                best, binding = level, [key]
            elif abs(level - best) <= EPS:
                binding.append(key)
        top = max(it.hi for it in items if it.id not in frozen)
        if top <= best + EPS:
            best, binding = float(top), []
        newly = []
        for it in items:
            if it.id in frozen:
                continue
            if it.hi <= best + EPS:
                level_of[it.id] = float(it.hi)
                limited[it.id] = None
                newly.append(it.id)
        for key in binding:
            for it in members[key]:
                if it.id not in frozen and it.id not in newly:
                    level_of[it.id] = min(max(best, it.lo), it.hi)
                    limited[it.id] = key
                    newly.append(it.id)
        if not newly:  # numerical safety: freeze everyone at the level reached
            for it in items:
                if it.id not in frozen:
                    level_of[it.id] = min(max(best, it.lo), it.hi)
                    limited[it.id] = binding[0] if binding else None
                    newly.append(it.id)
        frozen.update(newly)
    amps = {it.id: max(it.lo, min(it.hi, math.floor(level_of[it.id] + EPS))) for it in items}
    used: dict[Hashable, float] = {}
    for it in items:
        for key, c in it.uses:
            used[key] = used.get(key, 0.0) + c * amps[it.id]
    for it in items:  # leftover: one more amp each, in rank order, where it fits
        if amps[it.id] >= it.hi:
            continue
        if all(used[key] + c <= capacity.get(key, math.inf) + EPS for key, c in it.uses):
            amps[it.id] += 1
            for key, c in it.uses:
                used[key] += c
    return {it.id: FillResult(amps[it.id], limited.get(it.id)) for it in items}
