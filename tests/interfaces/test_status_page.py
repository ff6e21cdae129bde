"""The status page in a real browser (headless Chromium) against a daemon on simulators: the
chargers' names and setpoints appear, follow the site live over the stream, and the page fits a
phone's width."""

from __future__ import annotations

import asyncio
import json

import pytest

from .browser import CHROMIUM, Browser
from .daemon_site import served_daemon

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (Debian package chromium; scripts/setup)"
)

RENDERED = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('[data-charger]')]
  .map(c => [c.dataset.charger, c.querySelector('.setpoint').textContent])))"""


def _shows(setpoints: dict[str, str]) -> str:
    """A JavaScript test: the page shows exactly these setpoints."""
    return f"{RENDERED} === {json.dumps(json.dumps(setpoints, separators=(',', ':')))}"


def _rendered(browser: Browser) -> dict[str, str]:
    return json.loads(browser.evaluate(RENDERED))


async def _settled(sd, timeout: float = 10.0) -> dict[str, str]:
    """The setpoints once they stopped moving, as the page shows them ("16 A")."""
    last: dict[str, int] = {}
    for _ in range(int(timeout / 0.4)):
        now = sd.setpoints()
        if now == last:
            return {name: f"{amps} A" for name, amps in now.items()}
        last = now
        await asyncio.sleep(0.4)
    raise AssertionError(f"setpoints never settled: {last}")


async def test_the_page_shows_each_charger_and_follows_its_setpoint_live(tmp_path):
    async with served_daemon(tmp_path, chargers=3) as sd:
        await sd.until(lambda: min(sd.setpoints().values()) > 6, 15, "setpoints above failsafe")
        before = await _settled(sd)
        browser = await asyncio.to_thread(Browser)
        try:
            await asyncio.to_thread(browser.open, sd.base + "/")
            await asyncio.to_thread(
                browser.wait_for, "document.querySelectorAll('[data-charger]').length === 3"
            )
            await asyncio.to_thread(browser.wait_for, _shows(before))
            first = _rendered(browser)
            text = await asyncio.to_thread(browser.evaluate, "document.body.innerText")
            sd.site.building[:] = [20.0, 20.0, 20.0]  # the building takes most of the fuse
            after = await _settled(sd)
            assert after != before, "the load step did not lower any setpoint"
            await asyncio.to_thread(  # live: no reload, the stream brought it
                browser.wait_for, _shows(after)
            )
            live = _rendered(browser)
            await asyncio.to_thread(browser.open, sd.base + "/")  # a second load shows it too
            await asyncio.to_thread(browser.wait_for, _shows(after))
            events = await asyncio.to_thread(
                browser.evaluate, "document.querySelector('#events ul').innerText"
            )
        finally:
            await asyncio.to_thread(browser.close)
    assert set(first) == {"c1", "c2", "c3"} and first == before
    assert live == after and live != first
    assert "fuse main" in text and "L1" in text and "building est." in text
    assert "charging" in text and "ok" in text  # vehicle state, loop status
    assert "device_online" in events


async def test_the_page_fits_a_phone_screen(tmp_path):
    async with served_daemon(tmp_path, chargers=3) as sd:
        await sd.until(lambda: min(sd.setpoints().values()) > 6, 15, "setpoints")
        browser = await asyncio.to_thread(Browser, 390, 844)
        try:
            await asyncio.to_thread(browser.open, sd.base + "/")
            await asyncio.to_thread(
                browser.wait_for, "document.querySelectorAll('[data-charger]').length === 3"
            )
            widths = await asyncio.to_thread(
                browser.evaluate,
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth,"
                " document.querySelector('[data-charger]').getBoundingClientRect().width]",
            )
            await asyncio.to_thread(browser.screenshot, tmp_path / "phone.png")
        finally:
            await asyncio.to_thread(browser.close)
    scroll, client, card = widths
    assert client == 390 and scroll <= client  # no sideways scrolling
    assert card > 300  # one charger per row, using the width
    assert (tmp_path / "phone.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
