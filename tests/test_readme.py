"""Every command the README shows is exercised: run here for real, or covered by a named test.

The README's shell blocks (```sh, and the ``$ `` lines of ```console blocks) are split into
commands (``a && b`` is two). Each must appear in exactly one of the tables below:

* ``RUN``: an ``ampgate`` command run here through the real executable, with the site's
  addresses replaced by simulators on 127.0.0.1 / a socat pty pair (``SUBSTITUTIONS``); its exit
  code and a key line of its output are checked;
* ``COVERED``: run by another test, named by node id (asserted to exist), plus a check that the
  files the command refers to exist (the systemd unit, the example config, .ci/run);

and every table entry must still be in the README, so a command cannot be added to (or dropped
from) the README without this file changing with it. The README's site file (```toml) must pass
``check-config``, its troubleshooting table must name the daemon's real warning/error events, and
its relative links must resolve.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
UNIT = ROOT / "systemd" / "ampgate.service"
AMPGATE = Path(sys.executable).parent / "ampgate"
COMMAND_LANGS = {"sh", "console"}


# ---------------------------------------------------------------------------- README parsing


def readme_text() -> str:
    """The README as text."""
    return README.read_text(encoding="utf-8")


def code_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block as (language, body), in order."""
    return [(m[0].strip(), m[1]) for m in re.findall(r"^```([^\n]*)\n(.*?)^```", text, re.S | re.M)]


def _strip_comment(line: str) -> str:
    """Drop a trailing shell comment (`` # ...``) outside quotes."""
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
    except ValueError:
        return line.strip()
    if not tokens:
        return ""
    # keep the original spelling: cut the line where the comment starts
    cut = re.search(r"\s#", line)
    return (line[: cut.start()] if cut else line).strip()


def readme_commands(text: str | None = None) -> list[str]:
    """The commands of the README's shell blocks, in order, without prompts or comments."""
    found: list[str] = []
    for lang, body in code_blocks(readme_text() if text is None else text):
        if lang not in COMMAND_LANGS:
            continue
        for raw in body.splitlines():
            if lang == "console":
                if not raw.startswith("$ "):
                    continue  # output
                raw = raw[2:]
            line = _strip_comment(raw)
            if not line:
                continue
            assert not line.endswith("\\"), f"README: no line continuations please: {raw!r}"
            for part in line.split("&&"):
                if part.strip() and part.strip() not in found:
                    found.append(part.strip())
    return found


def is_ampgate(command: str) -> bool:
    """True when the command runs the ampgate executable (``ampgate``, ``.venv/bin/ampgate``)."""
    return Path(shlex.split(command)[0]).name == "ampgate"


# ---------------------------------------------------------------------------- simulated site


@dataclass
class SimulatedBuses:
    """An RS485 line on a socat pty pair (SDM630 at unit 1, EVC2 at unit 2, 9600 8N1) and an EVC2
    on Modbus TCP (unit 1), served from a background event loop on 127.0.0.1."""

    rtu_path: str
    tcp_address: str
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _servers: list = field(default_factory=list)
    _socat: subprocess.Popen | None = None
    _folder: Path | None = None

    @classmethod
    def start(cls) -> SimulatedBuses:
        """Start socat, the simulators and their servers; return once they answer."""
        from ampgate.sim import (
            ElectricVehicle,
            Evc2Simulator,
            MeterSimulator,
            constant_load,
            serve_rtu,
            serve_tcp,
        )

        folder = Path(tempfile.mkdtemp(prefix="ampgate-readme-"))
        sim_end, gateway_end = folder / "sim", folder / "ttyUSB0"
        socat = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={sim_end}", f"pty,raw,echo=0,link={gateway_end}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (sim_end.exists() and gateway_end.exists()):
            assert socat.poll() is None and time.monotonic() < deadline, "socat pty pair failed"
            time.sleep(0.01)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        clock = time.monotonic
        garage = Evc2Simulator(clock, rotation=(1, 2, 3))
        garage.plug_in(ElectricVehicle(phases=3, max_current=16.0, reaction_delay=1.0))
        meter = MeterSimulator("eastron-sdm630", constant_load(9.0), clock, chargers=[garage])
        bay = Evc2Simulator(clock, rotation=(1, 2, 3))

        async def serve() -> list:
            rtu = await serve_rtu({1: meter, 2: garage}, str(sim_end), baudrate=9600)
            tcp = await serve_tcp({1: bay}, host="127.0.0.1", port=0)
            return [rtu, tcp]

        servers = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
        return cls(
            rtu_path=str(gateway_end),
            tcp_address=f"tcp://127.0.0.1:{servers[1].port}",
            _loop=loop,
            _thread=thread,
            _servers=servers,
            _socat=socat,
            _folder=folder,
        )

    def stop(self) -> None:
        """Stop the servers, the loop and socat; remove the pty links."""

        async def stop_all() -> None:
            for server in self._servers:
                await server.stop()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop_all(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if self._socat is not None:
            self._socat.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._socat.wait(5)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


@pytest.fixture(scope="module")
def buses() -> Iterator[SimulatedBuses]:
    """The simulated RS485 line and TCP charger the README's scan/read commands are run against."""
    if shutil.which("socat") is None:
        pytest.skip("socat not installed (Debian package socat): no pty pair for the RS485 line")
    started = SimulatedBuses.start()
    try:
        yield started
    finally:
        started.stop()


# ---------------------------------------------------------------------------- the tables


@dataclass(frozen=True)
class Run:
    """Run the command through the real ``ampgate`` executable and check its result."""

    expect: tuple[str, ...]
    """Substrings that must be in stdout."""
    exit_code: int = 0
    needs_buses: bool = False
    bounded_by: tuple[str, ...] = ()
    """Arguments appended so a command that runs until Ctrl-C stops by itself."""


@dataclass(frozen=True)
class Covered:
    """Exercised by other tests (node ids), plus what must hold in this checkout for it."""

    nodes: tuple[str, ...]
    check: Callable[[], None] | None = None


def _unit() -> str:
    return UNIT.read_text(encoding="utf-8")


def _unit_runs_from(prefix: str) -> None:
    assert f"ExecStart={prefix}" in _unit(), f"{UNIT} does not run ampgate from {prefix}"


def _unit_reads_site_file() -> None:
    assert "--config /etc/ampgate/site.toml" in _unit()
    assert "check-config /etc/ampgate/site.toml" in _unit()


def _unit_installs_and_reloads() -> None:
    text = _unit()
    assert "WantedBy=multi-user.target" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text


def _ci_runs_setup_and_pytest() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/setup" in ci and ".venv/bin/python -m pytest -q" in ci
    assert (ROOT / "scripts" / "setup").stat().st_mode & 0o111, "scripts/setup is not executable"


def _build_is_a_test_extra() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = pyproject["project"]["optional-dependencies"]["test"]
    assert any(dep.startswith("build") for dep in extras)


def _default_metrics_address() -> None:
    from ampgate.config import HttpConfig

    assert HttpConfig().listen == "127.0.0.1:9740"


SYSTEMD_VERIFY = "tests/ops/test_systemd.py::test_unit_verifies_without_any_message"
WHEEL_INSTALL = "tests/ops/test_wheel.py::test_installed_wheel_runs_outside_the_source_tree"

#: ampgate commands run here. Keys are the README's text; SUBSTITUTIONS point them at simulators.
RUN: dict[str, Run] = {
    ".venv/bin/ampgate demo": Run(
        ("4 simulated EVC2 chargers", "cycle=", "main.L1="),
        bounded_by=("--duration", "3", "--metrics-listen", "127.0.0.1:0"),
    ),
    "ampgate maps": Run(("teltocharge-evc2", "Teltonika Energy", "eastron-sdm630")),
    "ampgate scan rtu:///dev/ttyUSB0 --units 1-10 --baud 9600": Run(
        ("teltocharge-evc2  identified  evse_id == 21571", "eastron-sdm630    probable", "[buses"),
        needs_buses=True,
    ),
    "ampgate scan tcp://192.168.10.31 --units 1": Run(
        ("teltocharge-evc2  identified", "[chargers.charger1]"), needs_buses=True
    ),
    "ampgate read rtu:///dev/ttyUSB0/2 serial_number firmware_version amp_limit "
    "communication_timeout failsafe_current": Run(
        ("teltocharge-evc2 at rtu://", "123456789", "communication_timeout"), needs_buses=True
    ),
    "ampgate read rtu:///dev/ttyUSB0/1 --model eastron-sdm630 voltage_l1 current_l1 current_l2 "
    "current_l3": Run(("eastron-sdm630 at rtu://", "voltage_l1", "230 V"), needs_buses=True),
    "ampgate check-config /etc/ampgate/site.toml": Run(
        (": valid", "site 'house'", "garage: 6 A", "L1 16/25 A"), needs_buses=False
    ),
}

#: Commands exercised elsewhere (or not ampgate's: install and systemd steps).
COVERED: dict[str, Covered] = {
    "scripts/setup": Covered((), _ci_runs_setup_and_pytest),
    ".venv/bin/python -m pytest -q": Covered((), _ci_runs_setup_and_pytest),
    ".venv/bin/python -m build --wheel --outdir dist": Covered(
        ("tests/ops/test_wheel.py::test_wheel_ships_register_maps_and_py_typed", WHEEL_INSTALL),
        _build_is_a_test_extra,
    ),
    "python3 -m venv /opt/ampgate": Covered((WHEEL_INSTALL,)),
    "/opt/ampgate/bin/pip install ampgate-*.whl": Covered((WHEEL_INSTALL,)),
    "ln -s /opt/ampgate/bin/ampgate /usr/local/bin/ampgate": Covered(
        (SYSTEMD_VERIFY,), lambda: _unit_runs_from("/usr/local/bin/ampgate run")
    ),
    "install -d /etc/ampgate": Covered((SYSTEMD_VERIFY,), _unit_reads_site_file),
    "install -m 0644 site.toml /etc/ampgate/site.toml": Covered(
        (SYSTEMD_VERIFY,), _unit_reads_site_file
    ),
    "ampgate run --config /etc/ampgate/site.toml": Covered(
        (
            "tests/daemon/test_process.py::test_daemon_serves_metrics_and_notifies_systemd",
            "tests/daemon/test_process.py::test_sigterm_writes_the_failsafe_current_and_exits_cleanly",
        ),
        _unit_reads_site_file,
    ),
    "install -m 0644 systemd/ampgate.service /etc/systemd/system/": Covered(
        (SYSTEMD_VERIFY, "tests/ops/test_systemd.py::test_security_exposure_is_ok_or_better")
    ),
    "systemctl daemon-reload": Covered((SYSTEMD_VERIFY,)),
    "systemctl enable --now ampgate": Covered(
        (SYSTEMD_VERIFY, "tests/ops/test_sd_notify.py"), _unit_installs_and_reloads
    ),
    "systemctl status ampgate": Covered((SYSTEMD_VERIFY,)),
    "journalctl -u ampgate -f": Covered((SYSTEMD_VERIFY, "tests/gateway/test_events.py")),
    "systemctl reload ampgate": Covered(
        (
            "tests/daemon/test_process.py::test_sighup_keeps_the_old_config_when_the_new_one_is_invalid",
        ),
        _unit_installs_and_reloads,
    ),
    "curl -s http://127.0.0.1:9740/healthz": Covered(
        (
            "tests/ops/test_metrics.py::test_healthz_is_200_while_fresh_and_503_when_stalled",
            "tests/daemon/test_process.py::test_daemon_serves_metrics_and_notifies_systemd",
        ),
        _default_metrics_address,
    ),
}


def substitutions(buses: SimulatedBuses | None, site_file: Path) -> dict[str, str]:
    """README address → where the test serves it (longest first, so prefixes do not clash)."""
    table = {"/etc/ampgate/site.toml": str(site_file)}
    if buses is not None:
        table["rtu:///dev/ttyUSB0"] = f"rtu://{buses.rtu_path}"
        table["tcp://192.168.10.31"] = buses.tcp_address
    return dict(sorted(table.items(), key=lambda kv: -len(kv[0])))


def readme_site_file() -> str:
    """The README's one site file (the ```toml block)."""
    blocks = [body for lang, body in code_blocks(readme_text()) if lang == "toml"]
    assert len(blocks) == 1, "the README holds exactly one site file (```toml block)"
    return blocks[0]


def _node_exists(node: str) -> None:
    path, _, name = node.partition("::")
    file = ROOT / path
    assert file.is_file(), f"{node}: no such test file"
    if not name:
        tree = ast.parse(file.read_text(encoding="utf-8"))
        assert any(
            isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
            for n in tree.body
        ), f"{node}: holds no test"
        return
    tree = ast.parse(file.read_text(encoding="utf-8"))
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    assert name.split("[")[0] in names, f"{node}: no such test function"


# ---------------------------------------------------------------------------- tests


def test_readme_starts_with_the_two_fresh_machine_commands():
    lang, body = code_blocks(readme_text())[0]
    assert lang == "sh"
    lines = [_strip_comment(line) for line in body.splitlines() if line.strip()]
    assert lines == [
        "scripts/setup && .venv/bin/ampgate demo",
        "scripts/setup && .venv/bin/python -m pytest -q",
    ]


def test_every_readme_command_is_run_or_covered_and_every_entry_is_still_shown():
    shown = readme_commands()
    listed = set(RUN) | set(COVERED)
    assert not set(RUN) & set(COVERED)
    missing = [c for c in shown if c not in listed]
    assert not missing, f"README commands with no test (add them to RUN or COVERED): {missing}"
    stale = sorted(listed - set(shown))
    assert not stale, f"entries no longer in the README (remove them): {stale}"


def test_commands_are_not_hidden_in_other_blocks():
    for lang, body in code_blocks(readme_text()):
        if lang in COMMAND_LANGS or lang == "python":
            continue
        for line in body.splitlines():
            assert not line.startswith(("$ ", "ampgate ")), (
                f"a command in a ```{lang} block escapes this test: {line!r}"
            )


def test_extraction_splits_chains_and_skips_output_and_comments():
    text = (
        "```sh\na && ampgate maps   # list\n# only a comment\n```\n"
        "```console\n$ ampgate maps x\nampgate output line\n```\n"
        "```toml\n[site]\n```\n"
    )
    assert readme_commands(text) == ["a", "ampgate maps", "ampgate maps x"]


@pytest.mark.parametrize("command", list(RUN))
def test_readme_ampgate_command_runs(command, request, tmp_path):
    spec = RUN[command]
    assert is_ampgate(command)
    buses = request.getfixturevalue("buses") if spec.needs_buses else None
    site_file = tmp_path / "site.toml"
    site_file.write_text(readme_site_file(), encoding="utf-8")
    line = command
    for readme_form, served in substitutions(buses, site_file).items():
        line = line.replace(readme_form, served)
    argv = [str(AMPGATE), *shlex.split(line)[1:], *spec.bounded_by]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=tmp_path)
    assert result.returncode == spec.exit_code, f"{argv}\n{result.stdout}\n{result.stderr}"
    for expected in spec.expect:
        assert expected in result.stdout, f"{argv}: {expected!r} missing in\n{result.stdout}"


@pytest.mark.parametrize("command", list(COVERED))
def test_readme_command_is_covered_by_a_named_test(command):
    spec = COVERED[command]
    for node in spec.nodes:
        _node_exists(node)
    assert spec.nodes or spec.check, f"{command}: neither a covering test nor a check"
    if spec.check is not None:
        spec.check()


def test_readme_site_file_is_valid_and_matches_its_comments():
    from ampgate.config import check_config_text

    config, problems = check_config_text(readme_site_file(), "README.md")
    assert problems == [] and config is not None
    assert config.groups["main"].limit == (25, 25, 25)
    assert config.chargers["garage"].failsafe_current == 6
    assert config.groups["main"].fallback_load == (10, 10, 10)  # "6 A + 10 A fallback <= 25 A"


def _daemon_events() -> tuple[set[str], set[str]]:
    """(every event name the daemon logs, those logged at warning or error level)."""
    files = [
        p for d in ("daemon", "gateway") for p in sorted((ROOT / "src/ampgate" / d).glob("*.py"))
    ]
    files.append(ROOT / "src/ampgate/interfaces/mqtt.py")  # the daemon's publisher task
    files.append(ROOT / "src/ampgate/interfaces/ems.py")  # the EMS server, in the daemon
    source = "\n".join(p.read_text(encoding="utf-8") for p in files)
    loud = set(re.findall(r'emit\(\s*"([a-z_]+)",\s*"(?:warning|error)"', source))
    loud |= set(re.findall(r'log\.(?:warning|error)\(\s*"([a-z_]+)"', source))
    every = set(re.findall(r'emit\(\s*"([a-z_]+)"', source))
    every |= set(re.findall(r'log\.[a-z]+\(\s*"([a-z_]+)"', source))
    if 'f"charger_{kind}_set"' in source:  # one emit for both bit kinds
        loud |= {"charger_warning_set", "charger_error_set"}
        every |= {"charger_warning_set", "charger_error_set"}
    if 'f"charger_{kind}_cleared"' in source:
        every |= {"charger_warning_cleared", "charger_error_cleared"}
    notices = re.search(r"_NOTICE_LEVELS = \{(.*?)\}", source, re.S)  # engine notices
    if notices:
        for name, level in re.findall(r'"([a-z_]+)": "([a-z]+)"', notices.group(1)):
            every.add(name)
            if level in ("warning", "error"):
                loud.add(name)
    return every, loud


def test_troubleshooting_table_names_the_daemons_real_warning_and_error_events():
    text = readme_text()
    section = text[text.index("### Troubleshooting") : text.index("## Operators")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    in_table = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    every, loud = _daemon_events()
    assert {"device_offline", "meter_stale", "config_mismatch"} <= loud  # the scan works
    assert in_table <= every, f"not events of the daemon: {sorted(in_table - every)}"
    assert loud <= in_table, f"warning/error events missing in the table: {sorted(loud - in_table)}"


def test_relative_links_resolve():
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme_text()):
        assert (ROOT / target).exists(), f"README links to a missing file: {target}"
    named = r"`((?:examples|benchmarks|systemd|docs|src|register_maps|tests)/[^`*…]*)`"
    for path in re.findall(named, readme_text()):
        assert (ROOT / path).exists(), f"README names a missing file: {path}"
