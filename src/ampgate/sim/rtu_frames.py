"""Modbus RTU framing for the simulator's own serial server: CRC-16/MODBUS, frame sizes, PDUs.

Pure functions on bytes. pymodbus' server cannot stay silent for an unknown unit id, corrupt a
CRC on purpose, or hold an answer for the emulated wire time, so the RTU server frames by hand;
the tests check every frame against pymodbus' client, the real peer.
"""

from __future__ import annotations

import struct

from ampgate.sim.device import ModbusExceptionCode, SimulatedDevice


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) of ``data``."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(frame: bytes) -> bytes:
    """``frame`` followed by its CRC, low byte first as sent on the wire."""
    return frame + struct.pack("<H", crc16(frame))


def crc_ok(frame: bytes) -> bool:
    """True when the last two bytes of ``frame`` are the CRC of the rest."""
    return len(frame) >= 4 and struct.pack("<H", crc16(frame[:-2])) == frame[-2:]


def request_size(buffer: bytes) -> int | None:
    """Size of the request frame starting ``buffer`` (FC 3, 4, 6, 16), None if not yet known.

    Returns 0 for another function code: its size is not known from the header, so the server
    takes the frame to end at the next silence.
    """
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if function in (3, 4, 6):
        return 8
    if function == 16:
        return 9 + buffer[6] if len(buffer) >= 7 else None
    return 0


def exception_pdu(function: int, code: ModbusExceptionCode) -> bytes:
    """An exception response PDU: function | 0x80, code."""
    return bytes([(function | 0x80) & 0xFF, int(code)])


def answer_pdu(device: SimulatedDevice, pdu: bytes) -> bytes:
    """The response PDU ``device`` gives to the request ``pdu`` (function code + data)."""
    function = pdu[0]
    if function in (3, 4):
        if len(pdu) != 5:
            return exception_pdu(function, ModbusExceptionCode.ILLEGAL_DATA_VALUE)
        address, count = struct.unpack(">HH", pdu[1:5])
        words = device.read(function, address, count)
        if isinstance(words, ModbusExceptionCode):
            return exception_pdu(function, words)
        return bytes([function, 2 * len(words)]) + struct.pack(f">{len(words)}H", *words)
    if function == 6:
        if len(pdu) != 5:
            return exception_pdu(function, ModbusExceptionCode.ILLEGAL_DATA_VALUE)
        address, value = struct.unpack(">HH", pdu[1:5])
        problem = device.write(address, [value])
        return pdu if problem is None else exception_pdu(function, problem)
    if function == 16:
        if len(pdu) < 6:
            return exception_pdu(function, ModbusExceptionCode.ILLEGAL_DATA_VALUE)
        address, count, byte_count = struct.unpack(">HHB", pdu[1:6])
        data = pdu[6:]
        if not 1 <= count <= 123 or byte_count != 2 * count or len(data) != byte_count:
            return exception_pdu(function, ModbusExceptionCode.ILLEGAL_DATA_VALUE)
        values = list(struct.unpack(f">{count}H", data))
        problem = device.write(address, values)
        return pdu[:5] if problem is None else exception_pdu(function, problem)
    return exception_pdu(function, ModbusExceptionCode.ILLEGAL_FUNCTION)
