"""Fixtures for the simulator tests: a socat pty pair (a virtual RS485 line) and a manual clock."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ampgate.sim import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test says so."""
    return ManualClock(1000.0)


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked ptys (client end, server end) made by socat; removed after the test."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail("socat is not installed (apt-get install socat)")
    client, server = tmp_path / "client", tmp_path / "server"
    log = (tmp_path / "socat.log").open("wb")
    proc = subprocess.Popen(
        [
            socat,
            "-d",
            "-d",
            f"pty,raw,echo=0,link={client}",
            f"pty,raw,echo=0,link={server}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 5.0
        while not (client.exists() and server.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"socat did not create the pty links: {(tmp_path / 'socat.log').read_text()}"
                )
            time.sleep(0.01)
        yield str(client), str(server)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
