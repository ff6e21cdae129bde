"""Shared helpers of the fault-table tests: cycles with the truth sampled, the write log of every
simulated unit, metrics scraped from the gateway's snapshot.

The site is `tests/gateway/simsite.py` (EVC2 simulators and an SDM630 over Modbus TCP, each behind
a `FaultyDevice` whose ``writes`` logs every write the unit received).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ampgate.gateway.loop import Gateway
from ampgate.interfaces.metrics import build_registry
from ampgate.sim import FaultyDevice
from ampgate.sim.device import WriteRecord
from gateway.simsite import SimSite

SETPOINT, PHASES, STOP, WATCHDOG, FAILSAFE = 15, 14, 16, 19, 20
"""EVC2 registers ampgate may write: amps to use, phase to use, stop charging, watchdog,
failsafe current."""
INTENDED = {SETPOINT, PHASES, STOP, WATCHDOG, FAILSAFE}


def programming(records: list[WriteRecord]) -> dict[int, int]:
    """What the watchdog/failsafe writes among ``records`` set: register → last value."""
    out: dict[int, int] = {}
    for w in records:
        for offset, value in enumerate(w.values):
            if w.address + offset in (WATCHDOG, FAILSAFE):
                out[w.address + offset] = value
    return out


@dataclass
class Truth:
    """The worst current through the main fuse, sampled after each cycle, with its time."""

    samples: list[tuple[float, float]] = field(default_factory=list)

    def over(self, limit: float, after: float = float("-inf")) -> list[tuple[float, float]]:
        """Samples later than ``after`` (monotonic) with a phase over ``limit``."""
        return [(t, a) for t, a in self.samples if t > after and a > limit + 1e-9]


async def cycles(
    gateway: Gateway, n: int, site: SimSite | None = None, truth: Truth | None = None
) -> None:
    """Run ``n`` cycles at the site's cycle period; sample what flows through the fuse."""
    period = gateway.config.dlm.cycle_seconds
    for _ in range(n):
        began = time.monotonic()
        await gateway.cycle()
        if site is not None and truth is not None:
            truth.samples.append((time.monotonic(), max(site.true_currents())))
        await asyncio.sleep(max(0.0, period - (time.monotonic() - began)))
    await gateway.settle()


def unit(site: SimSite, name: str) -> FaultyDevice:
    """The `FaultyDevice` serving charger ``name`` (``c1`` is unit 1) or the meter (``grid``)."""
    unit_id = 100 if name == "grid" else list(site.chargers).index(name) + 1
    device = site.server.devices[unit_id]
    assert isinstance(device, FaultyDevice)
    return device


def writes(site: SimSite, name: str, since: float = float("-inf")) -> list[WriteRecord]:
    """Every write charger ``name`` received after ``since`` (monotonic)."""
    return [w for w in unit(site, name).writes if w.at > since]


def assert_writes_clean(site: SimSite, max_amps: float | None = None) -> int:
    """No write refused by a simulator (out of range, read-only), none outside the registers
    ampgate means to write, none to the meter; setpoints 0 or 6..``max_amps``. The count."""
    assert unit(site, "grid").writes == []
    total = 0
    for name in site.chargers:
        for w in unit(site, name).writes:
            total += 1
            assert w.answer is None, (name, w)
            assert w.address in INTENDED, (name, w)
            if w.address == SETPOINT and max_amps is not None:
                assert w.values[0] == 0 or 6 <= w.values[0] <= max_amps, (name, w)
    return total


def metric(gateway: Gateway, name: str, **labels: str) -> float | None:
    """The value of one sample of the gateway's /metrics exposition (None: absent)."""
    text = generate_latest(build_registry(gateway.store)).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def setpoints(site: SimSite) -> dict[str, int]:
    """What each charger's reg 15 holds now."""
    return {n: int(s.image.raw("amps_to_use")) for n, s in site.chargers.items()}
