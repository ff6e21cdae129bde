"""Metrics served over real HTTP on loopback, checked by the real ``promtool check metrics``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ampgate.errors import ConfigError
from ampgate.interfaces.api import make_app
from ampgate.interfaces.health import default_stall_limit, health
from ampgate.interfaces.http import HttpServer
from ampgate.interfaces.metrics import JOULES_PER_KWH, build_registry
from ampgate.interfaces.snapshot import DaemonSnapshot, LoopHealth
from ampgate.interfaces.store import SnapshotStore
from interfaces.served import served as serving

from .conftest import realistic_snapshot

PROMTOOL = shutil.which("promtool")


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.fixture
def served(store: SnapshotStore):
    with serving(store) as base:
        yield base, store


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_scrape_over_http_passes_promtool_without_any_output(served):
    base, _ = served
    status, content_type, body = _get(base + "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    check = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == "" and check.stderr == "", check.stdout + check.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_catches_a_broken_exposition():
    """The promtool check above can fail: a gauge named like a counter is reported."""
    bad = "# HELP x_total a gauge\n# TYPE x_total gauge\nx_total 1\n"
    check = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=bad, capture_output=True, text=True, timeout=30
    )
    assert check.stdout + check.stderr != ""


def test_scrape_carries_the_snapshot_values_in_base_units(served):
    base, _ = served
    _, _, body = _get(base + "/metrics")
    s = _samples(body)

    def value(name: str, **labels: str) -> float:
        return s[(name, frozenset(labels.items()))]

    assert value("ampgate_device_up", device="c1") == 1
    assert value("ampgate_device_up", device="c2") == 0
    assert value("ampgate_charger_current_amperes", device="c1", phase="L2") == 15.8
    assert value("ampgate_charger_energy_delivered_joules_total", device="c1") == pytest.approx(
        1234.56 * JOULES_PER_KWH
    )
    assert value("ampgate_meter_energy_imported_joules_total", device="grid") == pytest.approx(
        98765.4 * 3.6e6
    )
    assert value("ampgate_meter_power_watts", device="grid", phase="L3") == -810.0
    assert value("ampgate_modbus_requests_total", device="c2", result="timeout") == 17
    assert value("ampgate_modbus_exception_responses_total", device="c2", code="2") == 1
    assert value("ampgate_modbus_request_duration_seconds_count", device="c1") == 120
    assert value("ampgate_modbus_request_duration_seconds_bucket", device="c1", le="+Inf") == 120
    assert value("ampgate_dlm_limit_amperes", group="garage", phase="L1") == 63
    assert value("ampgate_dlm_meter_stale", group="garage") == 1
    assert value("ampgate_dlm_overload_detected_total") == 0
    assert value("ampgate_dlm_decisions_total", reason="capacity") == 12
    # Error bits: c2 has bit 0 (voltage high ⇒ OverVoltage), 4 and an undocumented bit 11.
    err = {
        (dict(k)["bit"], dict(k)["ocpp_error_code"]): v
        for (n, k), v in s.items()
        if n == "ampgate_charger_error_active" and dict(k)["device"] == "c2"
    }
    assert err[("0", "OverVoltage")] == 1
    assert err[("4", "OverCurrentFailure")] == 1
    assert err[("11", "OtherError")] == 1
    assert sum(err.values()) == 3


def test_state_sets_mark_exactly_one_state_and_keep_undocumented_ones(store):
    body = _exposition(store)
    for name in ("evse_status", "iec_state", "charge_point_state", "current_limit_cause"):
        active = [
            (dict(k)["state"], v)
            for (n, k), v in _samples(body).items()
            if n == f"ampgate_charger_{name}" and dict(k)["device"] == "c1"
        ]
        assert sum(v for _, v in active) == 1, name
        assert len(active) >= 8, name
    states = {
        dict(k)["state"] for (n, k) in _samples(body) if n == "ampgate_charger_charge_point_state"
    }
    assert "unknown (12)" in states


def _exposition(store: SnapshotStore) -> str:
    from prometheus_client import generate_latest

    return generate_latest(build_registry(store)).decode()


def test_a_scrape_reads_only_the_snapshot_store():
    """Scrapes call latest() once each and see a new snapshot only after publish()."""

    class CountingStore(SnapshotStore):
        __slots__ = ("calls",)

        def __init__(self, initial):
            super().__init__(initial)
            self.calls = 0

        def latest(self):
            self.calls += 1
            return super().latest()

    first = realistic_snapshot()
    counting = CountingStore(first)
    body1 = _exposition(counting)
    assert _exposition(counting) == body1
    assert counting.calls == 2
    device = dataclasses.replace(first.devices[0], up=False)
    counting.publish(dataclasses.replace(first, devices=(device, *first.devices[1:])))
    body3 = _exposition(counting)
    assert 'ampgate_device_up{device="c1"} 0.0' in body3
    assert 'ampgate_device_up{device="c1"} 1.0' in body1


def test_metrics_module_imports_no_modbus_code():
    code = (
        "import sys, ampgate.interfaces.metrics, ampgate.interfaces.http, "
        "ampgate.interfaces.api; "
        "bad = [m for m in sys.modules if m.startswith(('pymodbus', 'ampgate.transport'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_empty_snapshot_scrapes_cleanly():
    body = _exposition(SnapshotStore())
    assert "ampgate_build_info" in body
    assert "ampgate_device_up" not in body


def test_healthz_is_200_while_fresh_and_503_when_stalled(served):
    base, store = served
    status, content_type, body = _get(base + "/healthz")
    assert status == 200 and content_type == "application/json"
    payload = json.loads(body)
    assert payload["status"] == "ok" and payload["stall_limit_seconds"] == 20.0
    stale = dataclasses.replace(
        store.latest(),
        loop=LoopHealth(last_iteration_monotonic=0.0, last_iteration_unix=0.0, cycle_seconds=5),
    )
    store.publish(stale)
    status, _, body = _get(base + "/healthz")
    assert status == 503 and json.loads(body)["status"] == "stalled"
    store.publish(DaemonSnapshot())
    status, _, body = _get(base + "/healthz")
    assert status == 503 and json.loads(body)["status"] == "starting"
    assert _get(base + "/nope")[0] == 404


def test_health_boundary_uses_three_cycles_plus_five_seconds():
    snap = dataclasses.replace(
        DaemonSnapshot(), loop=LoopHealth(last_iteration_monotonic=100.0, cycle_seconds=10.0)
    )
    assert default_stall_limit(10.0) == 35.0
    assert health(snap, 135.0)[0] == 200
    assert health(snap, 135.1)[0] == 503
    assert health(snap, 101.0, stall_limit_seconds=0.5)[0] == 503


def test_port_in_use_is_a_config_error_naming_the_key_and_the_address(store):
    first = HttpServer(make_app(store), port=0)
    _host, port = first.bind()
    try:
        with pytest.raises(ConfigError, match=rf"http\.listen: .*127\.0\.0\.1:{port}"):
            HttpServer(make_app(store), port=port).bind()
    finally:
        asyncio.run(first.stop())
