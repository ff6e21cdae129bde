"""Pure parts of the transport: fair scheduler, health snapshots, RS485 timing."""

from __future__ import annotations

import pytest

from ampgate.transport.health import HealthTracker
from ampgate.transport.result import RequestResult, ResultKind, exception_name
from ampgate.transport.scheduler import FairScheduler, Slot
from ampgate.transport.timing import bits_per_char, rtu_read_wire_time, silent_interval


def drain_order(scheduler: FairScheduler[str], now: float = 0.0) -> list[str]:
    out = []
    while (slot := scheduler.pop(now)) is not None:
        out.append(slot.item)
    return out


def test_round_robin_across_units_fifo_within_a_unit():
    s: FairScheduler[str] = FairScheduler()
    for i in range(3):
        s.push(Slot(1, f"a{i}"))
    s.push(Slot(2, "b0"))
    s.push(Slot(3, "c0"))
    s.push(Slot(2, "b1"))
    assert drain_order(s) == ["a0", "b0", "c0", "a1", "b1", "a2"]


def test_priority_lane_first_and_backoff_skips_until_due():
    s: FairScheduler[str] = FairScheduler()
    s.push(Slot(1, "read1"))
    s.push(Slot(2, "read2"))
    s.push(Slot(1, "retry1", not_before=5.0), front=True)
    s.push(Slot(2, "lower-setpoint", priority=True))
    assert drain_order(s, now=0.0) == ["lower-setpoint", "read2"]
    assert s.next_due() == 5.0 and len(s) == 2
    assert drain_order(s, now=5.0) == ["retry1", "read1"]


def result(kind: ResultKind, code: int | None = None, rtt: float | None = None) -> RequestResult:
    return RequestResult(kind, "tcp://x:502", 1, 3, 0, 1, exception_code=code, rtt=rtt, attempts=2)


def test_health_counts_kinds_codes_and_goes_offline_after_unanswered_requests():
    tracker = HealthTracker("tcp://x:502", 1, offline_after=2)
    assert not tracker.snapshot().online, "never answered"
    tracker.record(result(ResultKind.OK, rtt=0.003))
    tracker.record(result(ResultKind.EXCEPTION, code=6, rtt=0.02))
    snap = tracker.snapshot()
    assert snap.online and snap.consecutive_failures == 1 and snap.last_success is not None
    assert snap.exception_counts == {6: 1} and snap.attempts == 4
    assert snap.rtt.count == 2 and snap.rtt.sum == pytest.approx(0.023)
    assert dict(snap.rtt.buckets)[0.005] == 1 and dict(snap.rtt.buckets)[0.025] == 2
    tracker.record(result(ResultKind.TIMEOUT))
    assert tracker.snapshot().online
    tracker.record(result(ResultKind.CRC))
    snap = tracker.snapshot()
    assert not snap.online and snap.consecutive_unanswered == 2
    assert snap.counts == {"ok": 1, "exception": 1, "timeout": 1, "crc": 1, "connection": 0}


def test_silent_interval_is_three_and_a_half_characters_fixed_above_19200():
    assert bits_per_char(8, "E", 1) == bits_per_char(8, "N", 2) == 11
    assert silent_interval(9600) == pytest.approx(3.5 * 11 / 9600)
    assert silent_interval(19200) == pytest.approx(3.5 * 11 / 19200)
    assert silent_interval(115200) == 0.00175
    # 8 request + 5 + 2×45 response bytes at 11 bits, plus two silent intervals.
    assert rtu_read_wire_time(45, 9600) == pytest.approx(103 * 11 / 9600 + 7 * 11 / 9600)


def test_exception_names_cover_gateway_codes_and_unknown_ones():
    assert exception_name(10) == "gateway path unavailable"
    assert exception_name(11) == "gateway target device failed to respond"
    assert exception_name(99) == "unknown exception 99"
