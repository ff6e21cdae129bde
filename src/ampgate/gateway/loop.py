"""The gateway: poll → allocate → write, with watchdog/failsafe programming and drift repair.

One :class:`Gateway` runs one site config. :meth:`Gateway.start` opens the buses and sends
nothing. A charger is identified by its first fast poll (the identification register is in it;
a mismatching unit is refused with ``device_identity_mismatch`` and never written), a meter by
its identification reads before its first measurement. Safety comes first at start-up: the
first cycle waits for every charger's first poll, lowers those found above their share, and
only then reads each new charger's settings and programs its watchdog (reg 19) and failsafe
current (reg 20); until that is done a charger is only ever lowered.
:meth:`Gateway.cycle` then does, every cycle:

1. poll the fast fields of every charger whose previous poll is done (settings, identity and
   energy every ``slow_poll_every`` polls, staggered across chargers), each bus serialising
   its own requests, waiting at most ``cycle_seconds / POLL_WAIT_FRACTION`` for those on TCP;
2. read every meter and, once a complete first measurement exists, call
   :func:`ampgate.dlm.allocate` with the meter reading and each charger's latest reading,
   each time-stamped when it was taken (the engine takes a charger's draw over the range of
   readings the meter's window may cover);
3. write only the setpoints that differ from what the charger reports (lowering writes on the
   bus's priority lane), and re-write an unchanged setpoint when the last write is older than a
   third of the watchdog so a live gateway never trips it;
4. re-program the failsafe current when the engine's plan changes, and re-apply watchdog or
   failsafe settings that drifted (``config_mismatch``);
5. publish a snapshot for metrics and /healthz.

A device that fails is marked offline and the engine assumes the worst for it; it never stops
the loop. :meth:`Gateway.run` stops within ``STOP_GRACE_S`` of a stop request even on a dead
line; :meth:`Gateway.shutdown` writes the shutdown current and closes the buses.

The gateway is composed of parts made in its constructor: device health
(:mod:`ampgate.gateway.health`), start-up and programming (:mod:`ampgate.gateway.programming`) and
the output side — setpoint, phase and failsafe writes, watchdog refresh
(:mod:`ampgate.gateway.writes`). The outside world reads the snapshot it publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from ampgate.config import SerialBusConfig, SiteConfig
from ampgate.config.to_engine import build_site
from ampgate.dlm import Allocation, EngineState, allocate, plan_failsafe
from ampgate.errors import AmpgateError
from ampgate.gateway.control import ControlInputs
from ampgate.gateway.events import EventLog
from ampgate.gateway.health import DeviceHealth
from ampgate.gateway.inputs import (
    first_measurement_complete,
    measurements,
    take_meter_measurement,
)
from ampgate.gateway.open_devices import open_devices
from ampgate.gateway.programming import DeviceProgramming
from ampgate.gateway.publish import LoopCounters, build_snapshot
from ampgate.gateway.runtime import ChargerRuntime, MeterRuntime
from ampgate.gateway.writes import SetpointWriter
from ampgate.interfaces.control import ControlChannel
from ampgate.interfaces.store import SnapshotStore
from ampgate.logging import get_logger

POLL_WAIT_FRACTION = 4
"""A cycle waits at most cycle_seconds / this for its charger polls before reading the meters."""
STARTUP_POLL_WAIT_S = 30.0
"""Until the first allocation a cycle waits this long at most for every charger's first poll
(a silent unit costs its timeout and retries once; the bound keeps a wedged bus from holding
the loop)."""
STOP_GRACE_S = 1.0
"""On stop, a cycle still running (a dead line's timeouts) gets this long, then is cancelled."""


class Gateway:
    """One site under control: devices, engine state, events and the snapshot it publishes.

    Composed of :class:`~ampgate.gateway.health.DeviceHealth`,
    :class:`~ampgate.gateway.programming.DeviceProgramming` and
    :class:`~ampgate.gateway.writes.SetpointWriter`, each given what it needs when it is made.
    """

    def __init__(
        self,
        config: SiteConfig,
        *,
        store: SnapshotStore | None = None,
        events: EventLog | None = None,
        control: ControlChannel | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Prepare the gateway for ``config``; nothing is opened until :meth:`start`.

        ``control`` brings external limits from the servers (none when not given).
        """
        self.config = config
        self.site = build_site(config)
        self.store = store if store is not None else SnapshotStore()
        self.events = (
            events
            if events is not None
            else EventLog(clock=clock, wall_clock=wall_clock, on_event=self.store.publish_event)
        )
        self.clock = clock
        self.wall_clock = wall_clock
        self.log = get_logger("ampgate.daemon", site=config.site.name)
        self.state = EngineState()
        self.allocation: Allocation | None = None
        self.counters = LoopCounters()
        self.started_at: float | None = None
        self.chargers: dict[str, ChargerRuntime] = {}
        self.meters: dict[str, MeterRuntime] = {}
        self._buses: list[Any] = []
        self._polls: dict[str, asyncio.Task[None]] = {}
        """Each charger's poll in progress: polled on its own, so a silent or slow charger
        never delays the readings of the others (the engine needs them fresh)."""
        self._bring_ups: dict[str, asyncio.Task[None]] = {}
        self._poll_rounds: dict[str, int] = {}
        self._serial_chargers = frozenset(
            name
            for name, c in config.chargers.items()
            if isinstance(config.buses[c.bus], SerialBusConfig)
        )
        """Chargers on RS485: the cycle does not wait for their polls (a round of a line takes
        most of a cycle; the engine bounds their older readings' draw conservatively)."""
        self.health = DeviceHealth(self.events, clock, wall_clock)
        self.programming = DeviceProgramming(config, self.site, self.events, self.health, self.log)
        self.writer = SetpointWriter(
            config, self.events, self.health, self.programming, self.log, clock
        )
        self.control = ControlInputs(config, self.site, self.events, control, wall_clock)

    # ------------------------------------------------------------------ start-up

    async def start(self) -> None:
        """Open the buses and set up every device; nothing is sent until the first cycle.

        A charger is identified by its first fast poll (the identity register is in it), so
        the first cycle can lower a charger found above its share before anything else goes on
        the bus; its settings are read and its watchdog and failsafe programmed right after
        (:meth:`_bring_up_chargers`).
        """
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
        self._publish()

    # ------------------------------------------------------------------ one cycle

    async def cycle(self) -> Allocation | None:
        """Run one cycle: charger polls → meters → allocate → write → bring up new chargers.

        Each charger's poll starts with the cycle unless its previous one is still on the bus
        (a slow RS485 line, a silent unit). The cycle waits for the polls of chargers on TCP at
        most ``cycle_seconds / POLL_WAIT_FRACTION`` (not for RS485 ones: a line's round takes
        most of a cycle and the wait would delay the reaction), then reads the meters; a
        charger still on the bus keeps its older, time-stamped reading and the engine takes
        its draw over the range the meter's reading may cover. Until the first allocation the
        cycle waits for every first poll (RS485 too): the first decision comes one meter read
        after the first round. The engine runs and lowering writes take the bus's priority
        lane at once, so a load step is answered one cycle period (plus that wait on TCP) plus,
        on RS485, the request already on the wire and the write's own wire time after it
        happens. Chargers seen for the first time (or back) have their settings read and
        their watchdog and failsafe programmed after those writes.
        """
        began = self.clock()
        self.counters.cycles += 1
        self._start_polls()
        first = self.allocation is None
        pending = [
            task
            for name, task in self._polls.items()
            if not task.done() and (first or name not in self._serial_chargers)
        ]
        if pending:
            wait = (
                STARTUP_POLL_WAIT_S if first else self.config.dlm.cycle_seconds / POLL_WAIT_FRACTION
            )
            await asyncio.wait(pending, timeout=wait)
        await asyncio.gather(*(self._poll_meter(rt) for rt in self.meters.values()))
        now = self.clock()
        allocation = None
        if first_measurement_complete(
            self.chargers, self.meters, self.config, self.started_at, now
        ):
            observed = measurements(self.chargers, self.meters, self.config, now)
            site = self.control.site_for_cycle(now, self.wall_clock())
            allocation = allocate(site, observed, self.state, now)
            if site is not self.site:  # the failsafe plan is made from the fuses alone
                allocation = replace(
                    allocation, failsafe=plan_failsafe(self.site, allocation.state)
                )
            self.state = allocation.state
            self.allocation = allocation
            await self.writer.write_all(self.chargers, allocation, now)
            self._observe(allocation)
            self._bring_up_chargers()
        self.health.meter_freshness(
            self.meters, self.config.dlm.meter_stale_seconds, self.started_at, self.allocation, now
        )
        self.control.record_import(self.meters, allocation, self.wall_clock())
        self.counters.last_cycle_seconds = self.clock() - began
        self._publish()
        return allocation

    def _bring_up_chargers(self) -> None:
        """Read settings and program watchdog/failsafe of chargers identified this cycle.

        Runs in the background after the cycle's lowering writes, so a charger found at 32 A
        is lowered first; the same task then takes the charger's turn on the bus.
        """
        for rt in self.chargers.values():
            task = self._bring_ups.get(rt.name)
            if not rt.bring_up_due or (task is not None and not task.done()):
                continue
            rt.bring_up_due = False
            self._bring_ups[rt.name] = asyncio.create_task(self.programming.bring_up(rt))

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

    def in_flight(self) -> list[asyncio.Task[None]]:
        """The per-device work still running: polls, background writes, bring-ups (a count
        of the loop's tasks minus these is what a leak check compares)."""
        tasks = [*self._polls.values(), *self.writer.in_progress(), *self._bring_ups.values()]
        return [t for t in tasks if not t.done()]

    async def settle(self) -> None:
        """Wait for the charger polls and background writes in progress (tests, benchmarks)."""
        await asyncio.gather(*self.in_flight(), return_exceptions=True)

    async def _poll_meter(self, rt: MeterRuntime) -> None:
        if rt.refused:
            return
        rt.polled = True
        if not rt.online and rt.device.map.identification:
            # first seen or back: identify before its readings are used (a map without
            # identification checks has nothing to ask; its identify would send no request)
            await self.programming.identify(rt)
            if not rt.online or rt.refused:
                return
        measurement = await self.health.attempt(rt, rt.device.read_measurement())
        if measurement is None:
            return
        take_meter_measurement(rt, measurement, self.events)

    async def _poll_charger(self, rt: ChargerRuntime, slow: bool) -> None:
        if rt.refused:
            return
        was_online = rt.online
        try:
            fast = await rt.device.read_fast()
        except AmpgateError as exc:
            self.health.failed(rt, exc)
            return
        finally:
            rt.polled = True
        self.health.succeeded(rt)
        if not was_online:
            # First seen, or back after being silent: the fast poll carries the identity
            # register, so a unit that was silent at start-up or was swapped is refused and
            # never written; its settings and programming follow the cycle's writes.
            if not self.programming.accept_identity(rt, rt.device.identity_from(fast.readings)):
                return
            rt.bring_up_due = True
        rt.fast, rt.phase_to_use = fast, fast.phase_to_use
        rt.measured_at = rt.last_ok
        if fast.amps_to_use is not None:
            rt.setpoint = fast.amps_to_use
        labels = rt.device.map
        self.events.charger_bits(
            rt.name,
            warning_raw=fast.warning_code,
            error_raw=fast.error_code,
            warning_labels=labels.bits_of("warning_code"),
            error_labels=labels.bits_of("error_code"),
            voltages=list(fast.voltages),
        )
        if slow and was_online:
            await self.programming.read_slow(rt)
            await self.programming.repair_drift(rt)

    def _observe(self, allocation: Allocation) -> None:
        self.counters.count(allocation)
        for notice in allocation.notices:
            self.events.engine_notice(notice.kind, notice.subject, notice.detail)

    def _publish(self) -> None:
        self.store.publish(
            build_snapshot(
                self.config,
                self.chargers,
                self.meters,
                self.allocation,
                self.counters,
                self.events.recent,
                self.control.status(self.wall_clock()),
            )
        )

    # ------------------------------------------------------------------ run and stop

    async def run(
        self, stop: asyncio.Event, on_cycle: Callable[[Gateway], Any] | None = None
    ) -> None:
        """Run cycles every ``cycle_seconds`` until ``stop`` is set; a failing cycle is logged."""
        period = self.config.dlm.cycle_seconds
        next_at = self.clock()
        while not stop.is_set():
            await self._cycle_unless_stopped(stop)
            if on_cycle is not None:
                on_cycle(self)
            next_at += period
            now = self.clock()
            next_at = max(next_at, now)  # overran: start the next cycle at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_at - now))

    async def _cycle_unless_stopped(self, stop: asyncio.Event) -> None:
        """Run one cycle; when ``stop`` is set meanwhile, give it STOP_GRACE_S, then cancel it.

        A cycle on a dead line can take the timeouts and retries of every unit; stopping must
        not wait for them (systemd's TimeoutStopSec). A failing cycle is logged, never raised.
        """
        task = asyncio.create_task(self.cycle())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                await asyncio.wait({task}, timeout=STOP_GRACE_S)
            if not task.done():
                task.cancel()
                self.log.warning("cycle_cancelled_on_stop", grace_seconds=STOP_GRACE_S)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception as exc:  # the loop must survive anything a cycle throws
            self.log.exception("cycle_failed", problem=str(exc))
        finally:
            stopped.cancel()

    async def shutdown(
        self,
        *,
        write: bool = True,
        timeout: float = 3.0,
        only: Collection[str] | None = None,
    ) -> None:
        """Write the shutdown current (policy ``dlm.shutdown``) and close every bus.

        ``only``: write the shutdown current to these chargers alone (a reload that drops
        chargers from the config leaves them at a safe current, not their last setpoint).
        """
        running = (*self._polls.values(), *self.writer.in_progress(), *self._bring_ups.values())
        background = [t for t in running if not t.done()]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if write:
            await self.writer.write_shutdown(self.chargers, timeout=timeout, only=only)
        for bus in self._buses:
            try:
                await bus.close()
            except Exception as exc:  # closing must never keep the process alive
                self.log.warning(
                    "bus_close_failed", bus=getattr(bus, "name", "?"), problem=str(exc)
                )
