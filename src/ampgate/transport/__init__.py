"""Modbus transport: fair, serialised, retrying buses over pymodbus (RTU serial, TCP, RTU over TCP).

See :mod:`ampgate.transport.bus` for the scheduling rules and
:mod:`ampgate.transport.address` for the address forms.
"""

from ampgate.transport.address import AddressError, BusAddress, DeviceAddress, parse_address
from ampgate.transport.bus import BusSettings, ModbusBus
from ampgate.transport.buses import BusPool, SerialBus, TcpBus, open_bus
from ampgate.transport.health import RTT_BUCKETS, DeviceHealth, RttHistogram
from ampgate.transport.request import Request
from ampgate.transport.result import (
    EXCEPTION_NAMES,
    RequestFailed,
    RequestResult,
    ResultKind,
    exception_name,
)
from ampgate.transport.timing import bits_per_char, char_time, silent_interval

__all__ = [
    "EXCEPTION_NAMES",
    "RTT_BUCKETS",
    "AddressError",
    "BusAddress",
    "BusPool",
    "BusSettings",
    "DeviceAddress",
    "DeviceHealth",
    "ModbusBus",
    "Request",
    "RequestFailed",
    "RequestResult",
    "ResultKind",
    "RttHistogram",
    "SerialBus",
    "TcpBus",
    "bits_per_char",
    "char_time",
    "exception_name",
    "open_bus",
    "parse_address",
    "silent_interval",
]
