"""Per-device health: a mutable tracker inside the bus, frozen snapshots for everyone else."""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass

from ampgate.transport.result import RequestResult, ResultKind

#: Upper bounds (seconds) of the round-trip-time histogram buckets, Prometheus-style.
RTT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True, slots=True)
class RttHistogram:
    """Round-trip times of answered requests, ready for a Prometheus histogram."""

    buckets: tuple[tuple[float, int], ...]
    """Cumulative ``(upper bound, count)`` pairs; the last bound is ``inf``."""
    count: int
    sum: float


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """A snapshot of one unit's communication health on its bus."""

    bus: str
    unit_id: int
    online: bool
    """Has answered, and fewer than ``offline_after`` requests in a row went unanswered."""
    last_success: float | None
    """``time.time()`` of the last ok request."""
    consecutive_failures: int
    """Requests in a row that were not ok (any kind, exceptions included)."""
    consecutive_unanswered: int
    """Requests in a row with no answer at all (timeout, crc, connection)."""
    counts: dict[str, int]
    """Requests by result kind (``ok``, ``exception``, ``timeout``, ``crc``, ``connection``)."""
    exception_counts: dict[int, int]
    """Exception responses by Modbus exception code."""
    attempts: int
    """Attempts sent (requests plus retries)."""
    last_rtt: float | None
    rtt: RttHistogram


_OK, _EXCEPTION = ResultKind.OK, ResultKind.EXCEPTION


class HealthTracker:
    """Accumulates results for one unit (owned by the bus; not shared across tasks)."""

    def __init__(self, bus: str, unit_id: int, offline_after: int = 3) -> None:
        """Track ``unit_id`` on ``bus``; offline after ``offline_after`` unanswered requests."""
        self.bus = bus
        self.unit_id = unit_id
        self.offline_after = offline_after
        self.ever_answered = False
        self.last_success_monotonic: float | None = None
        """``time.monotonic()`` of the last ok request (turned into wall time by snapshot)."""
        self.consecutive_failures = 0
        self.consecutive_unanswered = 0
        self.counts: dict[str, int] = {k.value: 0 for k in ResultKind}
        self.exception_counts: dict[int, int] = {}
        self.attempts = 0
        self.last_rtt: float | None = None
        self.rtt_bucket_counts = [0] * (len(RTT_BUCKETS) + 1)
        self.rtt_sum = 0.0

    def record(self, result: RequestResult, now: float | None = None) -> None:
        """Account for one finished request; ``now`` is its ``time.monotonic()`` if known."""
        kind = result.kind
        self.counts[kind] += 1  # a StrEnum member finds its value's key
        self.attempts += result.attempts
        if kind is _OK:
            self.last_success_monotonic = time.monotonic() if now is None else now
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1
        if kind is _OK or kind is _EXCEPTION:
            self.ever_answered = True
            self.consecutive_unanswered = 0
        else:
            self.consecutive_unanswered += 1
        code = result.exception_code
        if code is not None:
            self.exception_counts[code] = self.exception_counts.get(code, 0) + 1
        rtt = result.rtt
        if rtt is not None:
            self.last_rtt = rtt
            self.rtt_sum += rtt
            self.rtt_bucket_counts[bisect_left(RTT_BUCKETS, rtt)] += 1

    def snapshot(self) -> DeviceHealth:
        """Return a frozen copy of the current state."""
        cumulative = []
        running = 0
        for bound, n in zip((*RTT_BUCKETS, float("inf")), self.rtt_bucket_counts, strict=True):
            running += n
            cumulative.append((bound, running))
        last_success = None
        if self.last_success_monotonic is not None:
            # Wall time of the last success: now minus how long ago it was (monotonic), so the
            # hot path reads one clock only.
            last_success = time.time() - (time.monotonic() - self.last_success_monotonic)
        return DeviceHealth(
            bus=self.bus,
            unit_id=self.unit_id,
            online=self.ever_answered and self.consecutive_unanswered < self.offline_after,
            last_success=last_success,
            consecutive_failures=self.consecutive_failures,
            consecutive_unanswered=self.consecutive_unanswered,
            counts=dict(self.counts),
            exception_counts=dict(self.exception_counts),
            attempts=self.attempts,
            last_rtt=self.last_rtt,
            rtt=RttHistogram(buckets=tuple(cumulative), count=running, sum=self.rtt_sum),
        )
