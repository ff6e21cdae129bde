"""Fixtures for the simulator tests: a socat pty pair (a virtual RS485 line) and a manual clock."""

from __future__ import annotations

import pytest

from ampgate.sim import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test says so."""
    return ManualClock(1000.0)


@pytest.fixture
def pty_pair(socat_pair: tuple[str, str]) -> tuple[str, str]:
    """Two linked ptys (client end, server end): the shared virtual RS485 line."""
    return socat_pair
