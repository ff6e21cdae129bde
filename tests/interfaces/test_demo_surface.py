"""``ampgate demo`` as an integrator first meets it: the status page's address is the first line
(in a pipe too), and with ``--mqtt HOST:PORT`` the simulated site is published to a real
broker, Home Assistant discovery included."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from interfaces.broker import Broker, recording

ROOT = Path(__file__).resolve().parents[2]
AMPGATE = [sys.executable, "-m", "ampgate"]


async def _demo(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *AMPGATE,
        "demo",
        "--listen",
        "127.0.0.1:0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def test_demo_prints_the_status_page_first_and_publishes_to_the_broker(broker: Broker):
    async with recording(broker.port, "#") as rec:
        proc = await _demo(
            "--duration", "6", "--chargers", "2", "--mqtt", f"127.0.0.1:{broker.port}"
        )
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        second = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert first.startswith("status page: http://127.0.0.1:"), first
        assert second == f"mqtt: publishing to 127.0.0.1:{broker.port} under ampgate/demo/\n"
        await rec.until(
            lambda r: r.latest("ampgate/demo/charger/c2/state") is not None, 10, "c2's state"
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, stderr.decode()
        await rec.until(
            lambda r: (m := r.latest("ampgate/demo/status")) is not None and m.payload == "offline",
            5,
            "offline after the demo stopped",
        )
    state = json.loads(rec.latest("ampgate/demo/charger/c1/state").payload)
    assert state["name"] == "c1" and state["online"] is True
    configs = [m.topic for m in rec.messages if m.topic.startswith("homeassistant/")]
    assert "homeassistant/sensor/ampgate_demo/charger_c1_setpoint/config" in configs, configs[:9]


async def test_a_bad_mqtt_address_is_refused_naming_the_option():
    proc = await _demo("--duration", "2", "--mqtt", "broker:99999")
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode != 0
    assert "--mqtt 'broker:99999': port '99999' is not allowed" in stderr.decode()
    assert "1-65535" in stderr.decode()
