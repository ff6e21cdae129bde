"""A daemon serving HTTP in the test's event loop, controlling a site on simulators."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from ampgate.config import check_config_text
from ampgate.daemon.run import Daemon
from gateway.simsite import SimSite, start_site

_NO_HTTP = re.compile(r"^\[(?:metrics|http)\]\nenabled = false\n", re.M)


def http_site_text(site: SimSite, http: str = 'listen = "127.0.0.1:0"', **dlm: object) -> str:
    """The simulated site's file with an ``[http]`` section of ``http``'s lines."""
    text = _NO_HTTP.sub("", site.config_text(**dlm))
    return text + f"[http]\n{http}\n"


@dataclass
class ServedDaemon:
    """A running daemon, its simulators and where its HTTP server listens."""

    daemon: Daemon
    site: SimSite
    task: asyncio.Task[int]

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.daemon.http_port}"

    def setpoints(self) -> dict[str, int]:
        """What the simulated chargers were told (reg 15)."""
        return {n: int(s.image.raw("amps_to_use")) for n, s in self.site.chargers.items()}

    async def until(self, predicate, timeout: float, what: str) -> None:
        """Wait until ``predicate()`` holds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def served_daemon(
    tmp_path: Path,
    chargers: int = 2,
    http: str = 'listen = "127.0.0.1:0"',
    edit: Callable[[str], str] = str,
) -> AsyncIterator[ServedDaemon]:
    """Start simulators and a daemon serving HTTP on a free port; stop both at the end.

    ``edit`` changes the site file's text before the daemon reads it."""
    site = await start_site(chargers, limit=32)
    path = tmp_path / "site.toml"
    path.write_text(edit(http_site_text(site, http)))
    config, problems = check_config_text(path.read_text(), str(path))
    assert config is not None, problems
    daemon = Daemon(config, path)
    task = asyncio.create_task(daemon.run())
    served = ServedDaemon(daemon, site, task)
    try:
        await served.until(lambda: daemon.http_port is not None or task.done(), 10, "http")
        if task.done():
            task.result()
        yield served
    finally:
        daemon.request_stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), 8)
        finally:
            if not task.done():
                task.cancel()
            await site.stop()
