"""The metrics and health HTTP server: ``/metrics`` (Prometheus) and ``/healthz`` (JSON).

Runs prometheus-client's WSGI app under :mod:`wsgiref` in a background thread, so a slow scrape
never blocks the asyncio loop; both endpoints only read the :class:`SnapshotStore`.

``/healthz`` answers 200 ``{"status": "ok", ...}`` while the loop's last iteration is younger
than the stall limit, 503 with ``"stalled"`` when it is older and 503 with ``"starting"`` before
the first iteration. The stall limit defaults to 3 × cycle + 5 s (the cycle taken from the
snapshot's :attr:`LoopHealth.cycle_seconds`, 10 s when unknown).

Default address: 127.0.0.1:9740 (loopback only), the default of ``[metrics] listen`` in the
site configuration; put a reverse proxy or a Prometheus on the same host in front of it.

Use from the daemon::

    server = MetricsHttpServer(store, host=host, port=port)  # site.metrics.host_port()
    server.start()          # returns once the socket is bound (port 0 picks a free one)
    ...
    server.stop()
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from ampgate.errors import ConfigError
from ampgate.interfaces.metrics import build_registry
from ampgate.interfaces.snapshot import DaemonSnapshot, SnapshotStore

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9740
DEFAULT_CYCLE_SECONDS = 10.0


def default_stall_limit(cycle_seconds: float | None) -> float:
    """The stall limit for a loop cycle: 3 × cycle + 5 s (10 s cycle when unknown)."""
    cycle = cycle_seconds if cycle_seconds and cycle_seconds > 0 else DEFAULT_CYCLE_SECONDS
    return 3.0 * cycle + 5.0


def health(
    snapshot: DaemonSnapshot, now_monotonic: float, stall_limit_seconds: float | None = None
) -> tuple[int, dict[str, Any]]:
    """Return the HTTP status and JSON body of ``/healthz`` for a snapshot at a moment."""
    limit = (
        stall_limit_seconds
        if stall_limit_seconds is not None
        else default_stall_limit(snapshot.loop.cycle_seconds)
    )
    last = snapshot.loop.last_iteration_monotonic
    body: dict[str, Any] = {
        "version": snapshot.build.version,
        "stall_limit_seconds": limit,
        "cycles": snapshot.dlm.cycles_total,
        "devices_up": sum(1 for d in snapshot.devices if d.up),
        "devices": len(snapshot.devices),
    }
    if last is None:
        return 503, {"status": "starting", "last_iteration_age_seconds": None, **body}
    age = max(0.0, now_monotonic - last)
    status = "ok" if age <= limit else "stalled"
    return (200 if status == "ok" else 503), {
        "status": status,
        "last_iteration_age_seconds": round(age, 3),
        **body,
    }


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def make_app(
    store: SnapshotStore,
    *,
    stall_limit_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[..., Iterable[bytes]]:
    """The WSGI application serving ``/metrics``, ``/healthz`` and a short index at ``/``."""
    metrics_app = make_wsgi_app(build_registry(store))

    def respond(start_response, status: int, body: bytes, content_type: str) -> list[bytes]:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        start_response(f"{status} {_REASONS[status]}", headers)
        return [body]

    def app(environ: dict[str, Any], start_response) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return respond(start_response, 405, b"only GET\n", "text/plain; charset=utf-8")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            status, body = health(store.latest(), clock(), stall_limit_seconds)
            data = (json.dumps(body, sort_keys=True) + "\n").encode()
            return respond(start_response, status, data, "application/json")
        if path == "/":
            index = b"ampgate: /metrics (Prometheus), /healthz (JSON)\n"
            return respond(start_response, 200, index, "text/plain; charset=utf-8")
        return respond(start_response, 404, b"not found\n", "text/plain; charset=utf-8")

    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


class MetricsHttpServer:
    """Serves ``/metrics`` and ``/healthz`` from a background thread."""

    def __init__(
        self,
        store: SnapshotStore,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        stall_limit_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare a server for ``store``; nothing is bound until :meth:`start`."""
        self._store = store
        self._host = host
        self._port = port
        self._app = make_app(store, stall_limit_seconds=stall_limit_seconds, clock=clock)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when started with port 0."""
        if self._server is None:
            return self._host, self._port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        """Bind and serve in a daemon thread; ConfigError naming the address if binding fails."""
        if self._server is not None:
            return self.address

        server_class = _ThreadingWSGIServer
        if ":" in self._host:

            class _V6(_ThreadingWSGIServer):
                address_family = socket.AF_INET6

            server_class = _V6
        try:
            self._server = make_server(
                self._host, self._port, self._app, server_class, _QuietHandler
            )
        except OSError as exc:
            raise ConfigError(
                f"metrics server cannot listen on {self._host}:{self._port}: {exc.strerror}; "
                "choose a free port or address in the configuration"
            ) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="ampgate-metrics-http",
            daemon=True,
        )
        self._thread.start()
        return self.address

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
