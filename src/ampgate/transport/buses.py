"""Concrete buses: an RS485 port (SerialBus) and a Modbus TCP endpoint (TcpBus), plus open_bus."""

from __future__ import annotations

from typing import TypedDict, Unpack

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.framer import FramerType

from ampgate.errors import ConfigError
from ampgate.transport.address import BusAddress
from ampgate.transport.bus import BusSettings, ModbusBus
from ampgate.transport.framing import CrcReportingFramerRTU
from ampgate.transport.timing import bits_per_char, silent_interval


def _install_crc_framer(bus: ModbusBus, client: ModbusBaseClient) -> None:
    client.ctx.framer = CrcReportingFramerRTU(client.ctx.framer.decoder, bus._on_bad_frame)


def _line_gap(
    baudrate: int, bytesize: int, parity: str, stopbits: int, gap: float | None, where: str
) -> float:
    minimum = silent_interval(baudrate, bits_per_char(bytesize, parity, stopbits))
    if gap is None:
        return minimum
    if gap < minimum:
        raise ConfigError(
            f"{where}: inter_request_gap {gap * 1000:.2f} ms is shorter than the 3.5-character "
            f"silent interval at {baudrate} baud; allowed: >= {minimum * 1000:.2f} ms"
        )
    return gap


class SerialBus(ModbusBus):
    """One RS485 port: one pymodbus serial client shared by every unit on the line."""

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        timeout: float = 0.5,
        retries: int = 1,
        backoff: float = 0.05,
        inter_request_gap: float | None = None,
        quiet_after_timeout: float | None = None,
        reconnect_delay: float = 0.2,
        reconnect_delay_max: float = 10.0,
        offline_after: int = 3,
        name: str | None = None,
    ) -> None:
        """Open nothing yet: the port is opened on the first request and reopened if lost.

        ``inter_request_gap`` defaults to (and may not be below) the 3.5-character interval at
        the line settings; ``quiet_after_timeout`` defaults to 4× that gap (at least 20 ms).
        """
        name = name or f"rtu://{port}"
        gap = _line_gap(baudrate, bytesize, parity, stopbits, inter_request_gap, name)
        settings = BusSettings(
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            inter_request_gap=gap,
            quiet_after_timeout=(
                max(4 * gap, 0.02) if quiet_after_timeout is None else quiet_after_timeout
            ),
            reconnect_delay=reconnect_delay,
            reconnect_delay_max=reconnect_delay_max,
            reconnect_after_unanswered=None,
            offline_after=offline_after,
        )
        client = AsyncModbusSerialClient(
            port,
            framer=FramerType.RTU,
            baudrate=baudrate,
            bytesize=bytesize,
            parity=parity,
            stopbits=stopbits,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
            name=name,
        )
        super().__init__(name, client, settings)
        _install_crc_framer(self, client)
        self.port = port
        self.baudrate = baudrate


class TcpBus(ModbusBus):
    """One TCP endpoint (a device or a Modbus gateway): one connection for every unit behind it.

    ``rtu_framing=True`` sends raw RTU frames (with CRC) to a transparent serial-to-TCP gateway;
    then ``baudrate`` (the gateway's line speed) sets the default inter-request gap.
    """

    def __init__(
        self,
        host: str,
        port: int = 502,
        timeout: float = 1.0,
        retries: int = 1,
        backoff: float = 0.05,
        inter_request_gap: float | None = None,
        quiet_after_timeout: float | None = None,
        rtu_framing: bool = False,
        baudrate: int | None = None,
        reconnect_delay: float = 0.2,
        reconnect_delay_max: float = 10.0,
        reconnect_after_unanswered: int | None = 5,
        offline_after: int = 3,
        name: str | None = None,
    ) -> None:
        """Connect lazily; reconnect after the peer closes or stops answering entirely."""
        scheme = "rtu+tcp" if rtu_framing else "tcp"
        name = name or f"{scheme}://{host}:{port}"
        if rtu_framing and baudrate:
            gap = _line_gap(baudrate, 8, "N", 2, inter_request_gap, name)
        else:
            gap = inter_request_gap or 0.0
        if quiet_after_timeout is None:
            quiet_after_timeout = max(4 * gap, 0.02) if rtu_framing else 0.0
        settings = BusSettings(
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            inter_request_gap=gap,
            quiet_after_timeout=quiet_after_timeout,
            reconnect_delay=reconnect_delay,
            reconnect_delay_max=reconnect_delay_max,
            reconnect_after_unanswered=reconnect_after_unanswered,
            offline_after=offline_after,
        )
        client = AsyncModbusTcpClient(
            host,
            port=port,
            framer=FramerType.RTU if rtu_framing else FramerType.SOCKET,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
            name=name,
        )
        super().__init__(name, client, settings)
        if rtu_framing:
            _install_crc_framer(self, client)
        self.host = host
        self.port = port


class BusOptions(TypedDict, total=False):
    """Settings every kind of bus takes (see :class:`SerialBus` and :class:`TcpBus`)."""

    timeout: float
    retries: int
    backoff: float
    inter_request_gap: float | None
    quiet_after_timeout: float | None
    reconnect_delay: float
    reconnect_delay_max: float
    offline_after: int


def open_bus(address: BusAddress, **settings: Unpack[BusOptions]) -> ModbusBus:
    """Build the bus an address names; ``settings`` are passed to SerialBus/TcpBus."""
    if address.scheme == "rtu":
        return SerialBus(
            address.device,
            baudrate=address.baudrate,
            parity=address.parity,
            stopbits=address.stopbits,
            bytesize=address.bytesize,
            name=address.key,
            **settings,
        )
    if address.scheme == "rtu+tcp":
        return TcpBus(
            address.host,
            address.port,
            rtu_framing=True,
            baudrate=address.baudrate,
            name=address.key,
            **settings,
        )
    return TcpBus(address.host, address.port, name=address.key, **settings)


class BusPool:
    """Buses by address key: every device on the same port or endpoint gets the same bus."""

    def __init__(self, **settings: Unpack[BusOptions]) -> None:
        """Buses are created with ``settings`` (timeout, retries, …) on first use."""
        self._settings: BusOptions = settings
        self._buses: dict[str, ModbusBus] = {}

    def get(self, address: BusAddress) -> ModbusBus:
        """Return the bus for ``address``, creating it on first use."""
        bus = self._buses.get(address.key)
        if bus is None:
            bus = self._buses[address.key] = open_bus(address, **self._settings)
        return bus

    def buses(self) -> list[ModbusBus]:
        """Every bus created so far."""
        return list(self._buses.values())

    async def close(self) -> None:
        """Close every bus."""
        for bus in self._buses.values():
            await bus.close()
        self._buses.clear()
