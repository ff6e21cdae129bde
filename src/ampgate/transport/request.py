"""A Modbus register request, checked before it can reach the wire, and its job on a bus."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ampgate.errors import TransportError
from ampgate.transport.result import ResultKind

READ_FUNCTIONS = (3, 4)
WRITE_FUNCTIONS = (6, 16)
#: Largest register count per function code (Modbus Application Protocol v1.1b3, 6.3/6.4/6.12).
MAX_COUNT = {3: 125, 4: 125, 6: 1, 16: 123}


@dataclass(frozen=True, slots=True)
class Request:
    """A read (FC 3/4) or write (FC 6/16) of holding/input registers."""

    unit_id: int
    function: int
    address: int
    count: int
    values: tuple[int, ...] = ()

    def validate(self, bus: str) -> None:
        """Raise TransportError when the request could not be a valid Modbus frame."""
        limit = MAX_COUNT.get(self.function)
        if (
            limit is not None
            and 0 <= self.unit_id <= 255
            and 1 <= self.count <= limit
            and 0 <= self.address <= 0x10000 - self.count
            and (limit == 125 or len(self.values) == self.count)
        ):
            if limit == 125:
                return  # reads carry no values: nothing else to check on the hot path
            if all(isinstance(v, int) and 0 <= v <= 0xFFFF for v in self.values):
                return
        self._raise_invalid(bus)

    def _raise_invalid(self, bus: str) -> None:
        """Raise the TransportError naming the first rule this request breaks."""
        where = f"{bus} unit {self.unit_id}"
        if not 0 <= self.unit_id <= 255:
            raise TransportError(f"{where}: unit id {self.unit_id} is outside 0–255")
        limit = MAX_COUNT.get(self.function)
        if limit is None:
            raise TransportError(f"{where}: function {self.function} is not one of 3, 4, 6, 16")
        if not 0 <= self.address <= 0xFFFF or self.address + self.count - 1 > 0xFFFF:
            raise TransportError(f"{where}: address {self.address}+{self.count} exceeds 0–65535")
        if not 1 <= self.count <= limit:
            raise TransportError(
                f"{where}: FC{self.function} count {self.count} is outside 1–{limit}"
            )
        if len(self.values) != self.count:
            raise TransportError(f"{where}: {len(self.values)} values for count {self.count}")
        bad = [v for v in self.values if not (isinstance(v, int) and 0 <= v <= 0xFFFF)]
        raise TransportError(f"{where}: register values {bad} are outside 0–65535")


class Job:
    """One submitted request and what its latest attempt gave (mutable, owned by its bus)."""

    __slots__ = (
        *("request", "priority", "turn", "attempts", "kind", "detail"),
        *("words", "code", "rtt", "finished_at", "draining"),
    )

    def __init__(self, request: Request, priority: bool) -> None:
        """Start with no attempt made; the bus fills the rest in."""
        self.request = request
        self.priority = priority
        self.turn: asyncio.Future[None] | None = None
        """Resolved when the job may use the bus (None on the idle fast path)."""
        self.attempts = 0
        self.kind = ResultKind.TIMEOUT
        self.detail = ""
        """Why the latest attempt failed; empty for a timeout (worded only in _finish)."""
        self.words: tuple[int, ...] = ()
        self.code: int | None = None
        """Exception code of the latest exception response."""
        self.rtt: float | None = None
        self.finished_at: float | None = None
        """Monotonic time the latest answer arrived."""
        self.draining = False
        """Cancelled on the wire: the bus is held until the line is quiet, then released."""
