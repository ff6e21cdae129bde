"""Request validation, the fast result constructor, the scheduler's count and health timestamps."""

from __future__ import annotations

import dataclasses
import time

import pytest

from ampgate.errors import TransportError
from ampgate.transport import Request, RequestResult, ResultKind
from ampgate.transport.health import HealthTracker
from ampgate.transport.result import new_result
from ampgate.transport.scheduler import FairScheduler, Slot


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (Request(300, 3, 0, 1), "unit id 300 is outside 0–255"),
        (Request(1, 5, 0, 1), "function 5 is not one of 3, 4, 6, 16"),
        (Request(1, 3, -1, 1), r"address -1\+1 exceeds 0–65535"),
        (Request(1, 3, 65535, 2), r"address 65535\+2 exceeds 0–65535"),
        (Request(1, 4, 0, 0), "FC4 count 0 is outside 1–125"),
        (Request(1, 3, 0, 126), "FC3 count 126 is outside 1–125"),
        (Request(1, 6, 0, 2, (1, 2)), "FC6 count 2 is outside 1–1"),
        (Request(1, 16, 0, 124, (0,) * 124), "FC16 count 124 is outside 1–123"),
        (Request(1, 16, 0, 3, (1, 2)), "2 values for count 3"),
        (Request(1, 16, 0, 2, (1, 70000)), r"register values \[70000\] are outside 0–65535"),
        (Request(1, 6, 0, 1, (-1,)), r"register values \[-1\] are outside 0–65535"),
        (Request(1, 6, 0, 1, (1.5,)), r"register values \[1.5\] are outside 0–65535"),  # type: ignore[arg-type]
    ],
)
def test_invalid_requests_name_bus_unit_and_the_rule(request_, message):
    with pytest.raises(TransportError, match=f"^tcp://h:502 unit {request_.unit_id}: {message}"):
        request_.validate("tcp://h:502")


@pytest.mark.parametrize(
    "request_",
    [
        Request(0, 3, 0, 125),
        Request(255, 4, 65535, 1),
        Request(1, 3, 65411, 125),
        Request(1, 6, 7, 1, (65535,)),
        Request(1, 16, 0, 123, (0,) * 123),
    ],
)
def test_valid_requests_at_the_limits_pass(request_):
    request_.validate("tcp://h:502")


def test_fast_result_constructor_equals_the_dataclass_one():
    fields = [f.name for f in dataclasses.fields(RequestResult)]
    values = (ResultKind.EXCEPTION, "rtu:///dev/x", 7, 4, 12, 3, (), 6, "busy", 0.01, 2, "d")
    fast, slow = new_result(*values), RequestResult(*values)
    assert fast == slow and hash(fast) == hash(slow)
    assert [getattr(fast, name) for name in fields] == list(values)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.kind = ResultKind.OK  # type: ignore[misc]


def test_scheduler_count_follows_push_pop_and_drain():
    s: FairScheduler[str] = FairScheduler()
    assert len(s) == 0
    for i, unit in enumerate((1, 1, 2)):
        s.push(Slot(unit, f"r{i}"))
    s.push(Slot(3, "lower", priority=True))
    s.push(Slot(2, "retry", not_before=9.0), front=True)
    assert len(s) == s.queued == 5
    assert s.pop(0.0).item == "lower" and len(s) == 4
    assert s.pop(0.0).item == "r0" and len(s) == 3
    assert s.pop(0.0).item == "r1", "unit 2's head waits for its backoff"
    assert s.pop(0.0) is None and len(s) == 2
    assert sorted(slot.item for slot in s.drain()) == ["r2", "retry"] and len(s) == 0


def test_last_success_is_wall_clock_time_of_the_answer():
    tracker = HealthTracker("tcp://h:502", 1)
    answered_at = time.monotonic() - 30.0  # answered 30 s ago
    ok = RequestResult(ResultKind.OK, "tcp://h:502", 1, 3, 0, 1, (5,), rtt=0.002)
    tracker.record(ok, answered_at)
    last = tracker.snapshot().last_success
    assert last is not None and abs(last - (time.time() - 30.0)) < 0.05
    tracker.record(RequestResult(ResultKind.TIMEOUT, "tcp://h:502", 1, 3, 0, 1))
    assert tracker.snapshot().last_success == pytest.approx(last, abs=0.05), "kept on failure"
    tracker.record(ok)  # no time given: now
    assert abs(tracker.snapshot().last_success - time.time()) < 0.05
