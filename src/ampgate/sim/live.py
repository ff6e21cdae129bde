"""The real gateway against a scenario's plant, in real time, over Modbus TCP or RTU.

The closed-loop simulation (:mod:`ampgate.sim.closed_loop`) models the transport; this harness
runs it: the scenario's :class:`~ampgate.sim.plant.Plant` is served by the Modbus simulators
(each charger and meter on its own loopback TCP port, or, for ``transport = "rtu"``, the
chargers on one virtual RS485 line at the scenario's baud rate with line emulation, the meter on
TCP), and the daemon's :class:`~ampgate.gateway.loop.Gateway` runs its cycle against them from
the site file the scenario builds. The truth is sampled every ``sample_s`` into the same
:class:`~ampgate.sim.scoring.Scorer`; every write a charger receives is counted, and every
setpoint that reaches a charger is timed.

Used by ``benchmarks/bench_daemon_scenarios.py`` and the end-to-end tests of the DLM dynamics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ampgate.gateway.loop import Gateway
from ampgate.interfaces.store import SnapshotStore
from ampgate.sim.device import FaultyDevice, ReadAnswer, WriteAnswer
from ampgate.sim.evc2 import Evc2Simulator
from ampgate.sim.plant import Plant, Truth
from ampgate.sim.pty import virtual_serial_line
from ampgate.sim.rtu import serve_rtu, transaction_wire_time
from ampgate.sim.scenario import Scenario
from ampgate.sim.scoring import Score, Scorer
from ampgate.sim.tcp import serve_tcp

SETPOINT_REGISTER = 15
GAP_S = 0.005
"""The daemon's gap between requests on an RS485 line (``buses.*.gap`` default)."""
TCP_TIMEOUT_S = 0.3
RTU_TIMEOUT_S = 0.3


@dataclass(slots=True)
class LiveRun:
    """What one live run produced."""

    score: Score
    writes: list[tuple[float, str, int, tuple[int, ...]]] = field(default_factory=list)
    """Every write a charger received: (time since start, charger, address, values)."""
    events: Mapping[str, int] = field(default_factory=dict)
    """How often each event was emitted."""
    cycles: int = 0
    stop_s: float = 0.0
    """How long stopping took: the loop's exit plus the shutdown writes and closing."""
    stopped_at: float = float("inf")
    """When the stop was asked for (time since start); later writes are the shutdown's."""
    truths: list[Truth] = field(default_factory=list)
    """Every sample, when asked for (``keep_truths``)."""

    def setpoint_writes(self, charger: str) -> list[tuple[float, int]]:
        """(time, amps) of every setpoint written to ``charger``."""
        return [(t, v[0]) for t, c, a, v in self.writes if c == charger and a == SETPOINT_REGISTER]

    def setpoint_before_stop(self, charger: str) -> int | None:
        """The last setpoint written to ``charger`` while the gateway ran (not the shutdown's)."""
        running = [amps for t, amps in self.setpoint_writes(charger) if t < self.stopped_at]
        return running[-1] if running else None


async def run_live(
    scenario: Scenario,
    *,
    duration_s: float | None = None,
    sample_s: float = 0.1,
    dlm: Mapping[str, Any] | None = None,
    keep_truths: bool = False,
    during: Callable[[Plant, float], Awaitable[None] | None] | None = None,
    on_cycle: Callable[[Gateway], Any] | None = None,
) -> LiveRun:
    """Run the gateway on ``scenario`` for ``duration_s`` (the scenario's own by default).

    ``dlm`` overrides keys of the site file's ``[dlm]``; ``during(plant, t)`` is called at every
    sample (a test scripts extra faults with it); ``on_cycle(gateway)`` after every cycle.
    """
    duration = scenario.duration_s if duration_s is None else min(duration_s, scenario.duration_s)
    settings = dict(dlm or {})
    rtu = scenario.transport == "rtu"
    with virtual_serial_line() if rtu else contextlib.nullcontext(None) as line:
        return await _run(
            scenario, duration, sample_s, settings, keep_truths, during, on_cycle, line
        )


async def _run(
    scenario: Scenario,
    duration: float,
    sample_s: float,
    dlm: dict[str, Any],
    keep_truths: bool,
    during: Callable[[Plant, float], Awaitable[None] | None] | None,
    on_cycle: Callable[[Gateway], Any] | None,
    line: tuple[str, str] | None,
) -> LiveRun:
    t0 = time.monotonic()

    def clock() -> float:
        return time.monotonic() - t0

    plant = Plant(scenario, clock)
    writes: list[tuple[float, str, int, tuple[int, ...]]] = []
    truths: list[Truth] = []
    scorer = Scorer(scenario, "daemon", wire_s=_wire_s(scenario, len(plant.chargers)))
    devices = plant.devices()
    _spy_writes(plant, devices, writes, scorer, clock)
    stopped_at, stop_s = float("inf"), 0.0
    ids = scenario.unit_ids()
    servers: list[Any] = []
    buses: dict[str, dict[str, Any]] = {}
    bus_of: dict[str, str] = {}
    try:
        on_tcp = list(plant.meters) if line is not None else list(devices)
        for name in on_tcp:
            server = await serve_tcp({ids[name]: devices[name]}, host="127.0.0.1", port=0)
            servers.append(server)
            bus = f"tcp_{name}"
            buses[bus] = {
                "kind": "tcp",
                "host": "127.0.0.1",
                "port": server.port,
                "timeout": TCP_TIMEOUT_S,
            }
            bus_of[name] = bus
        if line is not None:
            client_end, server_end = line
            chargers = {ids[n]: devices[n] for n in plant.chargers}
            servers.append(
                await serve_rtu(
                    chargers, server_end, baudrate=scenario.baudrate, line_emulation=True
                )
            )
            buses["rs485"] = {
                "kind": "serial",
                "port": client_end,
                "baudrate": scenario.baudrate,
                "timeout": RTU_TIMEOUT_S,
            }
            bus_of.update(dict.fromkeys(plant.chargers, "rs485"))
        config = scenario.site_config(buses, bus_of, extra={"dlm": dlm} if dlm else None)
        gateway = Gateway(config, store=SnapshotStore())
        stop = asyncio.Event()
        await gateway.start()
        loop_task = asyncio.create_task(gateway.run(stop, on_cycle))
        try:
            await _sample(plant, scorer, truths, clock, duration, sample_s, keep_truths, during)
        finally:
            began_stop = time.monotonic()
            stopped_at = clock()
            stop.set()
            await loop_task
            await gateway.shutdown(timeout=3.0)
            stop_s = time.monotonic() - began_stop
        events = dict(gateway.events.counts)
        cycles = gateway.counters.cycles
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                await server.stop()
    return LiveRun(
        score=scorer.result(duration),
        writes=writes,
        events=events,
        cycles=cycles,
        stop_s=stop_s,
        stopped_at=stopped_at,
        truths=truths,
    )


def _wire_s(scenario: Scenario, chargers: int) -> float:
    """The time the lowering writes take on the wire (RS485: every charger's, behind a poll)."""
    if scenario.transport != "rtu":
        return 0.02
    baud = scenario.baudrate
    write = transaction_wire_time(8, 8, baud) + GAP_S
    poll = transaction_wire_time(8, 5 + 2 * 39, baud) + GAP_S
    return write * chargers + poll


def _spy_writes(
    plant: Plant,
    devices: Mapping[str, FaultyDevice],
    writes: list[tuple[float, str, int, tuple[int, ...]]],
    scorer: Scorer,
    clock: Callable[[], float],
) -> None:
    """Count every write a charger receives; time each setpoint that reaches it.

    The spy sits between each charger's fault injection and its simulator, so it sees exactly
    the writes that reach the simulator.
    """
    for name, sim in plant.chargers.items():
        devices[name].inner = _WriteSpy(name, sim, writes, scorer, clock)


class _WriteSpy:
    """A charger simulator that records every write it receives (see :func:`_spy_writes`)."""

    def __init__(
        self,
        name: str,
        sim: Evc2Simulator,
        writes: list[tuple[float, str, int, tuple[int, ...]]],
        scorer: Scorer,
        clock: Callable[[], float],
    ) -> None:
        self.name, self.sim, self.writes, self.scorer, self.clock = (
            name, sim, writes, scorer, clock,
        )  # fmt: skip

    def read(self, function: int, address: int, count: int) -> ReadAnswer:
        """The simulator's answer."""
        return self.sim.read(function, address, count)

    def write(self, address: int, values: Sequence[int]) -> WriteAnswer:
        """The simulator's answer; the write is recorded and a setpoint timed by the scorer."""
        old = int(self.sim.image.raw("amps_to_use"))
        answer = self.sim.write(address, values)
        now = self.clock()
        self.writes.append((now, self.name, address, tuple(int(v) for v in values)))
        if address <= SETPOINT_REGISTER < address + len(values):
            new = int(values[SETPOINT_REGISTER - address])
            self.scorer.setpoint_written(self.name, old, new, now)
        return answer


async def _sample(
    plant: Plant,
    scorer: Scorer,
    truths: list[Truth],
    clock: Callable[[], float],
    duration: float,
    sample_s: float,
    keep_truths: bool,
    during: Callable[[Plant, float], Awaitable[None] | None] | None,
) -> None:
    n = 0
    while True:
        now = clock()
        if now >= duration:
            break
        truth = plant.step(now)
        scorer.sample(truth)
        if keep_truths:
            truths.append(truth)
        if during is not None:
            maybe = during(plant, now)
            if maybe is not None:
                await maybe
        n += 1
        await asyncio.sleep(max(0.0, n * sample_s - clock()))
    scorer.sample(plant.step(duration))
