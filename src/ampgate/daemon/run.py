"""The daemon process: logging, metrics server, sd_notify, signals and config reload.

``SIGTERM``/``SIGINT`` stop the loop, write the shutdown current and exit within a few seconds.
``SIGHUP`` re-reads the config file: a valid one replaces the running gateway (the engine state
of chargers that stay is kept) and applies its ``[log]`` and ``[metrics]`` sections (logging is
reconfigured, the metrics server moves to a new ``listen`` address); an invalid one is logged
problem by problem and the old one keeps running. systemd is told ``READY=1`` once the first
cycle has run (the chargers found above their share are lowered by then), and again after a
reload.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ampgate.config import MetricsConfig, SiteConfig, check_config, load_config
from ampgate.daemon import systemd
from ampgate.errors import ConfigError
from ampgate.gateway.events import EventLog
from ampgate.gateway.loop import Gateway
from ampgate.interfaces.control import ControlChannel
from ampgate.interfaces.ems import EmsServer
from ampgate.interfaces.http import MetricsHttpServer
from ampgate.interfaces.snapshot import SnapshotStore
from ampgate.logging import configure_logging, get_logger

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
        self.metrics_wanted = serve_metrics
        self.serve_metrics = serve_metrics and config.metrics.enabled
        self.ready = False
        """True once systemd was told READY=1 (after the first cycle)."""
        self.on_cycle = on_cycle
        self.stop_event = asyncio.Event()
        self._reload_requested = False
        self._stop_requested = False
        self.http: Any = None
        self.log = get_logger("ampgate.daemon")

    def request_stop(self) -> None:
        """Ask the loop to stop after the current cycle (signal-safe); a reload never undoes it."""
        self._stop_requested = True
        self.stop_event.set()

    def request_reload(self) -> None:
        """Ask for a config reload between cycles (signal-safe)."""
        self._reload_requested = True
        self.stop_event.set()

    def _start_metrics(self, metrics: MetricsConfig | None = None) -> None:
        """Serve metrics on ``metrics`` (the running config's section by default), if enabled;
        ConfigError naming the address when it cannot be bound."""
        metrics = metrics if metrics is not None else self.config.metrics
        self.serve_metrics = self.metrics_wanted and metrics.enabled
        if not self.serve_metrics:
            return
        host, port = metrics.host_port()
        self.http = MetricsHttpServer(self.store, host=host, port=port)
        self.http.start()
        self.log.info("metrics_listening", host=host, port=self.http_port)

    def _move_metrics(self, old: SiteConfig) -> None:
        """Serve metrics as the reloaded ``[metrics]`` says; if its address cannot be bound,
        keep serving on the old one (a reload never takes the metrics away)."""
        if self.http is not None:
            self.http.stop()
            self.http = None
        for metrics in (self.config.metrics, old.metrics):
            try:
                self._start_metrics(metrics)
                return
            except ConfigError as exc:
                self.http = None
                self.log.error("metrics_listen_failed", listen=metrics.listen, problem=str(exc))
        self.serve_metrics = False

    @property
    def http_port(self) -> int | None:
        """The port the metrics server listens on (None when not serving)."""
        return self.http.address[1] if self.http is not None else None

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
        if new.metrics != old.metrics:
            self._move_metrics(old)
        await self._move_ems(new)
        self.gateway = Gateway(new, store=self.store, events=self.events, control=self.control)
        self.gateway.state = old_state  # keep what the engine knew about chargers that stay
        await self.gateway.start()
        self.log.info("config_reloaded", file=str(self.path), chargers=len(new.chargers))
        systemd.notify_ready()

    async def run(self) -> int:
        """Start everything, run until stopped, shut down cleanly; return the exit code."""
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
        self._start_metrics()
        try:
            if self.config.ems is not None:
                self.ems = EmsServer(self.config, self.store, self.control)
                await self.ems.start()
                self.log.info("ems_listening", host=self.ems.host, port=self.ems.port)
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
            if self.http is not None:
                self.http.stop()
            if self.ems is not None:
                await self.ems.stop()
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
