"""Open the site's buses and device objects (``ampgate.transport`` + ``ampgate.devices``).

Every bus of the site file becomes one :class:`~ampgate.transport.SerialBus` or
:class:`~ampgate.transport.TcpBus`; every charger and meter a device object on its bus. Nothing
is connected here: buses open on their first request.
"""

from __future__ import annotations

from typing import Any

from ampgate.codec import load_map
from ampgate.config import SerialBusConfig, SiteConfig
from ampgate.devices.charger import Charger
from ampgate.devices.meter import Meter
from ampgate.transport import ModbusBus, SerialBus, TcpBus, bits_per_char, silent_interval


def open_bus(name: str, bus: Any) -> ModbusBus:
    """Build the transport bus for one ``[buses.NAME]`` section."""
    if isinstance(bus, SerialBusConfig):
        frame_gap = silent_interval(bus.baudrate, bits_per_char(8, bus.parity, bus.stopbits))
        return SerialBus(
            bus.port,
            baudrate=bus.baudrate,
            parity=bus.parity,
            stopbits=bus.stopbits,
            timeout=bus.timeout,
            retries=bus.retries,
            inter_request_gap=frame_gap + bus.gap,
            name=name,
        )
    return TcpBus(
        bus.host,
        bus.port,
        timeout=bus.timeout,
        retries=bus.retries,
        rtu_framing=bus.framing == "rtu",
        name=name,
    )


def open_devices(
    config: SiteConfig,
) -> tuple[list[ModbusBus], dict[str, Charger], dict[str, Meter]]:
    """Return ``(buses, chargers by name, meters by name)`` for a validated site."""
    buses = {name: open_bus(name, bus) for name, bus in config.buses.items()}
    chargers = {
        name: Charger(buses[c.bus], c.unit_id, load_map(c.model), name=name)
        for name, c in config.chargers.items()
    }
    meters = {
        name: Meter(buses[m.bus], m.unit_id, load_map(m.model), name=name)
        for name, m in config.meters.items()
    }
    return list(buses.values()), chargers, meters
