"""Start-up and device programming: identify, read settings, program watchdog/failsafe, repair.

A part of :class:`ampgate.gateway.loop.Gateway`: a device that fails is marked offline
(:class:`~ampgate.gateway.health.DeviceHealth`) and never stops the loop; one that answers as a
different model is refused (``device_identity_mismatch``) and never written.
"""

from __future__ import annotations

from typing import Any

from ampgate.config import SiteConfig
from ampgate.config.to_engine import failsafe_plan
from ampgate.devices.device import IdentityResult
from ampgate.dlm import Site
from ampgate.errors import AmpgateError
from ampgate.gateway.counters import record_counters
from ampgate.gateway.events import EventLog
from ampgate.gateway.health import DeviceHealth
from ampgate.gateway.runtime import ChargerRuntime, MeterRuntime


class DeviceProgramming:
    """Identification, settings reads and watchdog/failsafe programming of the site's devices."""

    def __init__(
        self, config: SiteConfig, site: Site, events: EventLog, health: DeviceHealth, log: Any
    ) -> None:
        """Program the devices of ``config`` (engine values ``site``) and report to ``events``."""
        self.config, self.site, self.events, self.health, self.log = (
            config, site, events, health, log,
        )  # fmt: skip
        self.fixed_failsafe = (
            failsafe_plan(config, site) if config.dlm.failsafe_policy == "fixed" else None
        )
        """The installer's failsafe current per charger (policy ``fixed``), else None."""

    async def identify(self, rt: ChargerRuntime | MeterRuntime) -> None:
        """Ask a device who it is; refuse a mismatch; read a charger's settings after it."""
        identity = await self.health.attempt(rt, rt.device.identify())
        if identity is None or not self.accept_identity(rt, identity):
            return
        if isinstance(rt, ChargerRuntime):
            await self.read_slow(rt)

    async def bring_up(self, rt: ChargerRuntime) -> None:
        """Program a newly identified charger's watchdog and failsafe, then read its settings.

        The programming writes go first, on the priority lane: until they are done the charger
        is only ever lowered, so on a busy RS485 line they must not wait behind the polls (a
        car plugged in at start-up would wait for its current). A charger back after being
        offline may have rebooted to its defaults: it is programmed again. The slow read follows.
        """
        rt.watchdog = rt.failsafe = None  # until programmed again, only lowering writes
        await self.program_planned(rt)
        if rt.online and not rt.refused:
            await self.read_slow(rt)

    async def read_slow(self, rt: ChargerRuntime) -> None:
        """Read a charger's settings, identity and energy; refuse it if its identity changed."""
        slow = await self.health.attempt(rt, rt.device.read_slow())
        if slow is None:
            return
        rt.slow = slow
        record_counters(rt, {"lifetime_energy": slow.lifetime_energy_kwh}, self.events)
        # The slow read carries the identity registers: a unit swapped between two polls
        # (never seen offline) is refused and never written again.
        self.accept_identity(rt, rt.device.identity_from(slow.readings))

    def accept_identity(self, rt: ChargerRuntime | MeterRuntime, identity: IdentityResult) -> bool:
        """Refuse a device whose identity does not match its map (event, never written)."""
        if identity.matches:
            return True
        rt.refused = identity.describe()
        self.events.emit(
            "device_identity_mismatch",
            "error",
            device=rt.name,
            model=identity.model,
            checks={
                c.field: {"expected": list(c.expected), "found": c.found} for c in identity.checks
            },
        )
        return False

    async def program(self, rt: ChargerRuntime, failsafe: int) -> None:
        """Program and verify reg 19 (watchdog) and reg 20 (failsafe) on one charger."""
        watchdog = self.config.dlm.watchdog_seconds
        try:
            await rt.device.program_watchdog(watchdog, failsafe)
        except AmpgateError as exc:
            self.health.failed(rt, exc)
            self.log.warning("watchdog_program_failed", device=rt.name, problem=str(exc))
            return
        rt.watchdog, rt.failsafe = watchdog, failsafe
        self.events.emit(
            "watchdog_programmed", device=rt.name, watchdog_seconds=watchdog, failsafe_amps=failsafe
        )

    async def program_planned(self, rt: ChargerRuntime) -> None:
        """Program the watchdog and the failsafe current the site's failsafe plan gives ``rt``."""
        plan = self.fixed_failsafe or failsafe_plan(self.config, self.site)
        await self.program(rt, plan[rt.name])

    async def repair_drift(self, rt: ChargerRuntime) -> None:
        """Compare reg 19/20 with what was programmed; report and re-apply a difference."""
        if rt.watchdog is None or rt.failsafe is None:
            await self.program_planned(rt)
            return
        if rt.slow is None:
            return
        actual = {
            "communication_timeout": rt.slow.communication_timeout,
            "failsafe_current": rt.slow.failsafe_current,
        }
        expected = {"communication_timeout": rt.watchdog, "failsafe_current": rt.failsafe}
        drifted = {
            k: int(v) if v.is_integer() else v
            for k, v in actual.items()
            if v is not None and v != expected[k]
        }
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
            await self.program(rt, rt.failsafe)
