"""Real peers for transport tests: socat pty pairs, pymodbus TCP/RTU servers, raw RTU responder."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


def sim_device(unit_id: int, values: list[int], start: int = 0) -> SimDevice:
    """A pymodbus SimDevice serving ``values`` from ``start`` (FC 3 and 4 share them)."""
    return SimDevice(
        unit_id, simdata=[SimData(start, values=list(values), datatype=DataType.REGISTERS)]
    )


async def start_tcp_server(
    devices: list[SimDevice], port: int = 0, framer: FramerType = FramerType.SOCKET
) -> tuple[ModbusTcpServer, int]:
    """Start a pymodbus TCP server on 127.0.0.1; return it and its port."""
    server = ModbusTcpServer(devices, address=("127.0.0.1", port), framer=framer)
    await server.serve_forever(background=True)
    return server, server.transport.sockets[0].getsockname()[1]


@pytest.fixture
async def tcp_server() -> AsyncIterator[tuple[ModbusTcpServer, int]]:
    """pymodbus TCP server with units 1 (registers 0..99 = 0..99) and 2 (0..49 = 100..149)."""
    server, port = await start_tcp_server(
        [sim_device(1, list(range(100))), sim_device(2, list(range(100, 150)))]
    )
    yield server, port
    await server.shutdown()


@pytest.fixture
async def rtu_server(socat_pair: tuple[str, str]) -> AsyncIterator[str]:
    """pymodbus RTU server with units 1 and 2 on pty ``b``; yields pty ``a`` for the client."""
    a, b = socat_pair
    server = ModbusSerialServer(
        [sim_device(1, list(range(100))), sim_device(2, list(range(100, 150)))],
        framer=FramerType.RTU,
        port=b,
        baudrate=19200,
    )
    await server.serve_forever(background=True)
    yield a
    await server.shutdown()
    await asyncio.sleep(0)


def open_fds() -> int:
    """Number of file descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))
