"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ampgate.sim.pty import virtual_serial_line


@pytest.fixture
def socat_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked ptys (client end, server end): a virtual RS485 line.

    socat is installed by scripts/setup, so a missing socat fails the test rather than skipping
    it: an RTU test that silently does not run proves nothing.
    """
    with virtual_serial_line(tmp_path) as pair:
        yield pair
