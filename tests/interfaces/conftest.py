"""Fixtures of the interface tests: a real MQTT broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from interfaces.broker import Broker, needs_mosquitto
from interfaces.mqtt_site import run_site, stop_site


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A running anonymous mosquitto on a free loopback port (skipped without mosquitto)."""
    needs_mosquitto()
    running = Broker(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def depot(broker: Broker):
    """A gateway on 2 simulated chargers and a meter, with a publisher to ``broker`` (not
    started: a test starts it once it listens)."""
    running = await run_site(broker.port)
    try:
        yield running
    finally:
        await stop_site(running)
