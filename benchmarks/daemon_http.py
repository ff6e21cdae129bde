"""The HTTP part of the daemon benchmark (``bench_daemon.py --http``): the daemon's HTTP server in
the daemon's loop, one SSE client on ``/api/v1/stream`` and a Prometheus-like scrape of
``/metrics`` every 15 s from another process, and (when mosquitto is installed) the MQTT
publisher with Home Assistant discovery to a local broker, so the daemon's CPU and memory
include serving and publishing.

Writes ``benchmarks/results/daemon_http.json`` and ``daemon_http.md``: ``tcp-N`` (no server)
next to ``http-N`` (server, stream client, scrapes), measured one after the other on one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRAPE_EVERY_SECONDS = 15.0


def sse_client(base: str) -> None:
    """Child process: read the stream and scrape /metrics until stdin closes; print counts."""
    import http.client
    import urllib.request

    host, port = base.removeprefix("http://").split(":")
    counts = {"site": 0, "event": 0, "bytes": 0}
    scrapes_ms: list[float] = []

    def read_stream() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/api/v1/stream", headers={"Accept": "text/event-stream"})
        response = conn.getresponse()
        for line in response:
            counts["bytes"] += len(line)
            if line.startswith(b"event: site"):
                counts["site"] += 1
            elif line.startswith(b"event: event"):
                counts["event"] += 1

    def scrape() -> None:
        while True:
            began = time.monotonic()
            with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
                response.read()
            scrapes_ms.append(1000 * (time.monotonic() - began))
            time.sleep(SCRAPE_EVERY_SECONDS)

    threading.Thread(target=read_stream, daemon=True).start()
    threading.Thread(target=scrape, daemon=True).start()
    print("connected", flush=True)
    sys.stdin.read()
    print(json.dumps({**counts, "scrapes_ms": scrapes_ms}), flush=True)


@dataclass
class Serving:
    """A gateway publishing into a store served over HTTP, with a stream client connected."""

    gateway: Any
    server: Any
    client: asyncio.subprocess.Process
    rss_steps_mb: dict[str, float] = field(default_factory=dict)
    """Resident memory before the HTTP imports, after them, and once serving."""
    publisher: Any = None
    broker: subprocess.Popen[bytes] | None = None

    async def finish(self) -> dict[str, Any]:
        """Stop the client and the server; return what was served and what rendering costs."""
        from prometheus_client import generate_latest

        from ampgate.interfaces.api_models import site_view
        from ampgate.interfaces.metrics import build_registry

        assert self.client.stdin is not None and self.client.stdout is not None
        self.client.stdin.close()
        served = json.loads(await self.client.stdout.readline())
        await self.client.wait()
        await self.server.stop()
        published = None
        if self.publisher is not None:
            published = self.publisher.published
            await self.publisher.stop()
        if self.broker is not None:
            self.broker.terminate()
            self.broker.wait(10)
        store = self.gateway.store
        registry = build_registry(store)
        began = time.process_time()
        for _ in range(10):
            generate_latest(registry)
        metrics_ms = 100 * (time.process_time() - began)
        began = time.process_time()
        for _ in range(10):
            site_view(store.latest(), time.monotonic()).model_dump_json()
        site_ms = 100 * (time.process_time() - began)
        return {
            "sse_site_messages": served["site"],
            "sse_event_messages": served["event"],
            "sse_bytes": served["bytes"],
            "scrapes": len(served["scrapes_ms"]),
            "scrape_ms_max": max(served["scrapes_ms"], default=None),
            "metrics_render_cpu_ms": metrics_ms,
            "site_json_cpu_ms": site_ms,
            "rss_steps_mb": self.rss_steps_mb,
            "mqtt_messages": published,
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_broker() -> tuple[subprocess.Popen[bytes], int] | None:
    """A mosquitto on a free loopback port (None without mosquitto)."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        return None
    port = _free_port()
    conf = Path(tempfile.mkdtemp(prefix="ampgate-bench-mqtt-")) / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return broker, port
        time.sleep(0.05)
    broker.terminate()
    return None


async def serve(config: Any, script: str, rss_mb: Callable[[], float]) -> Serving:
    """Make the gateway as the daemon does, serve it and connect the stream client."""
    steps = {"before_http_imports": rss_mb()}
    from ampgate.gateway.events import EventLog
    from ampgate.gateway.loop import Gateway
    from ampgate.interfaces.api import make_app
    from ampgate.interfaces.http import HttpServer
    from ampgate.interfaces.store import SnapshotStore

    steps["after_http_imports"] = rss_mb()
    store = SnapshotStore()
    gateway = Gateway(config, store=store, events=EventLog(on_event=store.publish_event))
    server = HttpServer(make_app(store), host="127.0.0.1", port=0)
    host, port = await server.start()
    publisher, broker = None, None
    started = start_broker()
    if started is not None:
        from ampgate.config.schema import MqttConfig
        from ampgate.interfaces.mqtt import MqttPublisher

        broker, mqtt_port = started
        steps["after_mqtt_imports"] = rss_mb()
        mqtt = MqttConfig(host="127.0.0.1", port=mqtt_port)
        publisher = MqttPublisher(mqtt, store, site="bench")
        publisher.start()
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        "--sse-client",
        f"http://{host}:{port}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert client.stdout is not None
    await client.stdout.readline()  # "connected"
    while not store._subscriptions:  # the stream is open
        await asyncio.sleep(0.01)
    steps["serving"] = rss_mb()
    return Serving(gateway, server, client, steps, publisher, broker)


def markdown(results: list[dict], meta: dict) -> str:
    """The HTTP benchmark as a markdown table, the scenario without the server next to it."""
    by = {r["scenario"]: r for r in results}
    rows = [
        "# Daemon benchmark with the HTTP server",
        "",
        f"`{meta['command']}` on {meta['machine']} ({meta['cpus']} CPUs, Python {meta['python']}),"
        f" {meta['date']}. Cycle 1 s; each daemon in its own process, the simulators in another,"
        " the stream client and the scrapes in a third, the MQTT broker in a fourth.",
        "",
        "| scenario | period mean / max (s) | cycle work mean (s) | CPU / cycle (ms) |"
        " CPU (share of a core) | RSS (MB) | served |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        served = "-"
        if "sse_site_messages" in r:
            served = (
                f"{r['sse_site_messages']} site + {r['sse_event_messages']} event messages "
                f"({r['sse_bytes'] / 1024:.0f} KiB), {r['scrapes']} scrapes "
                f"(max {r['scrape_ms_max']:.0f} ms)"
            )
            if r.get("mqtt_messages") is not None:
                served += f", {r['mqtt_messages']} MQTT messages"
            else:
                served += ", no MQTT (mosquitto missing)"
        rows.append(
            f"| {r['scenario']} | {r['period_mean_s']:.3f} / {r['period_max_s']:.3f} | "
            f"{r['cycle_duration_mean_s']:.3f} | {r['cpu_per_cycle_ms']:.1f} | "
            f"{100 * r['cpu_fraction_of_one_core']:.1f} % | {r['rss_mb']:.1f} | {served} |"
        )
    rows += ["", "Goals (issue 12):", ""]
    for goal in meta["goals"]:
        rows.append(
            f"- {goal['goal']}: **{'met' if goal['met'] else 'NOT met'}** ({goal['value']})"
        )
    http = next((r for r in results if "sse_site_messages" in r), None)
    if http is not None:
        base = by.get(f"tcp-{http['chargers']}")
        added = (
            f"{http['cpu_per_cycle_ms'] - base['cpu_per_cycle_ms']:+.1f} ms CPU per cycle and "
            f"{http['rss_mb'] - base['rss_mb']:+.1f} MB resident against `tcp-{http['chargers']}` "
            "run just before"
            if base
            else ""
        )
        rows += [
            "",
            f"Serving adds {added}. Rendering in the daemon's loop (CPU, measured after the run "
            f"on the last snapshot): one `/metrics` exposition "
            f"{http['metrics_render_cpu_ms']:.1f} ms, one site JSON "
            f"{http['site_json_cpu_ms']:.1f} ms (rendered once per snapshot however many "
            "streams are open). The stream client reads `/api/v1/stream` for the whole run and "
            f"scrapes `/metrics` every {SCRAPE_EVERY_SECONDS:g} s, like a Prometheus.",
            "",
            "Resident memory of the http scenario step by step (MB): "
            + ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in http["rss_steps_mb"].items())
            + f", at the end {http['rss_mb']:.1f} (after the cycles, the stream and the scrapes;"
            " one exposition of 100 chargers is ~740 KB of text built from ~7000 samples).",
            "",
            "Before (issue 12, `bench_daemon.py` tcp-100 without any server): 3.5 % of a core, "
            "45 MB.",
        ]
    return "\n".join(rows) + "\n"


def goals(results: list[dict]) -> list[dict]:
    """The issue's goals for the HTTP scenario: < 10 % of a core and < 60 MB."""
    http = [r for r in results if "sse_site_messages" in r]
    out = []
    for r in http:
        out.append(
            {
                "goal": f"{r['chargers']} chargers, HTTP server, an SSE client and MQTT: "
                "under 10 % of one core",
                "met": r["cpu_fraction_of_one_core"] < 0.10 and r["period_mean_s"] < 1.05,
                "value": f"{100 * r['cpu_fraction_of_one_core']:.1f} %, "
                f"period {r['period_mean_s']:.3f} s",
            }
        )
        out.append(
            {
                "goal": "RSS < 60 MB",
                "met": r["rss_mb"] < 60,
                "value": f"{r['rss_mb']:.1f} MB",
            }
        )
    return out
