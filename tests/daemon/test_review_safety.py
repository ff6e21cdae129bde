"""Safety paths found in review: a stop request is never lost to a reload."""

from __future__ import annotations

import asyncio

from ampgate.daemon.run import Daemon

from .simsite import start_site


async def test_sigterm_arriving_with_a_sighup_still_stops_the_daemon(tmp_path):
    """SIGHUP then SIGTERM within one cycle: the daemon exits and writes the failsafe current.

    Both signals only set the loop's stop event; a reload that cleared it used to swallow the
    stop request, leaving the daemon running after SIGTERM.
    """
    site = await start_site(1, limit=32)
    path = tmp_path / "site.toml"
    path.write_text(site.config_text())
    daemon = Daemon(site.config(), path, serve_metrics=False)
    task = asyncio.create_task(daemon.run())
    try:
        for _ in range(100):
            if int(site.chargers["c1"].image.raw("amps_to_use")) > 6:
                break
            await asyncio.sleep(0.05)
        assert int(site.chargers["c1"].image.raw("amps_to_use")) > 6
        daemon.request_reload()
        daemon.request_stop()
        assert await asyncio.wait_for(asyncio.shield(task), 5) == 0
        assert int(site.chargers["c1"].image.raw("amps_to_use")) == 6
    finally:
        if not task.done():
            daemon.request_stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await site.stop()
