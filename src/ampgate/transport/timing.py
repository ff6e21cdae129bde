"""RS485 timing: character time, the 3.5-character silent interval and RTU frame wire time.

Pure arithmetic, no I/O. Modbus over serial line (V1.02, 2.5.1.1): a frame is delimited by a
silence of at least 3.5 character times; above 19200 baud the spec fixes the interval at 1.75 ms.
A character is 1 start bit + data bits + parity bit (if any) + stop bits (11 bits in 8E1, 8N2, 8O1;
10 bits in 8N1, which the spec tolerates although it asks for 2 stop bits without parity).
"""

from __future__ import annotations

#: Above this baud rate the spec fixes the inter-frame interval instead of scaling it.
FIXED_INTERVAL_ABOVE_BAUD = 19200
FIXED_SILENT_INTERVAL_S = 0.00175


def bits_per_char(bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> int:
    """Return the bits one character occupies on the line (start + data + parity + stop)."""
    return 1 + bytesize + (0 if parity.upper() == "N" else 1) + stopbits


def char_time(baudrate: int, bits: int = 11) -> float:
    """Seconds one character takes on the line."""
    if baudrate <= 0:
        raise ValueError(f"baud rate {baudrate} must be positive")
    return bits / baudrate


def silent_interval(baudrate: int, bits: int = 11) -> float:
    """The 3.5-character inter-frame silence in seconds (1.75 ms above 19200 baud)."""
    if baudrate > FIXED_INTERVAL_ABOVE_BAUD:
        return FIXED_SILENT_INTERVAL_S
    return 3.5 * char_time(baudrate, bits)


def rtu_read_request_bytes() -> int:
    """Bytes of an RTU FC03/FC04 request: unit, function, address(2), count(2), CRC(2)."""
    return 8


def rtu_read_response_bytes(count: int) -> int:
    """Bytes of an RTU FC03/FC04 response: unit, function, byte count, 2×count data, CRC(2)."""
    return 5 + 2 * count


def rtu_read_wire_time(count: int, baudrate: int, bits: int = 11) -> float:
    """Lower bound in seconds for one read of ``count`` registers on the line.

    Request + response characters, plus the silent interval after each frame (turnaround
    and the gap before the next request). The device's own processing time is not counted.
    """
    chars = rtu_read_request_bytes() + rtu_read_response_bytes(count)
    return chars * char_time(baudrate, bits) + 2 * silent_interval(baudrate, bits)
