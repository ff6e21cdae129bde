"""The write gate (403 / 401 / 200 over real HTTP), the ``[http]`` section with its deprecated
``[metrics]`` spelling, a busy address and a bad token file as clear errors, and a reload that
moves the server or, when it cannot, keeps it."""

from __future__ import annotations

import asyncio
import socket

import pytest
from fastapi import Depends
from structlog.testing import capture_logs

from ampgate.cli.main import main as ampgate_main
from ampgate.config import check_config_text
from ampgate.daemon.run import Daemon
from ampgate.errors import ConfigError
from ampgate.interfaces.api import make_app
from ampgate.interfaces.store import SnapshotStore
from ampgate.interfaces.write_gate import require_write_token
from gateway.simsite import start_site

from .daemon_site import http_site_text, served_daemon
from .served import get, served

TOKEN = "s3cret-token"


def _app_with_a_write_route(token: str | None):
    app = make_app(SnapshotStore(), write_token=token)

    @app.post("/api/v1/test-write", dependencies=[Depends(require_write_token)])
    async def write() -> dict[str, bool]:
        return {"written": True}

    return app


def test_without_a_token_file_every_write_answers_403():
    with served(app=_app_with_a_write_route(None)) as base:
        url = base + "/api/v1/test-write"
        assert get(url, method="POST")[0] == 403
        status, body = get(url, {"Authorization": f"Bearer {TOKEN}"}, method="POST")
        assert status == 403 and "token_file" in body["detail"]
        assert get(base + "/api/v1/site")[0] == 200  # reads are never gated


def test_with_a_token_a_write_needs_exactly_that_bearer_token():
    with served(app=_app_with_a_write_route(TOKEN)) as base:
        url = base + "/api/v1/test-write"
        missing = get(url, method="POST")
        wrong = get(url, {"Authorization": "Bearer not-it"}, method="POST")
        prefix = get(url, {"Authorization": f"Bearer {TOKEN[:-1]}"}, method="POST")
        basic = get(url, {"Authorization": f"Basic {TOKEN}"}, method="POST")
        right = get(url, {"Authorization": f"Bearer {TOKEN}"}, method="POST")
        lower = get(url, {"Authorization": f"bearer {TOKEN}"}, method="POST")
    assert [r[0] for r in (missing, wrong, prefix, basic)] == [401, 401, 401, 401]
    assert right == (200, {"written": True}) and lower[0] == 200


async def test_the_daemon_reads_the_token_file_and_gates_writes_with_it(tmp_path):
    (tmp_path / "token").write_text(f"  {TOKEN}\n")
    async with served_daemon(tmp_path, 1, 'listen = "127.0.0.1:0"\ntoken_file = "token"') as sd:
        app = sd.daemon.http.server.app
        assert app.state.write_token == TOKEN  # stripped, relative to the site file


@pytest.mark.parametrize(
    ("content", "problem"), [(None, "cannot read"), ("  \n", "is empty")], ids=["missing", "empty"]
)
async def test_an_unreadable_or_empty_token_file_stops_the_daemon_before_it_starts(
    tmp_path, content, problem
):
    site = await start_site(1, limit=32)
    try:
        if content is not None:
            (tmp_path / "token").write_text(content)
        text = http_site_text(site, 'listen = "127.0.0.1:0"\ntoken_file = "token"')
        config, problems = check_config_text(text, str(tmp_path / "site.toml"))
        assert config is not None, problems
        with pytest.raises(ConfigError, match=rf"http\.token_file: .*{problem}"):
            await Daemon(config, tmp_path / "site.toml").run()
        assert site.chargers["c1"].requests == 0  # nothing was started
    finally:
        await site.stop()


async def test_a_busy_address_stops_the_daemon_naming_the_key_and_address(tmp_path):
    site = await start_site(1, limit=32)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            config, problems = check_config_text(
                http_site_text(site, f'listen = "127.0.0.1:{port}"'), "site.toml"
            )
            assert config is not None, problems
            with pytest.raises(ConfigError) as raised:
                await Daemon(config).run()
            assert site.chargers["c1"].requests == 0
        finally:
            await site.stop()
    message = str(raised.value)
    assert message.startswith(f"http.listen: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in message and "[http] listen" in message


def test_old_metrics_listen_still_loads_and_check_config_warns(tmp_path, capsys):
    base = (
        '[buses.lan]\nkind = "tcp"\nhost = "127.0.0.1"\n[groups.main]\nlimit = 32\n'
        '[chargers.c1]\nbus = "lan"\nunit_id = 1\ngroup = "main"\n'
    )
    config, problems = check_config_text(base + '[metrics]\nlisten = "0.0.0.0:9100"\n')
    assert problems == [] and config is not None
    assert config.http.listen == "0.0.0.0:9100" and config.http.enabled
    assert config.deprecations == (
        "metrics.listen is deprecated; write it as http.listen (same meaning)",
    )
    new, _ = check_config_text(base + '[http]\nlisten = "0.0.0.0:9100"\n')
    assert new is not None and new.deprecations == () and new.http == config.http
    path = tmp_path / "site.toml"
    path.write_text(base + '[metrics]\nlisten = "0.0.0.0:9100"\n')
    assert ampgate_main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{path}: warning: metrics.listen is deprecated" in err
    assert "http on 0.0.0.0:9100" in out


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (
            '[metrics]\nlisten = "127.0.0.1:1"\n[http]\nlisten = "127.0.0.1:2"\n',
            "metrics.listen and http.listen: both are set; allowed: only http.listen",
        ),
        ('[metrics]\nlisten = "nowhere"\n', "metrics.listen: 'nowhere' is not HOST:PORT"),
        ('[http]\nlisten = "127.0.0.1:70000"\n', "http.listen: '127.0.0.1:70000' is not"),
        ('[http]\ntoken_file = ""\n', "http.token_file"),
        ('[http]\ntokenfile = "x"\n', "http.tokenfile: unknown key; allowed keys: listen, "),
        ("[metrics]\nport = 1\n", "metrics.port: unknown key; [metrics] is deprecated"),
    ],
)
def test_http_section_problems_name_the_keys(sections, expected):
    base = (
        '[buses.lan]\nkind = "tcp"\nhost = "127.0.0.1"\n[groups.main]\nlimit = 32\n'
        '[chargers.c1]\nbus = "lan"\nunit_id = 1\ngroup = "main"\n'
    )
    config, problems = check_config_text(base + sections)
    assert config is None
    assert any(p.startswith(expected) for p in problems), problems


async def test_the_daemon_logs_the_deprecated_key(tmp_path):
    site = await start_site(1, limit=32)
    try:
        text = http_site_text(site, "enabled = false").replace("[http]", "[metrics]")
        config, _ = check_config_text(text, "old.toml")
        assert config is not None
        daemon = Daemon(config)
        with capture_logs() as logs:
            task = asyncio.create_task(daemon.run())
            await asyncio.sleep(0.3)
            daemon.request_stop()
            assert await asyncio.wait_for(task, 8) == 0
    finally:
        await site.stop()
    (warned,) = [e for e in logs if e["event"] == "config_deprecated"]
    assert warned["log_level"] == "warning" and "metrics.enabled" in warned["problem"]
    assert daemon.http_port is None  # enabled = false was honoured


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_reload_moves_the_server_and_keeps_it_when_the_new_address_is_busy(tmp_path):
    first, second = _free_port(), _free_port()
    async with served_daemon(tmp_path, 1, f'listen = "127.0.0.1:{first}"') as sd:
        path = tmp_path / "site.toml"
        await sd.until(lambda: sd.daemon.store.latest().dlm.cycles_total > 0, 10, "a cycle")
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", second))
            taken.listen()
            path.write_text(path.read_text().replace(str(first), str(second)))
            with capture_logs() as logs:
                sd.daemon.request_reload()
                await sd.until(
                    lambda: any(e["event"] == "config_reloaded" for e in logs), 10, "reload"
                )
            assert sd.daemon.http_port == first
            assert (await asyncio.to_thread(get, f"http://127.0.0.1:{first}/healthz"))[0] == 200
            (failed,) = [e for e in logs if e["event"] == "http_reload_failed"]
            assert f"127.0.0.1:{second}" in failed["problem"]
        (tmp_path / "token").write_text(TOKEN)
        path.write_text(path.read_text().replace("[http]\n", '[http]\ntoken_file = "token"\n'))
        sd.daemon.request_reload()  # the address is free now: the server moves, with the token
        await sd.until(lambda: sd.daemon.http_port == second, 10, "the move")
        status, _ = await asyncio.to_thread(get, f"http://127.0.0.1:{second}/api/v1/site")
        assert status == 200 and sd.daemon.http.server.app.state.write_token == TOKEN
        with socket.socket() as probe:  # the old address was given up
            assert probe.connect_ex(("127.0.0.1", first)) != 0
