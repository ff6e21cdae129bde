"""Real peers for the CLI tests: ampgate's simulators served from a background event loop.

``ampgate.cli.main`` runs its own ``asyncio.run``, so the simulators live on a loop in another
thread; tests call the CLI synchronously and inspect the simulated devices directly.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

import pytest

from ampgate.sim import (
    Evc2Simulator,
    ManualClock,
    MeterSimulator,
    SimulatedDevice,
    constant_load,
    serve_rtu,
    serve_tcp,
)

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running in a daemon thread; `run` executes a coroutine on it."""

    def __init__(self) -> None:
        """Start the loop thread."""
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, factory: Callable[[], Awaitable[T]], timeout: float = 10) -> T:
        """Run ``factory()`` on the loop and wait for its result."""

        async def call() -> T:
            return await factory()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop and join the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class ServedSite:
    """Simulated devices served over Modbus TCP on 127.0.0.1 from a background loop."""

    def __init__(self, devices: Mapping[int, SimulatedDevice]) -> None:
        """Serve ``devices`` (unit id → simulator) on a free port."""
        self.devices = dict(devices)
        self.loop = LoopThread()
        self.server: Any = self.loop.run(lambda: serve_tcp(self.devices, port=0))
        self.port: int = self.server.port

    def address(self, unit: int | None = None) -> str:
        """``tcp://127.0.0.1:PORT[/UNIT]``."""
        base = f"tcp://127.0.0.1:{self.port}"
        return base if unit is None else f"{base}/{unit}"

    def close(self) -> None:
        """Stop serving."""
        self.loop.run(self.server.stop)
        self.loop.close()


def evc2(clock: ManualClock, serial_number: int = 123456789) -> Evc2Simulator:
    """An EVC2 simulator with its documented default serial number."""
    return Evc2Simulator(clock, serial_number=serial_number)


@pytest.fixture(scope="module")
def site() -> Iterator[ServedSite]:
    """EVC2 chargers at units 1, 2 and 5 and an Eastron SDM72D-M at unit 100."""
    clock = ManualClock(1000.0)
    chargers = {u: evc2(clock, 123456789 + u - 1) for u in (1, 2, 5)}
    meter = MeterSimulator(
        "eastron-sdm72d", constant_load(10.0, 12.0, 8.0), clock, chargers=list(chargers.values())
    )
    served = ServedSite({**chargers, 100: meter})
    yield served
    served.close()


@pytest.fixture
def closed_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve_rtu_devices(
    socat_pair: tuple[str, str],
) -> Iterator[Callable[[Mapping[int, SimulatedDevice]], str]]:
    """A factory serving simulators as Modbus RTU on a pty; returns the client pty path."""
    client, server_end = socat_pair
    loop = LoopThread()
    servers: list[Any] = []

    def serve(devices: Mapping[int, SimulatedDevice]) -> str:
        servers.append(loop.run(lambda: serve_rtu(devices, server_end, baudrate=9600)))
        return client

    try:
        yield serve
    finally:
        for server in servers:
            loop.run(server.stop)
        loop.close()


@pytest.fixture
def rtu_site(
    serve_rtu_devices: Callable[[Mapping[int, SimulatedDevice]], str],
) -> tuple[str, Evc2Simulator]:
    """One EVC2 at unit 2 behind the RTU simulator on a pty; (client pty path, charger)."""
    charger = evc2(ManualClock(0.0))
    return serve_rtu_devices({2: charger}), charger


@pytest.fixture
def serve_devices() -> Iterator[Callable[[Mapping[int, SimulatedDevice]], ServedSite]]:
    """A factory serving given simulators over TCP for one test (stopped afterwards)."""
    started: list[ServedSite] = []

    def serve(devices: Mapping[int, SimulatedDevice]) -> ServedSite:
        served = ServedSite(devices)
        started.append(served)
        return served

    yield serve
    for served in started:
        served.close()
