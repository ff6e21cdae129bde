"""A pymodbus RTU framer that reports bad-CRC frames instead of silently dropping them.

pymodbus 3.16's ``FramerRTU.decode`` discards a frame whose CRC does not match
(``return data_len, 0, 0, EMPTY`` — the only branch that consumes bytes without a frame) and the
request then simply times out. Wrapping ``decode`` lets the bus count the failure and end the
attempt at once as ``crc`` instead of waiting for a timeout.
"""

from __future__ import annotations

from collections.abc import Callable

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU


class CrcReportingFramerRTU(FramerRTU):
    """FramerRTU that calls ``on_bad_frame(frame_bytes)`` for every frame failing its CRC."""

    def __init__(self, decoder: DecodePDU, on_bad_frame: Callable[[bytes], None]) -> None:
        """Wrap the client's decoder; ``on_bad_frame`` receives the discarded bytes."""
        super().__init__(decoder)
        self.on_bad_frame = on_bad_frame
        self.bad_frames = 0

    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        """Decode like FramerRTU; report frames consumed without yielding a PDU (bad CRC)."""
        used, dev_id, tid, frame = super().decode(data)
        if used and not frame:
            self.bad_frames += 1
            self.on_bad_frame(bytes(data[:used]))
        return used, dev_id, tid, frame
