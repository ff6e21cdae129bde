"""Block planner: coverage, limits, holes, gap merging and minimality against brute force."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampgate.codec import ReadRequest, RegisterMap, plan_reads
from ampgate.codec.load import map_from_dict
from ampgate.codec.schema import FieldSpec
from ampgate.errors import MapError
from strategies import map_data, small_maps


def build(data: dict[str, Any]) -> RegisterMap:
    return map_from_dict(data, name="t.toml")


def test_evc2_map_is_one_request(evc2_like: RegisterMap) -> None:
    plan = plan_reads(evc2_like)
    assert plan == [ReadRequest(3, 0, 45, tuple(f.name for f in evc2_like.fields))]


def test_lower_max_registers_splits(evc2_like: RegisterMap) -> None:
    plan = plan_reads(evc2_like, max_registers=10)
    assert [r.count for r in plan] == [10, 10, 10, 10, 5]
    # lifetime_energy (41–44) must not be split: 40 is session_duration, so 40–44 is one request
    assert plan[-1] == ReadRequest(3, 40, 5, ("session_duration", "lifetime_energy"))


def test_argument_cannot_raise_the_map_maximum(evc2_like: RegisterMap) -> None:
    fields = [{"name": f"f{i}", "address": i, "type": "u16", "unit": "1"} for i in range(10)]
    rmap = build(map_data(fields, max_registers_per_request=4))
    assert [r.count for r in plan_reads(rmap, max_registers=100)] == [4, 4, 2]


def test_hole_is_never_spanned_even_with_a_wide_gap(meter_like: RegisterMap) -> None:
    plan = plan_reads(meter_like, gap=1000)
    assert [(r.address, r.count) for r in plan] == [(1, 30), (55, 12), (801, 12)]
    for request in plan:
        assert not any(h.overlaps(3, request.address, request.count) for h in meter_like.holes)


def test_gap_zero_reads_no_unused_register(meter_like: RegisterMap) -> None:
    plan = plan_reads(meter_like)
    assert [(r.address, r.count) for r in plan] == [
        (1, 6),
        (13, 6),
        (25, 6),
        (55, 2),
        (65, 2),
        (801, 4),
        (809, 4),
    ]
    assert [(r.address, r.count) for r in plan_reads(meter_like, gap=7)] == [
        (1, 30),
        (55, 2),
        (65, 2),
        (801, 12),  # 57–64 is 8 unused registers, 805–808 is 4
    ]


def test_subset_of_fields(evc2_like: RegisterMap) -> None:
    plan = plan_reads(evc2_like, ["amps_to_use", "current_l1", "current_l2", "amps_to_use"])
    assert plan == [
        ReadRequest(3, 3, 2, ("current_l1", "current_l2")),
        ReadRequest(3, 15, 1, ("amps_to_use",)),
    ]


def test_function_codes_are_planned_separately() -> None:
    fields = [
        {"name": "a", "address": 0, "type": "u16", "unit": "1", "function": 4},
        {"name": "b", "address": 1, "type": "u16", "unit": "1", "function": 3},
        {"name": "c", "address": 1, "type": "u16", "unit": "1", "function": 4},
    ]
    plan = plan_reads(build(map_data(fields)))
    assert plan == [ReadRequest(3, 1, 1, ("b",)), ReadRequest(4, 0, 2, ("a", "c"))]


def test_bad_arguments_are_refused(evc2_like: RegisterMap) -> None:
    with pytest.raises(MapError, match="gap -1 is not allowed"):
        plan_reads(evc2_like, gap=-1)
    with pytest.raises(MapError, match="max_registers 0 is not allowed"):
        plan_reads(evc2_like, max_registers=0)
    with pytest.raises(
        MapError, match="'lifetime_energy' needs 4 registers but requests are limited to 3"
    ):
        plan_reads(evc2_like, max_registers=3)
    with pytest.raises(MapError, match="no field 'nope'"):
        plan_reads(evc2_like, ["nope"])


# --- properties -------------------------------------------------------------------------------


def check_plan(
    rmap: RegisterMap, plan: list[ReadRequest], wanted: list[FieldSpec], gap: int, limit: int
) -> None:
    """Every wanted field covered exactly once, inside its request; limits and holes kept."""
    covered = [name for r in plan for name in r.fields]
    assert sorted(covered) == sorted(f.name for f in wanted)
    for r in plan:
        assert 1 <= r.count <= limit
        assert not any(h.overlaps(r.function, r.address, r.count) for h in rmap.holes)
        used: set[int] = set()
        for name in r.fields:
            f = rmap.field(name)
            assert rmap.function_of(f) == r.function
            assert r.address <= f.address and f.address + f.words <= r.address + r.count
            used |= set(range(f.address, f.address + f.words))
        assert longest_unused_run(r.address, r.count, used) <= gap


def longest_unused_run(address: int, count: int, used: set[int]) -> int:
    best = run = 0
    for reg in range(address, address + count):
        run = 0 if reg in used else run + 1
        best = max(best, run)
    return best


def partitions(items: list[Any]) -> Iterator[list[list[Any]]]:
    """Every set partition of ``items`` (Bell number many)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for smaller in partitions(rest):
        for i in range(len(smaller)):
            yield [*smaller[:i], [first, *smaller[i]], *smaller[i + 1 :]]
        yield [[first], *smaller]


def feasible_block(rmap: RegisterMap, block: list[FieldSpec], gap: int, limit: int) -> bool:
    """Could one request read exactly these fields (any request shape, not just runs)?"""
    function = rmap.function_of(block[0])
    if any(rmap.function_of(f) != function for f in block):
        return False
    start = min(f.address for f in block)
    count = max(f.address + f.words for f in block) - start
    if count > limit or any(h.overlaps(function, start, count) for h in rmap.holes):
        return False
    used = {reg for f in block for reg in range(f.address, f.address + f.words)}
    return longest_unused_run(start, count, used) <= gap


def brute_force_minimum(rmap: RegisterMap, wanted: list[FieldSpec], gap: int, limit: int) -> int:
    return min(
        len(p) for p in partitions(wanted) if all(feasible_block(rmap, b, gap, limit) for b in p)
    )


@settings(max_examples=150, deadline=None)
@given(small_maps(functions=(3, 4)), st.integers(min_value=0, max_value=4), st.data())
def test_plan_covers_each_field_once_within_limits(
    data: dict[str, Any], gap: int, draw: st.DataObject
) -> None:
    rmap = build(data)
    names = [f.name for f in rmap.fields]
    wanted_names = draw.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    limit = draw.draw(st.integers(min_value=4, max_value=20))
    plan = plan_reads(rmap, wanted_names, gap=gap, max_registers=limit)
    effective = min(limit, rmap.max_registers_per_request)
    check_plan(rmap, plan, [rmap.field(n) for n in wanted_names], gap, effective)


@settings(max_examples=150, deadline=None)
@given(small_maps(max_fields=6), st.integers(min_value=0, max_value=3))
def test_plan_is_minimal_against_brute_force(data: dict[str, Any], gap: int) -> None:
    rmap = build(data)
    plan = plan_reads(rmap, gap=gap)
    limit = rmap.max_registers_per_request
    check_plan(rmap, plan, list(rmap.fields), gap, limit)
    assert len(plan) == brute_force_minimum(rmap, list(rmap.fields), gap, limit)
