"""The daemon process: logging, the HTTP server, sd_notify, signals and config reload.

``SIGTERM``/``SIGINT`` stop the loop, write the shutdown current and exit within a few seconds.
``SIGHUP`` re-reads the config file: a valid one replaces the running gateway (the engine state
of chargers that stay is kept) and applies its ``[log]`` and ``[http]`` sections (logging is
reconfigured, the HTTP server moves to a new ``listen`` address); an invalid one is logged
problem by problem and the old one keeps running. systemd is told ``READY=1`` once the first
cycle has run (the chargers found above their share are lowered by then), and again after a
reload. With ``[mqtt]`` the publisher runs as a task of its own (it reads the snapshot store
only); a changed ``[mqtt]`` on reload restarts it, and a stop says ``offline`` on the broker.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ampgate.config import SiteConfig, check_config, load_config
from ampgate.daemon import systemd
from ampgate.daemon.http_service import HttpService
from ampgate.errors import ConfigError
from ampgate.gateway.events import EventLog
from ampgate.gateway.loop import Gateway
from ampgate.interfaces.control import ControlChannel, takes_limits
from ampgate.interfaces.store import SnapshotStore
from ampgate.logging import configure_logging, get_logger

if TYPE_CHECKING:  # imported when a site has [ems] / [mqtt]: ~1 and ~2 MB a site without saves
    from ampgate.interfaces.ems import EmsServer
    from ampgate.interfaces.mqtt import MqttPublisher

SHUTDOWN_WRITE_SECONDS = 3.0


class Daemon:
    """A running gateway plus the process-level services around it."""

    def __init__(
        self,
        config: SiteConfig,
        path: str | Path | None = None,
        *,
        store: SnapshotStore | None = None,
        serve_metrics: bool = True,
        on_cycle: Callable[[Gateway], Any] | None = None,
    ) -> None:
        """Prepare to run ``config`` (read from ``path``, used again on SIGHUP)."""
        self.config = config
        self.path = Path(path) if path is not None else None
        self.store = store if store is not None else SnapshotStore()
        self.events = EventLog(on_event=self.store.publish_event)
        self.control = ControlChannel()
        """External limits from the servers to whichever gateway runs (kept over reloads)."""
        self.gateway = Gateway(config, store=self.store, events=self.events, control=self.control)
        self.ems: EmsServer | None = None
        self.mqtt: MqttPublisher | None = None
        """The MQTT publisher while ``[mqtt]`` is present."""
        self.http = HttpService(self.store, wanted=serve_metrics, control=self.control)
        """The HTTP server (status page, API, /metrics); ``serve_metrics=False``: none."""
        self.ready = False
        """True once systemd was told READY=1 (after the first cycle)."""
        self.on_cycle = on_cycle
        self.stop_event = asyncio.Event()
        self._reload_requested = False
        self._stop_requested = False
        self.log = get_logger("ampgate.daemon")

    def request_stop(self) -> None:
        """Ask the loop to stop after the current cycle (signal-safe); a reload never undoes it."""
        self._stop_requested = True
        self.stop_event.set()

    def request_reload(self) -> None:
        """Ask for a config reload between cycles (signal-safe)."""
        self._reload_requested = True
        self.stop_event.set()

    def open_http(self) -> None:
        """Bind the HTTP address now (before anything else starts); ConfigError naming
        ``[http] listen`` or ``[http] token_file`` when it cannot be served."""
        self.http.open(self.config)

    def _warn_deprecations(self, site: SiteConfig) -> None:
        for deprecation in site.deprecations:
            self.log.warning("config_deprecated", file=site.source, problem=deprecation)

    @property
    def http_port(self) -> int | None:
        """The port the HTTP server listens on (None when not serving)."""
        return self.http.port

    async def _move_ems(self, new: SiteConfig) -> None:
        """Serve the EMS map of the reloaded site (its groups may have changed); when the new
        ``[ems] listen`` cannot be bound, serve it on the old address (a reload never takes
        the server away)."""
        old = self.ems
        if old is not None:
            await old.stop()
        self.ems = None
        if new.ems is None:
            return
        addresses = [new.ems.host_port()]
        if old is not None and (old.host, old.port) != addresses[0]:
            addresses.append((old.host, old.port))
        from ampgate.interfaces.ems import EmsServer

        for host, port in addresses:
            server = EmsServer(new, self.store, self.control)
            server.host, server.port = host, port
            try:
                await server.start()
            except ConfigError as exc:
                self.log.error("ems_listen_failed", listen=f"{host}:{port}", problem=str(exc))
                continue
            self.ems = server
            self.log.info("ems_listening", host=server.host, port=server.port)
            return

    def _start_mqtt(self, site: SiteConfig) -> None:
        """Start publishing on MQTT when ``[mqtt]`` is present (it connects on its own)."""
        if site.mqtt is None:
            return
        from ampgate.interfaces.mqtt import MqttPublisher

        self.mqtt = MqttPublisher(
            site.mqtt,
            self.store,
            site=site.site.name,
            source=site.source,
            limits=(site, self.control),
        )
        self.mqtt.start()

    async def _move_mqtt(self, old: SiteConfig, new: SiteConfig) -> None:
        """Restart the publisher when the reloaded ``[mqtt]`` (or the site name its default
        topics come from) changed, or whether any group takes MQTT limits (the subscription);
        ``offline`` is published on the old connection first. Otherwise limits are checked
        against the new groups from now on."""
        same = (old.mqtt, old.site.name, old.source) == (new.mqtt, new.site.name, new.source)
        if same and takes_limits(old, "mqtt") == takes_limits(new, "mqtt"):
            if self.mqtt is not None:
                self.mqtt.limits = (new, self.control)
            return
        if self.mqtt is not None:
            await self.mqtt.stop()
            self.mqtt = None
        self._start_mqtt(new)

    async def _reload(self) -> None:
        if self.path is None:
            return
        new, problems = check_config(self.path)
        if new is None:
            self.log.error("config_reload_refused", file=str(self.path), problems=problems)
            return
        systemd.notify_reloading()
        old_state = self.gateway.state
        # Chargers no longer in the file get the shutdown current; the others keep theirs
        # until the new gateway writes (no gap in control for them).
        removed = set(self.config.chargers) - set(new.chargers)
        await self.gateway.shutdown(write=bool(removed), only=removed)
        old = self.config
        self.config = new
        if new.log != old.log:  # said in the old format, the last line before the new one
            self.log.info(
                "logging_reconfigured", log_format=new.log.format, log_level=new.log.level
            )
            configure_logging(new.log.format, new.log.level)
        self._warn_deprecations(new)
        await self.http.move(new)  # re-reads the token file too; nothing when all is the same
        await self._move_ems(new)
        await self._move_mqtt(old, new)
        self.gateway = Gateway(new, store=self.store, events=self.events, control=self.control)
        self.gateway.state = old_state  # keep what the engine knew about chargers that stay
        await self.gateway.start()
        self.log.info("config_reloaded", file=str(self.path), chargers=len(new.chargers))
        systemd.notify_ready()

    async def run(self) -> int:
        """Start everything, run until stopped, shut down cleanly; return the exit code."""
        self._warn_deprecations(self.config)
        self.open_http()
        loop = asyncio.get_running_loop()
        installed = []
        for sig, handler in (
            (signal.SIGTERM, self.request_stop),
            (signal.SIGINT, self.request_stop),
            (signal.SIGHUP, self.request_reload),
        ):
            try:
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread / platform
                pass
        try:
            await self.http.start(self.config)
            if self.config.ems is not None:
                from ampgate.interfaces.ems import EmsServer

                self.ems = EmsServer(self.config, self.store, self.control)
                await self.ems.start()
                self.log.info("ems_listening", host=self.ems.host, port=self.ems.port)
            self._start_mqtt(self.config)
            await self.gateway.start()
            self.log.info("daemon_started", site=self.config.site.name)
            while True:
                await self.gateway.run(self.stop_event, self._after_cycle)
                if self._stop_requested or not self._reload_requested:
                    break
                self._reload_requested = False
                self.stop_event.clear()
                await self._reload()
        finally:
            systemd.notify_stopping()
            self.log.info("daemon_stopping", policy=self.config.dlm.shutdown)
            await self.gateway.shutdown(timeout=SHUTDOWN_WRITE_SECONDS)
            await self.http.stop()
            if self.ems is not None:
                await self.ems.stop()
            if self.mqtt is not None:
                await self.mqtt.stop()
            for sig in installed:
                loop.remove_signal_handler(sig)
        self.log.info("daemon_stopped")
        return 0

    def _after_cycle(self, gateway: Gateway) -> None:
        if not self.ready and gateway.allocation is not None:
            self.ready = True
            systemd.notify_ready(f"controlling {len(self.config.chargers)} charger(s)")
        if any(rt.online for rt in [*gateway.chargers.values(), *gateway.meters.values()]):
            systemd.notify_watchdog()
        if self.on_cycle is not None:
            self.on_cycle(gateway)


def run_daemon(path: str | Path) -> int:
    """``ampgate run --config FILE``: refuse an invalid file (ConfigError), else run until told."""
    config = load_config(path)
    configure_logging(config.log.format, config.log.level)
    return asyncio.run(Daemon(config, path).run())
