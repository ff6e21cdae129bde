"""Serve simulated devices over Modbus TCP with pymodbus' own server: one port, many unit ids.

This is a Modbus TCP gateway in front of the devices: the MBAP unit id selects the device.
pymodbus 3.16 hands every request of a server to its datastore context through
``async_getValues`` / ``async_setValues`` (``pdu.datastore_update``). Its server accepts a
`ModbusServerContext` flagged ``old_simulator`` as the datastore itself (base.py), so a small
subclass routes requests to our device models without copying registers into pymodbus blocks.

* A unit id with no device, or a `FaultyDevice` set silent, never answers: the context raises
  `NoSuchIdException` and the server runs with ``ignore_missing_devices=True``, which drops the
  request (pymodbus' own `SimDevice` fallback would answer exception 4 instead).
* ``drop_connection`` faults and `TcpSimServer.drop_connections` close client connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer

from ampgate.sim.device import ModbusExceptionCode, SimulatedDevice, faults_of

#: Function codes pymodbus passes to the datastore for holding-register writes and the
#: read-back that follows an FC 06 write.
_WRITE_FUNCTIONS = (6, 16)


class _DeviceContext(ModbusServerContext):
    """Routes pymodbus datastore calls to our device models by unit id."""

    def __init__(self, devices: Mapping[int, SimulatedDevice], server: TcpSimServer) -> None:
        # Deliberately not calling super().__init__: it wraps pymodbus blocks we do not use
        # and logs a deprecation warning. These attributes are what the server looks at.
        self.old_simulator = True
        self.simdevices = []
        self._sim_devices = devices
        self._server = server

    def _device(self, unit_id: int) -> SimulatedDevice:
        device = self._sim_devices.get(unit_id)
        if device is None:
            raise NoSuchIdException(f"unit id {unit_id} is not served")
        faults = faults_of(device)
        if faults.drop_connection:
            self._server.drop_connections()
            raise NoSuchIdException(f"unit id {unit_id} drops the connection")
        if faults.silent:
            raise NoSuchIdException(f"unit id {unit_id} is silent")
        self._server.requests += 1
        return device

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | ExcCodes:
        """Read registers from the device behind ``device_id``."""
        device = self._device(device_id)
        function = 3 if func_code in _WRITE_FUNCTIONS else func_code
        answer = device.read(function, address, count)
        if isinstance(answer, ModbusExceptionCode):
            return ExcCodes(int(answer))
        return answer

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int]
    ) -> ExcCodes | None:
        """Write holding registers of the device behind ``device_id``."""
        device = self._device(device_id)
        if func_code not in _WRITE_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        answer = device.write(address, list(values))
        return None if answer is None else ExcCodes(int(answer))

    def device_ids(self) -> list[int]:
        """Unit ids served (used by pymodbus for broadcasts, which are off)."""
        return list(self._sim_devices)


class TcpSimServer:
    """A running Modbus TCP server on ``host:port`` serving ``devices`` by unit id."""

    def __init__(self, devices: Mapping[int, SimulatedDevice], host: str, port: int) -> None:
        """Prepare the server; `serve_tcp` creates and starts it."""
        self.devices = devices
        self.host = host
        self.port = port
        self.requests = 0
        """Requests passed to a device (not counting silent or unknown unit ids)."""
        self.dropped_connections = 0
        self._server: ModbusTcpServer | None = None

    async def start(self) -> None:
        """Listen; with port 0 the system picks a free port, then `port` holds it."""
        server = ModbusTcpServer(
            _DeviceContext(self.devices, self),
            address=(self.host, self.port),
            ignore_missing_devices=True,
        )
        await server.serve_forever(background=True)
        self._server = server
        sockets = getattr(server.transport, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]

    def drop_connections(self) -> int:
        """Close every client connection now (clients see the connection drop); returns how many."""
        if self._server is None:
            return 0
        connections = list(self._server.active_connections.values())
        for connection in connections:
            connection.close()
        self.dropped_connections += len(connections)
        return len(connections)

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            server, self._server = self._server, None
            with contextlib.suppress(Exception):
                await server.shutdown()
            await asyncio.sleep(0)

    async def __aenter__(self) -> TcpSimServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve_tcp(
    devices: Mapping[int, SimulatedDevice], *, host: str = "127.0.0.1", port: int = 0
) -> TcpSimServer:
    """Start serving ``devices`` (unit id → device) over Modbus TCP; returns the running server.

    Use ``async with await serve_tcp(...) as server:`` or call ``await server.stop()``.
    """
    server = TcpSimServer(devices, host, port)
    await server.start()
    return server
