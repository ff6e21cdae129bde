"""The daemon's HTTP server as the site file's ``[http]`` section says.

Opened (socket bound, token read) before anything else starts, so a busy address or an
unreadable token file stops the daemon with a ConfigError naming the key; served in the daemon's
loop; moved when a reload changes ``[http]`` — and when the new section cannot be applied (its
address is taken, its token file unreadable) the server stays as it was: a reload never takes
the status page, the API or the metrics away.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ampgate.config import HttpConfig, SiteConfig
from ampgate.errors import ConfigError
from ampgate.interfaces.control import ControlChannel
from ampgate.interfaces.store import SnapshotStore
from ampgate.logging import get_logger

if TYPE_CHECKING:  # FastAPI and uvicorn (~12 MB) are imported only when [http] is enabled
    from ampgate.interfaces.http import HttpServer


def token_path(site: SiteConfig) -> Path | None:
    """``[http] token_file`` as a path; a relative one is taken from the site file's folder."""
    if site.http.token_file is None:
        return None
    path = Path(site.http.token_file)
    source = site.source
    if not path.is_absolute() and source and not source.startswith("<"):
        path = Path(source).parent / path
    return path


def read_token(site: SiteConfig) -> str | None:
    """The write token of ``site`` (None: writes off); ConfigError naming the key."""
    path = token_path(site)
    if path is None:
        return None
    from ampgate.interfaces.write_gate import read_token_file

    return read_token_file(path)


class HttpService:
    """Owns the :class:`~ampgate.interfaces.http.HttpServer` of the running site, if any."""

    def __init__(
        self,
        store: SnapshotStore,
        *,
        wanted: bool = True,
        control: ControlChannel | None = None,
    ) -> None:
        """Serve ``store``; ``wanted=False`` never serves (tests, embedded gateways).

        ``control`` takes the external limits of ``PUT /api/v1/groups/{group}/limit``, checked
        against the site last opened or moved to (None: the limit endpoints answer 403).
        """
        self.store = store
        self.wanted = wanted
        self.control = control
        self._site: SiteConfig | None = None
        self.server: HttpServer | None = None
        self._serving: tuple[HttpConfig, str | None] | None = None
        """The section and token the server runs with."""
        self.log = get_logger("ampgate.daemon")

    @property
    def port(self) -> int | None:
        """The port served on (None when not serving)."""
        return self.server.address[1] if self.server is not None else None

    @property
    def host(self) -> str | None:
        """The address served on (None when not serving)."""
        return self.server.address[0] if self.server is not None else None

    def _bind(self, http: HttpConfig, token: str | None) -> HttpServer:
        from ampgate.interfaces.api import make_app
        from ampgate.interfaces.http import HttpServer

        host, port = http.host_port()
        app = make_app(
            self.store, write_token=token, site_config=self._running_site, control=self.control
        )
        server = HttpServer(app, host=host, port=port)
        server.bind()
        return server

    def _running_site(self) -> SiteConfig:
        assert self._site is not None  # set before any server is bound
        return self._site

    def open(self, site: SiteConfig) -> None:
        """Read the token and bind the address of ``site`` (idempotent); ConfigError if not."""
        self._site = site
        if self.server is not None or not (self.wanted and site.http.enabled):
            return
        token = read_token(site)
        self.server = self._bind(site.http, token)
        self._serving = (site.http, token)

    async def start(self, site: SiteConfig) -> None:
        """Open (if not yet) and serve."""
        self.open(site)
        if self.server is not None:
            await self.server.start()
            host, port = self.server.address
            self.log.info("http_listening", host=host, port=port, writes=self._writes())

    def _writes(self) -> str:
        return "token" if self._serving is not None and self._serving[1] else "off"

    async def move(self, site: SiteConfig) -> None:
        """Serve as the reloaded ``site`` says; keep the running server if it cannot."""
        self._site = site  # limits are checked against the new groups from now on
        wanted = self.wanted and site.http.enabled
        if not wanted:
            await self.stop()
            return
        try:
            token = read_token(site)
        except ConfigError as exc:
            self.log.error("http_reload_failed", listen=site.http.listen, problem=str(exc))
            return
        if self._serving == (site.http, token) and self.server is not None:
            return
        old, serving = self.server, self._serving
        same_address = serving is not None and serving[0].host_port() == site.http.host_port()
        if old is not None and same_address:
            await old.stop()  # free the port for the new app (new token or settings)
            self.server = None
        try:
            server = self._bind(site.http, token)
        except ConfigError as exc:
            self.log.error("http_reload_failed", listen=site.http.listen, problem=str(exc))
            if self.server is None and serving is not None:  # the port was given up: take it back
                try:
                    self.server = self._bind(*serving)
                    await self.server.start()
                except ConfigError as again:
                    self.server = self._serving = None
                    self.log.error(
                        "http_reload_failed", listen=serving[0].listen, problem=str(again)
                    )
            return
        if self.server is not None:
            await self.server.stop()
        self.server, self._serving = server, (site.http, token)
        await server.start()
        host, port = server.address
        self.log.info("http_listening", host=host, port=port, writes=self._writes())

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        server, self.server, self._serving = self.server, None, None
        if server is not None:
            await server.stop()
