"""The read API over real HTTP on 127.0.0.1, served by the daemon controlling simulated chargers:
/api/v1/site, /api/v1/events, the SSE stream, the OpenAPI schema, the status page's route."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import pytest

from ampgate.interfaces.api import make_app
from ampgate.interfaces.snapshot import Event
from ampgate.interfaces.store import SnapshotStore

from .daemon_site import served_daemon
from .served import get, open_stream, read_sse, served

ROOT = Path(__file__).resolve().parents[2]


async def _get(url: str):
    return await asyncio.to_thread(get, url)


async def test_site_shows_the_chargers_groups_and_meter_the_daemon_controls(tmp_path):
    async with served_daemon(tmp_path) as sd:
        await sd.until(lambda: min(sd.setpoints().values()) > 6, 15, "setpoints above failsafe")
        await asyncio.sleep(0.5)  # the next cycles publish the settled state
        status, site = await _get(sd.base + "/api/v1/site")
        truth = sd.setpoints()
    assert status == 200
    assert site["loop"]["status"] == "ok" and site["loop"]["cycles"] > 0
    assert [c["name"] for c in site["chargers"]] == ["c1", "c2"]
    for charger in site["chargers"]:
        assert charger["online"] is True and charger["model"] == "teltocharge-evc2"
        assert abs(charger["setpoint_amperes"] - truth[charger["name"]]) <= 2
        assert charger["current_amperes"]["l1"] is not None
        assert charger["reason_code"]
        assert isinstance(charger["warnings"], list) and isinstance(charger["errors"], list)
        assert charger["watchdog_seconds"] == 2  # read back from the charger (reg 19)
    (group,) = site["groups"]
    assert group["name"] == "main" and [p["phase"] for p in group["phases"]] == ["L1", "L2", "L3"]
    for phase in group["phases"]:
        assert phase["limit_amperes"] == 32
        assert phase["measured_amperes"] is not None
        assert phase["non_ev_load_amperes"] == pytest.approx(4.0, abs=1.5)  # the building
        assert phase["non_ev_source"] == "meter"
    (meter,) = site["meters"]
    assert meter["name"] == "grid" and meter["online"] is True
    assert meter["current_amperes"]["l1"] > 4 and meter["last_success_unix"] > time.time() - 10


async def test_events_since_returns_only_the_later_events(tmp_path):
    async with served_daemon(tmp_path) as sd:
        await sd.until(lambda: min(sd.setpoints().values()) > 6, 15, "setpoints")
        _, first = await _get(sd.base + "/api/v1/events")
        names = [e["name"] for e in first["events"]]
        assert "device_online" in names, names
        sd.site.faults["c2"].silent = True  # c2 goes offline: a new event
        await sd.until(
            lambda: any(e.name == "device_offline" for e in sd.daemon.store.latest().recent_events),
            10,
            "device_offline",
        )
        since = max(e["unix_time"] for e in first["events"])
        _, later = await _get(f"{sd.base}/api/v1/events?since={since}")
        status, bad = await _get(sd.base + "/api/v1/events?since=yesterday")
    assert all(e["unix_time"] > since for e in later["events"])
    offline = [e for e in later["events"] if e["name"] == "device_offline"]
    assert offline and offline[0]["device"] == "c2" and offline[0]["level"] == "warning"
    assert not [e for e in later["events"] if e in first["events"]]
    assert status == 422 and "since" in json.dumps(bad)


async def test_stream_sends_the_site_each_cycle_and_each_event_as_it_happens(tmp_path):
    async with served_daemon(tmp_path) as sd:
        await sd.until(lambda: min(sd.setpoints().values()) > 6, 15, "setpoints")
        reader, writer = await open_stream("127.0.0.1", sd.daemon.http_port)
        try:
            messages = await read_sse(reader, 4, timeout=5)
            sd.site.faults["c1"].silent = True
            deadline = time.monotonic() + 8
            events = []
            while not any(json.loads(d)["name"] == "device_offline" for _, d in events):
                assert time.monotonic() < deadline, "no device_offline event on the stream"
                events += [m for m in await read_sse(reader, 1, timeout=5) if m[0] == "event"]
        finally:
            writer.close()
        await asyncio.sleep(0.2)
        assert not sd.daemon.store._subscriptions, "the stream's subscription was not closed"
    assert [kind for kind, _ in messages] == ["site"] * 4
    sites = [json.loads(data) for _, data in messages]
    cycles = [s["loop"]["cycles"] for s in sites]
    assert cycles == sorted(cycles) and cycles[-1] > cycles[1] > 0  # one per published cycle
    assert [c["name"] for c in sites[-1]["chargers"]] == ["c1", "c2"]
    offline = next(json.loads(d) for _, d in events if json.loads(d)["name"] == "device_offline")
    assert offline["device"] == "c1" and offline["unix_time"] > time.time() - 20


async def test_stopping_the_daemon_ends_open_streams_promptly(tmp_path):
    async with served_daemon(tmp_path) as sd:
        await sd.until(lambda: sd.daemon.store.latest().dlm.cycles_total > 1, 15, "cycles")
        streams = [await open_stream("127.0.0.1", sd.daemon.http_port) for _ in range(2)]
        await read_sse(streams[0][0], 1, timeout=5)
        began = time.monotonic()
        sd.daemon.request_stop()
        assert await asyncio.wait_for(asyncio.shield(sd.task), 6) == 0
        stopped = time.monotonic() - began
        for reader, writer in streams:
            async with asyncio.timeout(3):
                while await reader.readline():  # drains to the end of the stream
                    pass
            writer.close()
    assert stopped < 4.5  # the shutdown writes and the server's stop, not a hung stream


def test_keep_alive_comments_flow_while_nothing_is_published():
    store = SnapshotStore()

    async def read(base: str) -> list[tuple[str, str]]:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await open_stream(host, int(port))
        try:
            return await read_sse(reader, 3, timeout=5)
        finally:
            writer.close()

    with served(app=make_app(store, keepalive_seconds=0.2)) as base:
        messages = asyncio.run(read(base))
    assert messages[0][0] == "site"
    assert messages[1:] == [(":", "keep-alive"), (":", "keep-alive")]


def test_events_without_wall_time_are_left_out_of_since_queries():
    store = SnapshotStore()
    from ampgate.interfaces.snapshot import DaemonSnapshot

    events = (
        Event(time=1.0, name="early", device=None, unix_time=100.0),
        Event(time=2.0, name="no_wall_time", device="c1"),
        Event(time=3.0, name="late", device="c1", context={"amps": (6, 7)}, unix_time=200.0),
    )
    store.publish(DaemonSnapshot(recent_events=events))
    with served(store) as base:
        _, everything = get(base + "/api/v1/events")
        _, later = get(base + "/api/v1/events?since=100")
    assert [e["name"] for e in everything["events"]] == ["early", "no_wall_time", "late"]
    assert later["events"] == [
        {
            "unix_time": 200.0,
            "level": "info",
            "name": "late",
            "device": "c1",
            "context": {"amps": [6, 7]},
        }
    ]


def test_openapi_schema_describes_every_read_endpoint_and_the_site_shape():
    with served(SnapshotStore()) as base:
        status, schema = get(base + "/api/v1/openapi.json")
        _, site = get(base + "/api/v1/site")
        page_status, page = get(base + "/")
        docs_status, _ = get(base + "/docs")
    assert status == 200 and schema["openapi"].startswith("3.")
    assert {"/api/v1/site", "/api/v1/events", "/api/v1/stream"} <= set(schema["paths"])
    assert "/metrics" not in schema["paths"] and "/" not in schema["paths"]
    limit = schema["paths"]["/api/v1/groups/{group}/limit"]
    assert set(limit) == {"put", "delete"}
    body = limit["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"amps", "kw", "valid_for"}
    assert {"202", "401", "403", "422"} <= set(limit["put"]["responses"])
    stream = schema["paths"]["/api/v1/stream"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in stream
    params = schema["paths"]["/api/v1/events"]["get"]["parameters"]
    assert [p["name"] for p in params] == ["since"]
    components = schema["components"]["schemas"]
    assert set(components["SiteView"]["properties"]) == set(site)
    charger_fields = set(components["ChargerView"]["properties"])
    assert {"vehicle_state", "setpoint_amperes", "reason", "warnings", "errors"} <= charger_fields
    assert page_status == 200 and "<html" in page.lower()
    assert docs_status == 404  # no docs UI: it would load its assets from the internet


def test_the_openapi_copy_in_docs_is_the_schema_the_server_publishes():
    """docs/openapi.json is regenerated when the API changes (the command is in the message)."""
    saved = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert saved == make_app(SnapshotStore()).openapi(), (
        'docs/openapi.json is stale: regenerate it with .venv/bin/python -c "import json; '
        "from ampgate.interfaces.api import make_app; from ampgate.interfaces.snapshot import "
        "SnapshotStore; print(json.dumps(make_app(SnapshotStore()).openapi(), indent=2, "
        'sort_keys=True))" > docs/openapi.json'
    )


def test_metrics_come_gzipped_when_asked_and_as_openmetrics_when_asked():
    import gzip

    with served(SnapshotStore()) as base:
        plain = urllib.request.urlopen(base + "/metrics", timeout=5)
        text = plain.read()
        zipped = urllib.request.urlopen(
            urllib.request.Request(base + "/metrics", headers={"Accept-Encoding": "gzip"}),
            timeout=5,
        )
        open_metrics = urllib.request.urlopen(
            urllib.request.Request(
                base + "/metrics",
                headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            ),
            timeout=5,
        )
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(zipped.read()) == text and b"ampgate_build_info" in text
        assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
        assert open_metrics.read().endswith(b"# EOF\n")
