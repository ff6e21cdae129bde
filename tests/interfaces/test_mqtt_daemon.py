"""The daemon as a process with ``[mqtt]``: the broker's last will says ``offline`` when it is
SIGKILLed; SIGTERM says ``offline`` itself; SIGHUP with a changed ``[mqtt]`` moves the
publisher (the old prefix says ``offline``, the new one ``online``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from gateway.simsite import start_site
from interfaces.broker import recording
from interfaces.mqtt_site import PREFIX, mqtt_site_text

ROOT = Path(__file__).resolve().parents[2]


async def _start_daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ampgate",
            "run",
            "--config",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
        )


def _status(prefix: str):
    def latest(rec) -> str | None:
        message = rec.latest(f"{prefix}/status")
        return None if message is None else message.payload

    return latest


def _events(log: Path) -> list[dict]:
    lines = log.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def test_sigkill_leaves_offline_on_the_status_topic(broker, tmp_path):
    site = await start_site(2, limit=32)
    config, log = tmp_path / "site.toml", tmp_path / "daemon.log"
    config.write_text(mqtt_site_text(site, broker.port))
    status = _status(PREFIX)
    proc = await _start_daemon(config, log)
    try:
        async with recording(broker.port, f"{PREFIX}/#") as rec:
            await rec.until(
                lambda r: status(r) == "online" and r.latest(f"{PREFIX}/charger/c1/state"),
                15,
                "the daemon online with its chargers",
            )
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            await rec.until(lambda r: status(r) == "offline", 5, "the last will")
        async with recording(broker.port, f"{PREFIX}/status") as late:
            await late.until(lambda r: bool(r.messages), 3, "the retained status")
            assert late.messages[-1].payload == "offline" and late.messages[-1].retain
        connected = [e for e in _events(log) if e["event"] == "mqtt_connected"]
        assert connected and connected[0]["prefix"] == PREFIX
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await site.stop()


async def test_sighup_moves_the_publisher_and_sigterm_says_offline(broker, tmp_path):
    site = await start_site(1, limit=32)
    config, log = tmp_path / "site.toml", tmp_path / "daemon.log"
    config.write_text(mqtt_site_text(site, broker.port))
    moved = "ampgate/elsewhere"
    old, new = _status(PREFIX), _status(moved)
    proc = await _start_daemon(config, log)
    try:
        async with recording(broker.port, "ampgate/#") as rec:
            await rec.until(lambda r: old(r) == "online", 15, "online")
            text = mqtt_site_text(site, broker.port, topic_prefix=moved)
            tmp = config.with_suffix(".new")
            tmp.write_text(text)
            os.replace(tmp, config)
            proc.send_signal(signal.SIGHUP)
            await rec.until(lambda r: new(r) == "online", 8, "online on the new prefix")
            assert old(rec) == "offline"  # said by the old connection before it closed
            await rec.until(
                lambda r: r.latest(f"{moved}/charger/c1/state") is not None, 5, "a state"
            )
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 8)
            assert proc.returncode == 0
            await rec.until(lambda r: new(r) == "offline", 3, "offline on a clean stop")
        names = [e["event"] for e in _events(log)]
        assert names.count("mqtt_connected") == 2 and names.count("mqtt_stopped") == 2
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await site.stop()
