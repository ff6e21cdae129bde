"""The fault tests provoke timeouts on purpose: keep pymodbus' own logging out of the output."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _quiet_pymodbus():
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
