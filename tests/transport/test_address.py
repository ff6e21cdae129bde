"""Device address parsing: the three forms, defaults, and errors naming what is wrong."""

from __future__ import annotations

import pytest

from ampgate.errors import ConfigError
from ampgate.transport.address import AddressError, parse_address


def test_tcp_address_defaults_to_port_502():
    address = parse_address("tcp://10.0.0.5/3")
    assert address.bus.scheme == "tcp"
    assert (address.bus.host, address.bus.port, address.unit_id) == ("10.0.0.5", 502, 3)


def test_tcp_address_with_port_and_ipv6():
    assert parse_address("tcp://meter.local:1502/1").bus.port == 1502
    address = parse_address("tcp://[::1]:5020/7")
    assert (address.bus.host, address.bus.port, address.unit_id) == ("::1", 5020, 7)
    assert str(address) == "tcp://[::1]:5020/7"


def test_rtu_address_splits_device_path_from_unit_and_reads_line_settings():
    address = parse_address("rtu:///dev/ttyUSB0/12?baud=19200&parity=e&stopbits=2")
    bus = address.bus
    assert (bus.device, address.unit_id) == ("/dev/ttyUSB0", 12)
    assert (bus.baudrate, bus.parity, bus.stopbits, bus.bytesize) == (19200, "E", 2, 8)
    assert parse_address(str(address)) == address


def test_rtu_address_without_unit_is_a_bus_address():
    address = parse_address("rtu:///dev/serial/by-id/usb-FTDI-if00?baud=9600")
    assert address.unit_id is None
    assert address.bus.device == "/dev/serial/by-id/usb-FTDI-if00"


def test_devices_on_the_same_port_share_a_bus_key():
    one = parse_address("rtu:///dev/ttyUSB0/1?baud=9600")
    two = parse_address("rtu:///dev/ttyUSB0/2?baud=9600&parity=N")
    other_speed = parse_address("rtu:///dev/ttyUSB0/2?baud=19200")
    assert one.bus == two.bus and one.bus.key == two.bus.key
    assert other_speed.bus.key != one.bus.key


def test_rtu_over_tcp_needs_port_and_keeps_baud():
    address = parse_address("rtu+tcp://192.168.1.20:4001/5?baud=19200")
    assert address.bus.scheme == "rtu+tcp"
    assert (address.bus.port, address.bus.baudrate, address.unit_id) == (4001, 19200, 5)
    with pytest.raises(AddressError, match="explicit gateway port"):
        parse_address("rtu+tcp://192.168.1.20/5")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ttyUSB0/1", "missing scheme"),
        ("modbus://host/1", "unknown scheme 'modbus'"),
        ("tcp:///1", "missing host"),
        ("tcp://host:99999/1", "not a number 1–65535"),
        ("tcp://host/abc", "unit id 'abc' is not an integer"),
        ("tcp://host/300", "unit id 300 is outside 0–255"),
        ("rtu:///dev/ttyUSB0/0", "unit id 0 is outside 1–247"),
        ("rtu:///dev/ttyUSB0/248", "unit id 248 is outside 1–247"),
        ("rtu:///dev/ttyUSB0/1?baud=fast", "baud='fast' is not an integer"),
        ("rtu:///dev/ttyUSB0/1?parity=X", "parity='X' is not one of N, E, O"),
        ("rtu:///dev/ttyUSB0/1?stopbits=3", "stopbits=3 is not one of 1, 2"),
        ("rtu:///dev/ttyUSB0/1?speed=9600", "unknown option 'speed'"),
        ("rtu://host/dev/ttyUSB0/1", "has no host"),
        ("rtu:///5", "missing serial device path"),
    ],
)
def test_bad_addresses_name_the_problem_and_the_allowed_forms(text, fragment):
    with pytest.raises(AddressError) as info:
        parse_address(text)
    message = str(info.value)
    assert fragment in message
    assert text in message
    assert "allowed forms" in message
    assert isinstance(info.value, ConfigError)
