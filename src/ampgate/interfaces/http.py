"""The daemon's one HTTP server: the ASGI app of :mod:`.api` under uvicorn, in the daemon's loop.

The socket is bound by :meth:`HttpServer.bind` before anything else starts, so an address in
use is a :class:`~ampgate.errors.ConfigError` naming ``[http] listen`` and the address. uvicorn
then serves on that socket as a task of the running loop; it installs no signal handlers (the
daemon owns SIGTERM, SIGINT and SIGHUP). :meth:`HttpServer.stop` ends the open event streams
first, so the graceful shutdown never waits on them.

Default address: 127.0.0.1:9740 (loopback only), the default of ``[http] listen``; put a
reverse proxy in front of it to reach it from elsewhere.

Use from the daemon::

    server = HttpServer(make_app(store), host=host, port=port)   # site.http.host_port()
    server.bind()           # ConfigError when the address cannot be bound
    await server.start()    # serving (port 0 picks a free one: see server.address)
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from ampgate.errors import ConfigError
from ampgate.interfaces.api import stop_streams

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9740
LISTEN_KEY = "http.listen"
SHUTDOWN_SECONDS = 2.0
"""The longest a stop waits for requests in flight before cancelling them."""


class _LoopServer(uvicorn.Server):
    """uvicorn without its signal handlers: the process's signals belong to the daemon."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing (uvicorn would replace the daemon's SIGTERM/SIGINT handling)."""
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; ConfigError naming ``[http] listen`` if not."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(
            f"{LISTEN_KEY}: cannot listen on {shown}: {exc.strerror}; "
            "allowed: an address of this host"
        ) from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"{LISTEN_KEY}: cannot listen on {shown}: {exc.strerror or exc}; "
            "choose a free port or another address of this host in [http] listen"
        ) from exc
    sock.setblocking(False)
    return sock


class HttpServer:
    """Serves an ASGI app on one address from the running event loop."""

    def __init__(self, app: FastAPI, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        """Prepare to serve ``app`` on ``host:port``; nothing is bound until :meth:`bind`."""
        self.app = app
        self._host, self._port = host, port
        self._socket: socket.socket | None = None
        self._server: _LoopServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port once bound with port 0."""
        if self._socket is None:
            return self._host, self._port
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    def bind(self) -> tuple[str, int]:
        """Bind the socket now (idempotent); ConfigError naming the key and the address."""
        if self._socket is None:
            self._socket = bind_socket(self._host, self._port)
        return self.address

    async def start(self) -> tuple[str, int]:
        """Bind if not yet bound and serve in a task of the running loop."""
        self.bind()
        if self._task is not None:
            return self.address
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level=logging.WARNING,
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=int(SHUTDOWN_SECONDS),
        )
        self._server = _LoopServer(config)
        assert self._socket is not None
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name="ampgate-http"
        )
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():  # it failed to start: say why
            self._task.result()
        return self.address

    async def stop(self) -> None:
        """End the streams, stop serving and close the socket; safe to call twice."""
        server, task, sock = self._server, self._task, self._socket
        self._server = self._task = self._socket = None
        stop_streams(self.app)
        if server is not None and task is not None:
            server.should_exit = True
            with contextlib.suppress(TimeoutError):  # wait_for cancelled it then
                await asyncio.wait_for(task, SHUTDOWN_SECONDS + 3)
        if sock is not None:
            sock.close()
