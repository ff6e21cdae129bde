"""A simulated site for the daemon tests: EVC2 simulators and an SDM630 over Modbus TCP.

Reuses ``ampgate.sim`` (the same simulators as the demo and the benchmark). The building load
is a mutable list the test changes to script load steps; every device sits behind a
``FaultyDevice`` so a test can make it silent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ampgate.config import SiteConfig, check_config_text
from ampgate.sim import (
    ElectricVehicle,
    Evc2Simulator,
    Faults,
    FaultyDevice,
    MeterSimulator,
    serve_tcp,
)
from ampgate.sim.tcp import TcpSimServer

ROTATIONS = {"L1L2L3": (1, 2, 3), "L2L3L1": (2, 3, 1), "L3L1L2": (3, 1, 2)}
METER_UNIT = 100
METER_NOISE_A = 0.05
"""A real meter's currents never repeat exactly (ampgate takes a meter that does for frozen)."""


@dataclass
class SimSite:
    """Running simulators plus the site file text that points the daemon at them."""

    server: TcpSimServer
    chargers: dict[str, Evc2Simulator]
    faults: dict[str, Faults]
    meter: MeterSimulator
    building: list[float]
    limit: float
    rotations: dict[str, str] = field(default_factory=dict)

    def config_text(self, **dlm: object) -> str:
        """The site file: one TCP bus, a main fuse, the meter and the chargers."""
        settings = {
            "cycle_seconds": 0.2,
            "watchdog_seconds": 2,
            "meter_stale_seconds": 0.6,
            "meter_hold_seconds": 0.4,
            "device_stale_seconds": 1.0,
            "ramp_up_amps_per_second": 40,
            "restart_delay_seconds": 0,
            "slow_poll_every": 5,
        }
        settings.update(dlm)
        lines = [
            "[buses.lan]",
            'kind = "tcp"',
            'host = "127.0.0.1"',
            f"port = {self.server.port}",
            "timeout = 0.2",
            "[groups.main]",
            f"limit = {self.limit}",
            "fallback_load = 8",
            "[meters.grid]",
            'model = "eastron-sdm630"',
            'bus = "lan"',
            f"unit_id = {METER_UNIT}",
            'group = "main"',
            'location = "including"',
        ]
        for i, name in enumerate(self.chargers, start=1):
            lines += [
                f"[chargers.{name}]",
                'bus = "lan"',
                f"unit_id = {i}",
                'group = "main"',
                f'rotation = "{self.rotations[name]}"',
                "failsafe_current = 6",
            ]
        lines.append("[dlm]")
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in settings.items()]
        lines += ["[http]", "enabled = false"]
        return "\n".join(lines) + "\n"

    def config(self, **dlm: object) -> SiteConfig:
        """The validated site config."""
        site, problems = check_config_text(self.config_text(**dlm), "sim-site.toml")
        assert site is not None, problems
        return site

    def true_currents(self) -> tuple[float, float, float]:
        """What really flows through the main fuse now: building plus every car."""
        self.meter.advance()
        return self.meter.currents

    async def stop(self) -> None:
        """Stop the server."""
        await self.server.stop()


async def start_site(
    chargers: int = 2,
    *,
    limit: float = 32,
    building: tuple[float, float, float] = (4.0, 4.0, 4.0),
    cars: list[ElectricVehicle | None] | None = None,
    rotations: list[str] | None = None,
) -> SimSite:
    """Start ``chargers`` EVC2 simulators (cars plugged in) and an SDM630 on one TCP server."""
    clock = time.monotonic
    load = list(building)
    names = [f"c{i}" for i in range(1, chargers + 1)]
    rotations = rotations or ["L1L2L3", "L2L3L1", "L3L1L2"] * chargers
    sims: dict[str, Evc2Simulator] = {}
    faults: dict[str, Faults] = {}
    devices: dict[int, FaultyDevice] = {}
    for i, name in enumerate(names):
        sim = Evc2Simulator(clock, rotation=ROTATIONS[rotations[i]])
        car = cars[i] if cars else ElectricVehicle(phases=3, max_current=16, reaction_delay=0.1)
        if car is not None:
            sim.plug_in(car)
        sims[name] = sim
        faults[name] = Faults()
        devices[i + 1] = FaultyDevice(sim, faults[name])
    meter = MeterSimulator(
        "eastron-sdm630",
        lambda _now: tuple(load),
        clock,
        chargers=list(sims.values()),
        noise_a=METER_NOISE_A,
    )
    faults["grid"] = Faults()
    devices[METER_UNIT] = FaultyDevice(meter, faults["grid"])
    server = await serve_tcp(devices, host="127.0.0.1", port=0)
    return SimSite(
        server=server,
        chargers=sims,
        faults=faults,
        meter=meter,
        building=load,
        limit=limit,
        rotations=dict(zip(names, rotations, strict=False)),
    )
