"""External limits over HTTP against the daemon on simulated chargers: ``PUT
/api/v1/groups/{group}/limit`` lowers the chargers within two cycles and the limit expires back;
the token gate, bad bodies (422 naming the field and the range) and a group that does not take
HTTP limits (403) change nothing."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ampgate.config import check_config_text
from ampgate.interfaces.api import make_app
from ampgate.interfaces.control import ControlChannel
from ampgate.interfaces.store import SnapshotStore

from .daemon_site import served_daemon
from .served import served

TOKEN = "s3cret-token"
TOKEN_LINES = 'listen = "127.0.0.1:0"\ntoken_file = "api.token"'


def _with_http_limits(text: str) -> str:
    return text.replace("fallback_load = 8\n", 'fallback_load = 8\nexternal_limits = ["http"]\n')


def send(
    url: str, method: str, body: object = None, token: str | None = TOKEN, raw: bytes | None = None
) -> tuple[int, Any]:
    """``(status, parsed JSON body)`` of one request."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_a_limit_over_http_lowers_the_chargers_within_two_cycles_and_expires_back(
    tmp_path: Path,
):
    (tmp_path / "api.token").write_text(TOKEN + "\n")
    async with served_daemon(tmp_path, http=TOKEN_LINES, edit=_with_http_limits) as sd:
        cycle = sd.daemon.config.dlm.cycle_seconds
        await sd.until(lambda: sum(sd.setpoints().values()) >= 20, 15, "the cars' share")
        url = sd.base + "/api/v1/groups/main/limit"
        status, _ = await asyncio.to_thread(send, url, "PUT", {"amps": 12, "valid_for": 3}, None)
        assert status == 401  # no token: nothing taken
        status, body = await asyncio.to_thread(send, url, "PUT", {"amps": 12, "valid_for": 3})
        assert status == 202, body
        assert body["amperes"] == {"l1": 12.0, "l2": 12.0, "l3": 12.0} and body["source"] == "http"
        sent = time.monotonic()
        # Two cycles and the chargers' Modbus round trips: 12 A minus about 4 A of building.
        await sd.until(lambda: sum(sd.setpoints().values()) <= 8.5, 2 * cycle + 1.0, "lowered")
        assert time.monotonic() - sent <= 2 * cycle + 1.0
        status, site = await asyncio.to_thread(send, sd.base + "/api/v1/site", "GET")
        control = site["groups"][0]["control"]
        assert control["effective_limit_amperes"] == {"l1": 12.0, "l2": 12.0, "l3": 12.0}
        assert [x["source"] for x in control["external_limits"]] == ["http"]
        counts = sd.daemon.gateway.events.counts
        assert counts.get("external_limit_set") == 1
        await sd.until(lambda: counts.get("external_limit_expired", 0) == 1, 6, "expiry")
        await sd.until(lambda: sum(sd.setpoints().values()) >= 20, 6, "the share back")


async def test_delete_clears_the_limit_at_once(tmp_path: Path):
    (tmp_path / "api.token").write_text(TOKEN)
    async with served_daemon(tmp_path, http=TOKEN_LINES, edit=_with_http_limits) as sd:
        await sd.until(lambda: sum(sd.setpoints().values()) >= 20, 15, "the cars' share")
        url = sd.base + "/api/v1/groups/main/limit"
        status, _ = await asyncio.to_thread(send, url, "PUT", {"kw": 5, "valid_for": 600})
        assert status == 202
        await sd.until(lambda: sum(sd.setpoints().values()) <= 14, 4, "lowered to 5 kW")
        status, body = await asyncio.to_thread(send, url, "DELETE")
        assert status == 202 and body["cleared"] is True
        await sd.until(lambda: sum(sd.setpoints().values()) >= 20, 6, "the share back")


BASE = """
[buses.lan]
kind = "tcp"
host = "127.0.0.1"
[groups.main]
limit = [32, 32, 25]
external_limits = ["http"]
[groups.garage]
limit = [16, 16, 16]
parent = "main"
[chargers.c1]
model = "teltocharge-evc2"
bus = "lan"
unit_id = 1
group = "garage"
[http]
token_file = "api.token"
"""


def test_bad_bodies_get_422_naming_the_field_and_range_and_nothing_is_taken():
    config, problems = check_config_text(BASE, "site.toml")
    assert config is not None, problems
    channel = ControlChannel()
    app = make_app(SnapshotStore(), write_token=TOKEN, site_config=lambda: config, control=channel)
    with served(app=app) as base:
        url = base + "/api/v1/groups/main/limit"
        for body, field, allowed in (
            ({"amps": 12}, "valid_for", "1..86400 s"),
            ({"amps": 12, "valid_for": 0}, "valid_for", "1..86400 s"),
            ({"amps": [12, 12, 30], "valid_for": 5}, "amps", "L3 30 A is not allowed"),
            ({"amps": 3, "valid_for": 5}, "amps", "0 or 6..32 A"),
            ({"amps": [10, 10], "valid_for": 5}, "amps", "one, or L1, L2, L3"),
            ({"amps": "ten", "valid_for": 5}, "amps", "is not a number"),
            ({"kw": 80, "valid_for": 5}, "kw", "0..20.47 kW"),
            ({"amps": 10, "kw": 5, "valid_for": 5}, "amps", "exactly one of amps and kw"),
            ({"amp": 10, "valid_for": 5}, "amp", "allowed keys: amps, kw, valid_for"),
            ([10], "body", "not a JSON object"),
        ):
            status, answer = send(url, "PUT", body)
            assert status == 422, (body, answer)
            assert answer["detail"]["field"] == field, answer
            assert allowed in answer["detail"]["problem"], answer
        status, answer = send(url, "PUT", raw=b"{not json")
        assert status == 422 and answer["detail"]["field"] == "body"
        status, answer = send(
            base + "/api/v1/groups/attic/limit", "PUT", {"amps": 10, "valid_for": 5}
        )
        assert status == 422 and "allowed: garage, main" in answer["detail"]["problem"]
        status, answer = send(
            base + "/api/v1/groups/garage/limit", "PUT", {"amps": 10, "valid_for": 5}
        )
        assert status == 403 and "does not take limits from 'http'" in answer["detail"]["problem"]
        assert send(base + "/api/v1/groups/garage/limit", "DELETE")[0] == 403
    assert channel.take() == []  # nothing reached the gateway


def test_without_a_token_file_the_limit_endpoints_answer_403():
    config, _ = check_config_text(BASE, "site.toml")
    assert config is not None
    channel = ControlChannel()
    app = make_app(SnapshotStore(), write_token=None, site_config=lambda: config, control=channel)
    with served(app=app) as base:
        url = base + "/api/v1/groups/main/limit"
        assert send(url, "PUT", {"amps": 10, "valid_for": 5})[0] == 403
        assert send(url, "DELETE")[0] == 403
    assert channel.take() == []
