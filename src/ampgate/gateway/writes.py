"""Writing the engine's decisions: setpoints, phase mode and failsafe changes, watchdog refresh.

A part of :class:`ampgate.gateway.loop.Gateway`. Lowering writes are
awaited on the bus's priority lane; increases and refreshes run in the background, and one
still waiting for the bus is cancelled when a newer decision changes its target.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from typing import Any

from ampgate.config import SiteConfig
from ampgate.devices.evc2 import phase_mode_code
from ampgate.dlm import Allocation, Setpoint
from ampgate.errors import AmpgateError
from ampgate.gateway.events import EventLog
from ampgate.gateway.health import DeviceHealth
from ampgate.gateway.programming import DeviceProgramming
from ampgate.gateway.runtime import ChargerRuntime

WATCHDOG_REFRESH_FRACTION = 3
"""Re-write amps_to_use when the last write is older than watchdog / this."""


class SetpointWriter:
    """The output side of a cycle: what the engine decided, on the wire."""

    def __init__(
        self,
        config: SiteConfig,
        events: EventLog,
        health: DeviceHealth,
        programming: DeviceProgramming,
        log: Any,
        clock: Callable[[], float],
    ) -> None:
        """Write to the chargers of ``config``; failsafe changes go through ``programming``."""
        self.config, self.events, self.health, self.programming = (
            config, events, health, programming,
        )  # fmt: skip
        self.log, self.clock = log, clock
        self._writes: dict[str, asyncio.Task[None]] = {}
        self._write_targets: dict[str, int] = {}

    def in_progress(self) -> list[asyncio.Task[None]]:
        """The background writes (increases, refreshes) not yet done."""
        return [t for t in self._writes.values() if not t.done()]

    async def write_all(
        self, chargers: Mapping[str, ChargerRuntime], allocation: Allocation, now: float
    ) -> None:
        """Lowering writes now (awaited, priority lane); the others in the background.

        An increase or a watchdog refresh waits its turn behind the polls on a slow line; the
        cycle does not wait for it, so the next meter read stays on time.
        """
        urgent: list[tuple[ChargerRuntime, Setpoint]] = []
        later: list[tuple[ChargerRuntime, Setpoint]] = []
        for rt in chargers.values():
            setpoint = allocation.setpoints.get(rt.name)
            if setpoint is None:
                continue
            lowering = rt.setpoint is None or setpoint.amps < rt.setpoint
            (urgent if lowering else later).append((rt, setpoint))
        # A background write still waiting for the bus must never land above a newer decision:
        # cancel it when the new target is lower (a cancelled queued request is never sent; one
        # already on the wire is followed by the new write). One towards a higher target (a
        # ramp) is left to land, or on a slow line each cycle's step would cancel the previous
        # one before it reached the bus and the car would wait for the ramp's end.
        stale = [
            self._writes.pop(rt.name)
            for rt, sp in (*urgent, *later)
            if rt.name in self._writes
            and (not self._writes[rt.name].done())
            and sp.amps < self._write_targets.get(rt.name, sp.amps)
        ]
        for task in stale:
            task.cancel()
        await asyncio.gather(*stale, return_exceptions=True)
        await asyncio.gather(*(self._apply(rt, sp, allocation.failsafe, now) for rt, sp in urgent))
        for rt, sp in later:
            pending = self._writes.get(rt.name)
            if pending is None or pending.done():
                self._write_targets[rt.name] = sp.amps
                self._writes[rt.name] = asyncio.create_task(
                    self._apply(rt, sp, allocation.failsafe, now)
                )

    async def _apply(
        self, rt: ChargerRuntime, setpoint: Setpoint | None, failsafe: Any, now: float
    ) -> None:
        """Write one charger's setpoint (if changed or due for a refresh) and failsafe plan."""
        if setpoint is None or rt.refused or not rt.online:
            return
        rt.target, rt.reason, rt.reason_code = setpoint.amps, setpoint.reason, setpoint.reason_code
        if rt.watchdog is None:
            # Identified, watchdog and failsafe not yet programmed (that follows this cycle's
            # writes): only a lowering goes out, so a charger found at 32 A is lowered first
            # and nothing is raised on a charger that would not fall back if ampgate died.
            if rt.setpoint is not None and setpoint.amps < rt.setpoint:
                await self._apply_setpoint(rt, setpoint, now)
            return
        wanted_failsafe = (self.programming.fixed_failsafe or failsafe).get(rt.name)
        if (
            wanted_failsafe is not None
            and rt.failsafe is not None
            and wanted_failsafe != rt.failsafe
        ):
            await self.programming.program(rt, int(wanted_failsafe))
        # A switch to more phases after the setpoint is lowered, to fewer before it is raised:
        # the car never sees the old current on the new phases.
        switch_after = setpoint.phases == 3 and rt.setpoint is not None
        if setpoint.phases is not None and not switch_after:
            await self._apply_phases(rt, setpoint.phases)
        await self._apply_setpoint(rt, setpoint, now)
        if setpoint.phases is not None and switch_after and rt.online:
            await self._apply_phases(rt, setpoint.phases)

    async def _apply_setpoint(self, rt: ChargerRuntime, setpoint: Setpoint, now: float) -> None:
        """Write reg 15 when it differs from the charger's or the watchdog refresh is due."""
        refresh = self.config.dlm.watchdog_seconds / WATCHDOG_REFRESH_FRACTION
        changed = rt.setpoint != setpoint.amps
        due = rt.last_write is None or now - rt.last_write >= refresh
        if not changed and not due:
            return
        old = rt.setpoint
        try:
            await rt.device.set_current(setpoint.amps)
        except AmpgateError as exc:
            self.health.failed(rt, exc)
            self.log.warning(
                "setpoint_write_failed", device=rt.name, amps=setpoint.amps, problem=str(exc)
            )
            return
        rt.setpoint, rt.last_write = setpoint.amps, self.clock()
        if changed:
            self.events.emit(
                "setpoint_changed",
                device=rt.name,
                old_amps=old,
                new_amps=setpoint.amps,
                reason=setpoint.reason_code,
                detail=setpoint.reason,
            )

    async def _apply_phases(self, rt: ChargerRuntime, phases: int) -> None:
        if rt.phase_to_use == phase_mode_code(phases):
            return
        try:
            outcome = await rt.device.set_phases(phases)
        except AmpgateError as exc:
            self.log.warning("phase_write_failed", device=rt.name, problem=str(exc))
            return
        if outcome.read_back is not None:  # not written again until a poll shows otherwise
            rt.phase_to_use = int(outcome.read_back.raw)

    async def write_shutdown(
        self,
        chargers: Mapping[str, ChargerRuntime],
        *,
        timeout: float,
        only: Collection[str] | None = None,
    ) -> None:
        """Write the shutdown current of policy ``dlm.shutdown`` to every controlled charger
        (or those in ``only``), all at once, giving up after ``timeout`` seconds.

        ``failsafe`` writes each charger's programmed failsafe current (0 when unknown),
        ``zero`` writes 0 A, ``keep`` writes nothing. A failed write is logged, never raised.
        """
        policy = self.config.dlm.shutdown
        if policy == "keep":
            return
        targets = {
            rt.name: (rt.failsafe if rt.failsafe is not None else 0) if policy == "failsafe" else 0
            for rt in chargers.values()
            if rt.online and not rt.refused and (only is None or rt.name in only)
        }

        async def one(rt: ChargerRuntime, amps: int) -> None:
            try:
                await rt.device.set_current(amps)
                self.events.emit("shutdown_setpoint", device=rt.name, amps=amps, policy=policy)
            except AmpgateError as exc:
                self.log.warning("shutdown_write_failed", device=rt.name, problem=str(exc))

        try:
            await asyncio.wait_for(
                asyncio.gather(*(one(chargers[n], a) for n, a in targets.items())), timeout
            )
        except TimeoutError:
            self.log.warning("shutdown_write_timeout", seconds=timeout)
