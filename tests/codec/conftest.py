"""Codec test fixtures: paths of the fixture maps, and tests/ on sys.path for `strategies`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ampgate.codec import RegisterMap, load_map_file

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def evc2_like() -> RegisterMap:
    """A full-size map shaped like the EVC2 one (CDAB, enums, bits, 0.1/0.01 scales)."""
    return load_map_file(FIXTURES / "evc2-like.toml")


@pytest.fixture(scope="session")
def meter_like() -> RegisterMap:
    """A map shaped like the Siemens 7KM2200 one (f32/f64 ABCD, a hole at 43–53)."""
    return load_map_file(FIXTURES / "meter-like.toml")
