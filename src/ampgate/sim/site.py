"""A simulated site for ``ampgate simulate`` and the demo: N chargers and a meter, served.

Chargers are unit ids 1..N, the meter is unit id `METER_UNIT_ID` (100). Every charger has a
3-phase 16 A car plugged in (unless ``plug_in_cars=False``) and is wired with a rotating phase
order (charger k: L1 on site phase ((k-1) mod 3) + 1), as installers do to balance single-phase
cars; the meter measures a varying building load plus every charger's draw.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ampgate.sim.device import Clock, SimulatedDevice, SpeedClock
from ampgate.sim.evc2 import ElectricVehicle, Evc2Simulator
from ampgate.sim.meter import LoadProfile, MeterSimulator, PhaseCurrents
from ampgate.sim.rtu import RtuSimServer, serve_rtu
from ampgate.sim.tcp import TcpSimServer, serve_tcp

METER_UNIT_ID = 100
MAX_CHARGERS = 99
METER_NOISE_A = 0.05
"""Jitter of the simulated meter's currents: a real meter's readings never repeat exactly, and
ampgate takes a meter whose readings do for frozen."""
_ROTATIONS = ((1, 2, 3), (2, 3, 1), (3, 1, 2))


def building_load(base: PhaseCurrents = (8.0, 6.0, 10.0), swing: float = 4.0) -> LoadProfile:
    """A building load: ``base`` amps per phase plus a ±``swing`` A wave with a 10-minute period."""

    def profile(now: float) -> PhaseCurrents:
        wave = swing * math.sin(2 * math.pi * now / 600.0)
        return (base[0] + wave, base[1] - wave / 2, base[2] + wave / 2)

    return profile


@dataclass(slots=True)
class Simulation:
    """What a running simulation serves (returned by `start_simulation`)."""

    clock: Clock
    chargers: dict[int, Evc2Simulator]
    meter: MeterSimulator | None
    devices: dict[int, SimulatedDevice]
    tcp: TcpSimServer | None = None
    rtu: RtuSimServer | None = None
    meter_unit_id: int = METER_UNIT_ID
    notes: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        """One line per thing served, for the CLI to print."""
        lines = []
        if self.tcp is not None:
            lines.append(f"Modbus TCP on {self.tcp.host}:{self.tcp.port}")
        if self.rtu is not None:
            emulation = ", line emulation" if self.rtu.line_emulation else ""
            lines.append(
                f"Modbus RTU on {self.rtu.port_path} at {self.rtu.baudrate} baud "
                f"{self.rtu.parity}{self.rtu.stopbits}{emulation}"
            )
        for unit_id, charger in self.chargers.items():
            lines.append(f"unit {unit_id}: {charger.map.id} rotation {charger.rotation}")
        if self.meter is not None:
            lines.append(f"unit {self.meter_unit_id}: {self.meter.map.id}")
        return lines + self.notes

    async def stop(self) -> None:
        """Stop every server."""
        if self.tcp is not None:
            await self.tcp.stop()
        if self.rtu is not None:
            await self.rtu.stop()


async def start_simulation(
    chargers: int,
    meter_model: str | None,
    tcp_port: int | None,
    serial_port: str | None,
    baudrate: int = 9600,
    parity: str = "N",
    stopbits: int = 1,
    line_emulation: bool = False,
    speed: float = 1.0,
    host: str = "127.0.0.1",
    plug_in_cars: bool = True,
    load_profile: LoadProfile | None = None,
) -> Simulation:
    """Build the site and start serving it; stop it with ``await simulation.stop()``.

    ``tcp_port`` 0 picks a free port; at least one of ``tcp_port`` / ``serial_port`` is needed.
    ``speed`` runs simulated time that many times faster than real time.
    """
    if not 0 <= chargers <= MAX_CHARGERS:
        raise ValueError(f"chargers = {chargers} is not allowed (allowed: 0–{MAX_CHARGERS})")
    if tcp_port is None and serial_port is None:
        raise ValueError("nothing to serve on: give a TCP port, a serial port, or both")
    clock = SpeedClock(speed)
    by_unit: dict[int, Evc2Simulator] = {}
    for unit_id in range(1, chargers + 1):
        charger = Evc2Simulator(clock, rotation=_ROTATIONS[(unit_id - 1) % 3])
        if plug_in_cars:
            charger.plug_in(ElectricVehicle(phases=3, max_current=16.0))
        by_unit[unit_id] = charger
    meter = None
    if meter_model is not None:
        profile = load_profile if load_profile is not None else building_load()
        meter = MeterSimulator(
            meter_model, profile, clock, chargers=list(by_unit.values()), noise_a=METER_NOISE_A
        )
    devices: dict[int, SimulatedDevice] = dict(by_unit)
    if meter is not None:
        devices[METER_UNIT_ID] = meter
    simulation = Simulation(clock=clock, chargers=by_unit, meter=meter, devices=devices)
    try:
        if tcp_port is not None:
            simulation.tcp = await serve_tcp(devices, host=host, port=tcp_port)
        if serial_port is not None:
            simulation.rtu = await serve_rtu(
                devices, serial_port, baudrate, parity, stopbits, line_emulation
            )
    except BaseException:
        await simulation.stop()
        raise
    return simulation


async def run_simulation(
    *args: Any,
    on_started: Callable[[Simulation], None] | None = None,
    **kwargs: Any,
) -> None:
    """Serve a simulated site until cancelled; prints nothing.

    Takes exactly the arguments of :func:`start_simulation`. ``on_started`` receives the
    running `Simulation` (e.g. to print `Simulation.describe`).
    """
    simulation = await start_simulation(*args, **kwargs)
    try:
        if on_started is not None:
            on_started(simulation)
        await asyncio.Event().wait()
    finally:
        await simulation.stop()
