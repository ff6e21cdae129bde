"""A gateway on simulators publishing to a broker: the site the MQTT tests share."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass

from ampgate.config import SiteConfig, check_config_text
from ampgate.gateway.loop import Gateway
from ampgate.interfaces.mqtt import MqttPublisher
from gateway.simsite import SimSite, start_site
from interfaces.broker import Recorder

PREFIX = "ampgate/depot"
"""The default prefix of a site named "depot"."""


def mqtt_site_text(site: SimSite, port: int, **mqtt: object) -> str:
    """The simulated site named "depot" publishing to the broker on ``port``."""
    keys = {"host": "127.0.0.1", "port": port, "measurement_interval_seconds": 0.0, **mqtt}
    lines = ["[mqtt]"] + [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    return '[site]\nname = "depot"\n' + site.config_text() + "\n".join(lines) + "\n"


def mqtt_site_config(site: SimSite, port: int, **mqtt: object) -> SiteConfig:
    """The validated site config of :func:`mqtt_site_text`."""
    config, problems = check_config_text(mqtt_site_text(site, port, **mqtt), "depot.toml")
    assert config is not None, problems
    return config


@dataclass
class Running:
    """A gateway running its cycles on simulators, and its publisher (not started yet)."""

    site: SimSite
    gateway: Gateway
    publisher: MqttPublisher
    cycles: list[float]
    stop: asyncio.Event
    task: asyncio.Task[None]
    """The gateway's cycles."""

    def setpoint(self, name: str) -> int | None:
        return self.gateway.chargers[name].setpoint

    def max_cycle_gap(self, since: float) -> float:
        """The longest time between two cycle ends after ``since`` (monotonic)."""
        times = [t for t in self.cycles if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def run_site(port: int, **mqtt: object) -> Running:
    """Start 2 simulated chargers and a meter, a gateway cycling every 0.2 s, and a publisher."""
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0))
    config = mqtt_site_config(site, port, **mqtt)
    assert config.mqtt is not None
    gateway = Gateway(config)
    await gateway.start()
    cycles: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, lambda _g: cycles.append(time.monotonic())))
    publisher = MqttPublisher(config.mqtt, gateway.store, site="depot", backoff=(0.2, 1.0))
    return Running(site, gateway, publisher, cycles, stop, task)


async def stop_site(running: Running) -> None:
    """Stop the publisher, the gateway and the simulators."""
    await running.publisher.stop()
    running.stop.set()
    await asyncio.wait_for(running.task, 3)
    await running.gateway.shutdown()
    await running.site.stop()


def charging(rec: Recorder) -> bool:
    """Both chargers are told more than their minimum and the cars draw it."""
    for name in ("c1", "c2"):
        setpoint, current = (
            rec.latest(f"{PREFIX}/charger/{name}/setpoint"),
            rec.latest(f"{PREFIX}/charger/{name}/current_l1"),
        )
        if setpoint is None or current is None or setpoint.payload == "None":
            return False
        if float(setpoint.payload) <= 6 or current.payload == "None":
            return False
    return True


def charging_one(rec: Recorder) -> bool:
    """c1 is told more than its minimum."""
    setpoint = rec.latest(f"{PREFIX}/charger/c1/setpoint")
    return setpoint is not None and setpoint.payload != "None" and float(setpoint.payload) > 6
