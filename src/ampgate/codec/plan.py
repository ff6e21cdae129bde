"""Block read planning: the fewest `ReadRequest`s covering a set of fields.

Per function code, the requested fields are sorted by address. A request covers one run of
consecutive fields in that order (fields never overlap, so any request's fields form such a run).
A run is feasible when its register span fits the per-request maximum, it touches no hole, and no
gap between neighbouring fields in it is longer than ``gap`` unused registers. Feasibility only
shrinks as a run grows, and dynamic programming over the sorted fields picks, for each prefix, the
cheapest split (fewest requests, then fewest registers read): the result is provably minimal.
"""

from __future__ import annotations

from collections.abc import Iterable

from ampgate.codec.model import ReadRequest, RegisterMap
from ampgate.codec.schema import FieldSpec
from ampgate.errors import MapError


def plan_reads(
    rmap: RegisterMap,
    fields: Iterable[str] | None = None,
    *,
    gap: int = 0,
    max_registers: int | None = None,
) -> list[ReadRequest]:
    """Return the fewest requests covering ``fields`` (all fields when None).

    Requests never exceed ``max_registers`` (lowered from the map's maximum, never raised), never
    span a hole, and read at most ``gap`` unused registers between two neighbouring fields.
    Sorted by function code, then address. MapError for an unknown field or a field longer than
    the maximum.
    """
    if gap < 0:
        raise MapError(f"{rmap.id}: gap {gap} is not allowed (allowed: 0 or more registers)")
    limit = rmap.max_registers_per_request
    if max_registers is not None:
        if max_registers < 1:
            raise MapError(
                f"{rmap.id}: max_registers {max_registers} is not allowed (allowed: 1 or more)"
            )
        limit = min(limit, max_registers)
    names = rmap.spec.fields if fields is None else [rmap.field(n) for n in dict.fromkeys(fields)]
    by_function: dict[int, list[FieldSpec]] = {}
    for f in names:
        if f.words > limit:
            raise MapError(
                f"{rmap.id}: field {f.name!r} needs {f.words} registers but requests are limited"
                f" to {limit}"
            )
        by_function.setdefault(rmap.function_of(f), []).append(f)
    plan: list[ReadRequest] = []
    for function in sorted(by_function):
        ordered = sorted(by_function[function], key=lambda f: f.address)
        plan += _plan_one_function(rmap, function, ordered, gap, limit)
    return plan


def _plan_one_function(
    rmap: RegisterMap, function: int, ordered: list[FieldSpec], gap: int, limit: int
) -> list[ReadRequest]:
    holes = [h for h in rmap.holes if h.function is None or h.function == function]
    n = len(ordered)
    # best[j]: (requests, registers) for the first j fields; start[j]: where the last run starts
    inf = (n + 1, 0)
    best: list[tuple[int, int]] = [(0, 0)] + [inf] * n
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        last = ordered[j - 1]
        end = last.address + last.words  # exclusive
        for i in range(j - 1, -1, -1):  # run ordered[i..j-1], grown leftwards
            first = ordered[i]
            if i < j - 1:
                following = ordered[i + 1]
                if following.address - (first.address + first.words) > gap:
                    break
            span = end - first.address
            if span > limit:
                break
            if any(h.overlaps(function, first.address, span) for h in holes):
                break
            cost = (best[i][0] + 1, best[i][1] + span)
            if cost < best[j]:
                best[j], start[j] = cost, i
    runs: list[ReadRequest] = []
    j = n
    while j > 0:
        i = start[j]
        first, last = ordered[i], ordered[j - 1]
        runs.append(
            ReadRequest(
                function=function,
                address=first.address,
                count=last.address + last.words - first.address,
                fields=tuple(f.name for f in ordered[i:j]),
            )
        )
        j = i
    runs.reverse()
    return runs
