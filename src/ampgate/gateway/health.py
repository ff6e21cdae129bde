"""Device health: every request's outcome marks its device online or offline, as an event.

A device that fails is marked offline (the engine then assumes the worst for it) and never
stops the loop; its next answer marks it online again. A meter is also stale when its last
measurement is too old (:meth:`DeviceHealth.meter_freshness`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from ampgate.dlm import Allocation
from ampgate.errors import AmpgateError
from ampgate.gateway.events import EventLog
from ampgate.gateway.runtime import ChargerRuntime, MeterRuntime

T = TypeVar("T")


class DeviceHealth:
    """Records each device's last success or failure and reports changes to the event log."""

    def __init__(
        self, events: EventLog, clock: Callable[[], float], wall_clock: Callable[[], float]
    ) -> None:
        """Report to ``events``; time successes with ``clock`` (monotonic) and ``wall_clock``."""
        self.events, self.clock, self.wall_clock = events, clock, wall_clock

    def succeeded(self, rt: ChargerRuntime | MeterRuntime) -> None:
        """The device answered: online, with the time of its answer."""
        rt.last_ok, rt.last_ok_unix, rt.online, rt.last_error = (
            self.clock(),
            self.wall_clock(),
            True,
            None,
        )
        self.events.device_seen(rt.name, True)

    async def attempt(self, rt: ChargerRuntime | MeterRuntime, request: Awaitable[T]) -> T | None:
        """Await one request to ``rt``: its answer, the device marked online; or None, the
        device marked offline, when it fails (an :class:`~ampgate.errors.AmpgateError`)."""
        try:
            answer = await request
        except AmpgateError as exc:
            self.failed(rt, exc)
            return None
        self.succeeded(rt)
        return answer

    def failed(self, rt: ChargerRuntime | MeterRuntime, exc: Exception) -> None:
        """The device did not answer (or refused): offline, with the problem."""
        rt.last_error = str(exc)
        rt.online = False
        self.events.device_seen(rt.name, False, problem=str(exc))

    def meter_freshness(
        self,
        meters: Mapping[str, MeterRuntime],
        limit: float,
        started_at: float | None,
        allocation: Allocation | None,
        now: float,
    ) -> None:
        """Mark each meter stale when its last measurement is older than ``limit`` seconds
        (since start when it never measured) and report changes (``meter_stale``/``_fresh``).

        Freshness is the age of the last measurement, not of the last answer: a meter that
        answers its identification but fails its measurement reads is stale.
        """
        for name, rt in meters.items():
            if rt.config is None:  # every meter of a site file has its config
                continue
            since = rt.measured_at if rt.measured_at is not None else started_at or now
            rt.stale = now - since > limit
            group = rt.config.group
            source = None
            if allocation is not None:
                source = next(
                    (a.non_ev_source for a in allocation.accounts if a.group == group), None
                )
            self.events.meter_freshness(name, rt.stale, group=group, non_ev_source=source)
