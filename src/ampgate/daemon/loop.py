"""The gateway: poll → allocate → write, with watchdog/failsafe programming and drift repair.

One :class:`Gateway` runs one site config. :meth:`Gateway.start` opens the buses, identifies
every device (refusing a mismatching one with ``device_identity_mismatch``), reads the current
settings and programs each charger's watchdog (reg 19) and failsafe current (reg 20).
:meth:`Gateway.cycle` then does, every cycle:

1. start a round of polls of the fast fields of every charger (settings, identity and energy
   every ``slow_poll_every`` rounds), all chargers concurrently, each bus serialising its own
   requests; the round runs alongside the cycle and a new one starts when it is done;
2. read every meter and, once a complete first measurement exists, call
   :func:`ampgate.dlm.allocate` with the meter reading and each charger's latest reading;
3. write only the setpoints that differ from what the charger reports (lowering writes on the
   bus's priority lane), and re-write an unchanged setpoint when the last write is older than a
   third of the watchdog so a live gateway never trips it;
4. re-program the failsafe current when the engine's plan changes, and re-apply watchdog or
   failsafe settings that drifted (``config_mismatch``);
5. publish a snapshot for metrics and /healthz.

A device that fails is marked offline and the engine assumes the worst for it; it never stops
the loop. :meth:`Gateway.shutdown` writes the shutdown current and closes the buses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from ampgate.config import SiteConfig
from ampgate.daemon.devices import open_devices
from ampgate.daemon.events import EventLog
from ampgate.daemon.inputs import first_measurement_complete, measurements
from ampgate.daemon.publish import build_snapshot
from ampgate.daemon.runtime import ChargerRuntime, MeterRuntime, number_of, raw_of
from ampgate.daemon.site import build_site, failsafe_plan
from ampgate.daemon.snapshot import SnapshotStore
from ampgate.dlm import (
    Allocation,
    EngineState,
    Setpoint,
    allocate,
)
from ampgate.errors import AmpgateError
from ampgate.logging import get_logger

WATCHDOG_REFRESH_FRACTION = 3
"""Re-write amps_to_use when the last write is older than watchdog / this."""
POLL_WAIT_FRACTION = 4
"""A cycle waits at most cycle_seconds / this for its charger polls before reading the meters."""
PHASE_TO_USE = {1: 0, 3: 6}
"""Reg 14 value for the engine's phase mode: 0 = L1 only, 6 = three phases."""


class Gateway:
    """One site under control: devices, engine state, events and the snapshot it publishes."""

    def __init__(
        self,
        config: SiteConfig,
        *,
        store: SnapshotStore | None = None,
        events: EventLog | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Prepare the gateway for ``config``; nothing is opened until :meth:`start`."""
        self.config = config
        self.site = build_site(config)
        self.store = store if store is not None else SnapshotStore()
        self.events = events if events is not None else EventLog(clock=clock)
        self.clock = clock
        self.wall_clock = wall_clock
        self.log = get_logger("ampgate.daemon", site=config.site.name)
        self.state = EngineState()
        self.allocation: Allocation | None = None
        self.cycles = 0
        self.started_at: float | None = None
        self.last_cycle_seconds: float | None = None
        self.reason_counts: dict[str, int] = {}
        self.overloads = 0
        self.chargers: dict[str, ChargerRuntime] = {}
        self.meters: dict[str, MeterRuntime] = {}
        self._buses: list[Any] = []
        self._polls: dict[str, asyncio.Task[None]] = {}
        """Each charger's poll in progress: polled on its own, so a silent or slow charger
        never delays the readings of the others (the engine needs them fresh)."""
        self._writes: dict[str, asyncio.Task[None]] = {}
        self._write_targets: dict[str, int] = {}
        self._poll_rounds: dict[str, int] = {}
        self._fixed_failsafe = (
            failsafe_plan(config, self.site) if config.dlm.failsafe_policy == "fixed" else None
        )

    # ------------------------------------------------------------------ start-up

    async def start(self) -> None:
        """Open the buses, identify every device, read settings, program watchdog/failsafe."""
        self.started_at = self.clock()
        self._buses, chargers, meters = open_devices(self.config)
        self.chargers = {
            n: ChargerRuntime(name=n, device=d, config=self.config.chargers[n])
            for n, d in chargers.items()
        }
        self.meters = {
            n: MeterRuntime(name=n, device=d, config=self.config.meters[n])
            for n, d in meters.items()
        }
        await asyncio.gather(
            *(self._identify(rt) for rt in [*self.meters.values(), *self.chargers.values()])
        )
        plan = self._fixed_failsafe or failsafe_plan(self.config, self.site)
        await asyncio.gather(
            *(
                self._program(rt, plan[rt.name])
                for rt in self.chargers.values()
                if rt.online and not rt.refused
            )
        )
        self._publish()

    async def _identify(self, rt: ChargerRuntime | MeterRuntime) -> None:
        try:
            identity = await rt.device.identify()
        except AmpgateError as exc:
            self._failed(rt, exc)
            return
        self._succeeded(rt)
        if not identity.matches:
            rt.refused = identity.describe()
            self.events.emit(
                "device_identity_mismatch",
                "error",
                device=rt.name,
                model=identity.model,
                checks={
                    c.field: {"expected": list(c.expected), "found": c.found}
                    for c in identity.checks
                },
            )
            return
        if isinstance(rt, ChargerRuntime):
            await self._read_slow(rt)

    async def _read_slow(self, rt: ChargerRuntime) -> None:
        try:
            slow = await rt.device.read_slow()
        except AmpgateError as exc:
            self._failed(rt, exc)
            return
        rt.values.update(slow.readings)
        self._succeeded(rt)

    async def _program(self, rt: ChargerRuntime, failsafe: int) -> None:
        """Program and verify reg 19 (watchdog) and reg 20 (failsafe) on one charger."""
        watchdog = self.config.dlm.watchdog_seconds
        try:
            await rt.device.program_watchdog(watchdog, failsafe)
        except AmpgateError as exc:
            self._failed(rt, exc)
            self.log.warning("watchdog_program_failed", device=rt.name, problem=str(exc))
            return
        rt.watchdog, rt.failsafe = watchdog, failsafe
        self.events.emit(
            "watchdog_programmed", device=rt.name, watchdog_seconds=watchdog, failsafe_amps=failsafe
        )

    # ------------------------------------------------------------------ one cycle

    async def cycle(self) -> Allocation | None:
        """Run one cycle: charger polls → meters → allocate → write.

        Each charger's poll starts with the cycle unless its previous one is still on the bus
        (a slow RS485 line, a silent unit). The cycle waits for them at most
        ``cycle_seconds / POLL_WAIT_FRACTION``, then reads the meters: a charger reading taken
        just before the meter reading lets the engine (``align_reading_times``) subtract the
        chargers' draw as the meter saw it without assuming more change than can have happened
        in between; a charger still on the bus keeps its older, time-stamped reading and the
        engine bounds its draw conservatively. The engine runs and lowering writes take the
        bus's priority lane at once, so a load step is answered one cycle period plus at most
        that wait plus about one request's wire time after it happens.
        """
        began = self.clock()
        self.cycles += 1
        self._start_polls()
        pending = [t for t in self._polls.values() if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.config.dlm.cycle_seconds / POLL_WAIT_FRACTION)
        await asyncio.gather(*(self._poll_meter(rt) for rt in self.meters.values()))
        now = self.clock()
        allocation = None
        if first_measurement_complete(
            self.chargers, self.meters, self.config, self.started_at, now
        ):
            observed = measurements(self.chargers, self.meters, self.config, now)
            allocation = allocate(self.site, observed, self.state, now)
            self.state = allocation.state
            self.allocation = allocation
            await self._write_all(allocation, now)
            self._observe(allocation)
        self._meter_events(now)
        self.last_cycle_seconds = self.clock() - began
        self._publish()
        return allocation

    async def _write_all(self, allocation: Allocation, now: float) -> None:
        """Lowering writes now (awaited, priority lane); the others in the background.

        An increase or a watchdog refresh waits its turn behind the polls on a slow line; the
        cycle does not wait for it, so the next meter read stays on time.
        """
        urgent, later = [], []
        for rt in self.chargers.values():
            setpoint = allocation.setpoints.get(rt.name)
            if setpoint is None:
                continue
            lowering = rt.setpoint is None or setpoint.amps < rt.setpoint
            (urgent if lowering else later).append((rt, setpoint))
        # A background write still waiting for the bus must never land after a newer decision:
        # cancel it when the target changed (a cancelled queued request is never sent; one
        # already on the wire is followed by the new write).
        stale = [
            self._writes.pop(rt.name)
            for rt, sp in (*urgent, *later)
            if rt.name in self._writes
            and (not self._writes[rt.name].done())
            and self._write_targets.get(rt.name) != sp.amps
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

    def _start_polls(self) -> None:
        """Start a poll of every charger whose previous poll is done.

        Settings, identity and energy (the slow read) come every ``slow_poll_every`` polls of
        a charger, the chargers staggered so one cycle never carries every slow read.
        """
        every = self.config.dlm.slow_poll_every
        for i, rt in enumerate(self.chargers.values()):
            task = self._polls.get(rt.name)
            if task is not None and not task.done():
                continue
            rounds = self._poll_rounds.get(rt.name, 0)
            self._poll_rounds[rt.name] = rounds + 1
            slow = (rounds + i) % every == 0
            self._polls[rt.name] = asyncio.create_task(self._poll_charger(rt, slow))

    async def settle(self) -> None:
        """Wait for the charger polls and background writes in progress (tests, benchmarks)."""
        tasks = [*self._polls.values(), *self._writes.values()]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _poll_meter(self, rt: MeterRuntime) -> None:
        if rt.refused:
            return
        rt.polled = True
        try:
            measurement = await rt.device.read_measurement()
        except AmpgateError as exc:
            self._failed(rt, exc)
            return
        rt.values.update(measurement.readings)
        rt.measurement = measurement
        self._succeeded(rt)
        rt.measured_at = rt.last_ok

    async def _poll_charger(self, rt: ChargerRuntime, slow: bool) -> None:
        if rt.refused:
            return
        was_online = rt.online
        try:
            fast = await rt.device.read_fast()
        except AmpgateError as exc:
            self._failed(rt, exc)
            return
        finally:
            rt.polled = True
        values = fast.readings
        rt.values.update(values)
        self._succeeded(rt)
        rt.measured_at = rt.last_ok
        amps = raw_of(values, "amps_to_use")
        if amps is not None:
            rt.setpoint = int(amps)
        labels = rt.device.map
        self.events.charger_bits(
            rt.name,
            warning_raw=raw_of(values, "warning_code"),
            error_raw=raw_of(values, "error_code"),
            warning_labels=labels.bits_of("warning_code"),
            error_labels=labels.bits_of("error_code"),
            voltages=[number_of(values, f"voltage_l{i}") for i in (1, 2, 3)],
        )
        if slow or not was_online:
            await self._read_slow(rt)
            await self._repair_drift(rt)

    async def _repair_drift(self, rt: ChargerRuntime) -> None:
        """Compare reg 19/20 with what was programmed; report and re-apply a difference."""
        if rt.watchdog is None or rt.failsafe is None:
            plan = self._fixed_failsafe or failsafe_plan(self.config, self.site)
            await self._program(rt, plan[rt.name])
            return
        actual = {
            "communication_timeout": raw_of(rt.values, "communication_timeout"),
            "failsafe_current": raw_of(rt.values, "failsafe_current"),
        }
        expected = {"communication_timeout": rt.watchdog, "failsafe_current": rt.failsafe}
        drifted = {k: v for k, v in actual.items() if v is not None and v != expected[k]}
        for field_name, value in drifted.items():
            self.events.emit(
                "config_mismatch",
                "warning",
                device=rt.name,
                field=field_name,
                expected=expected[field_name],
                actual=value,
            )
        if drifted:
            await self._program(rt, rt.failsafe)

    # ------------------------------------------------------------------ output

    async def _apply(
        self, rt: ChargerRuntime, setpoint: Setpoint | None, failsafe: Any, now: float
    ) -> None:
        """Write one charger's setpoint (if changed or due for a refresh) and failsafe plan."""
        if setpoint is None or rt.refused or not rt.online:
            return
        rt.target, rt.reason, rt.reason_code = setpoint.amps, setpoint.reason, setpoint.reason_code
        wanted_failsafe = (self._fixed_failsafe or failsafe).get(rt.name)
        if (
            wanted_failsafe is not None
            and rt.failsafe is not None
            and wanted_failsafe != rt.failsafe
        ):
            await self._program(rt, int(wanted_failsafe))
        if setpoint.phases is not None:
            await self._apply_phases(rt, setpoint.phases)
        refresh = self.config.dlm.watchdog_seconds / WATCHDOG_REFRESH_FRACTION
        changed = rt.setpoint != setpoint.amps
        due = rt.last_write is None or now - rt.last_write >= refresh
        if not changed and not due:
            return
        old = rt.setpoint
        try:
            await rt.device.set_current(setpoint.amps)
        except AmpgateError as exc:
            self._failed(rt, exc)
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
        wanted = PHASE_TO_USE[phases]
        current = raw_of(rt.values, "phase_to_use")
        if current == wanted:
            return
        try:
            await rt.device.write_field("phase_to_use", wanted, priority=True)
        except AmpgateError as exc:
            self.log.warning("phase_write_failed", device=rt.name, problem=str(exc))

    def _observe(self, allocation: Allocation) -> None:
        for sp in allocation.setpoints.values():
            self.reason_counts[sp.reason_code] = self.reason_counts.get(sp.reason_code, 0) + 1
        for acc in allocation.accounts:
            if acc.non_ev_source == "meter" and acc.non_ev_load + acc.allocated > acc.limit:
                self.overloads += 1
                break

    def _meter_events(self, now: float) -> None:
        limit = self.config.dlm.meter_stale_seconds
        for name, rt in self.meters.items():
            since = rt.last_ok if rt.last_ok is not None else self.started_at or now
            stale = now - since > limit
            rt.stale = stale
            source = None
            if self.allocation is not None:
                source = next(
                    (
                        a.non_ev_source
                        for a in self.allocation.accounts
                        if a.group == rt.config.group
                    ),
                    None,
                )
            self.events.meter_freshness(name, stale, group=rt.config.group, non_ev_source=source)

    # ------------------------------------------------------------------ health bookkeeping

    def _succeeded(self, rt: ChargerRuntime | MeterRuntime) -> None:
        rt.last_ok, rt.last_ok_unix, rt.online, rt.last_error = (
            self.clock(),
            self.wall_clock(),
            True,
            None,
        )
        self.events.device_seen(rt.name, True)

    def _failed(self, rt: ChargerRuntime | MeterRuntime, exc: Exception) -> None:
        rt.last_error = str(exc)
        rt.online = False
        self.events.device_seen(rt.name, False, problem=str(exc))

    def _publish(self) -> None:
        self.store.publish(build_snapshot(self))

    # ------------------------------------------------------------------ run and stop

    async def run(
        self, stop: asyncio.Event, on_cycle: Callable[[Gateway], Any] | None = None
    ) -> None:
        """Run cycles every ``cycle_seconds`` until ``stop`` is set; a failing cycle is logged."""
        period = self.config.dlm.cycle_seconds
        next_at = self.clock()
        while not stop.is_set():
            try:
                await self.cycle()
            except Exception as exc:  # the loop must survive anything a cycle throws
                self.log.exception("cycle_failed", problem=str(exc))
            if on_cycle is not None:
                on_cycle(self)
            next_at += period
            now = self.clock()
            next_at = max(next_at, now)  # overran: start the next cycle at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_at - now))

    async def shutdown(self, *, write: bool = True, timeout: float = 3.0) -> None:
        """Write the shutdown current (policy ``dlm.shutdown``) and close every bus."""
        background = [t for t in (*self._polls.values(), *self._writes.values()) if not t.done()]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        policy = self.config.dlm.shutdown
        if write and policy != "keep":
            targets = {
                rt.name: (rt.failsafe if rt.failsafe is not None else 0)
                if policy == "failsafe"
                else 0
                for rt in self.chargers.values()
                if rt.online and not rt.refused
            }

            async def one(rt: ChargerRuntime, amps: int) -> None:
                try:
                    await rt.device.set_current(amps)
                    self.events.emit("shutdown_setpoint", device=rt.name, amps=amps, policy=policy)
                except AmpgateError as exc:
                    self.log.warning("shutdown_write_failed", device=rt.name, problem=str(exc))

            try:
                await asyncio.wait_for(
                    asyncio.gather(*(one(self.chargers[n], a) for n, a in targets.items())),
                    timeout,
                )
            except TimeoutError:
                self.log.warning("shutdown_write_timeout", seconds=timeout)
        for bus in self._buses:
            try:
                await bus.close()
            except Exception as exc:  # closing must never keep the process alive
                self.log.warning(
                    "bus_close_failed", bus=getattr(bus, "name", "?"), problem=str(exc)
                )


def _is_identity_problem(exc: Exception) -> bool:
    from ampgate.errors import DeviceError

    return isinstance(exc, DeviceError)
