"""What every simulated device is: a register-level Modbus server model, free of any transport.

A device answers ``read(function, address, count)`` with the words or a Modbus exception code,
and ``write(address, values)`` (holding registers, FC 06 / FC 16) with ``None`` or an exception
code. The TCP and RTU servers in this package only move these answers onto a wire.

Time is injected: a device asks its ``clock`` (a callable returning seconds) when it needs the
current time, so tests and the demo can run a simulated site faster than real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol, runtime_checkable

Clock = Callable[[], float]
"""Returns the current time in seconds (any epoch; only differences matter)."""


class ModbusExceptionCode(IntEnum):
    """Modbus exception codes a simulated device can answer (Modbus application protocol 7)."""

    ILLEGAL_FUNCTION = 1
    ILLEGAL_DATA_ADDRESS = 2
    ILLEGAL_DATA_VALUE = 3
    DEVICE_FAILURE = 4
    ACKNOWLEDGE = 5
    DEVICE_BUSY = 6
    GATEWAY_PATH_UNAVAILABLE = 10
    GATEWAY_TARGET_NO_RESPONSE = 11


ReadAnswer = list[int] | ModbusExceptionCode
WriteAnswer = ModbusExceptionCode | None


@runtime_checkable
class SimulatedDevice(Protocol):
    """A device the servers can put behind a unit id."""

    def read(self, function: int, address: int, count: int) -> ReadAnswer:
        """Answer a read of ``count`` registers from ``address`` with function 3 or 4."""
        ...

    def write(self, address: int, values: Sequence[int]) -> WriteAnswer:
        """Write holding registers from ``address``; ``None`` on success."""
        ...


class SpeedClock:
    """Monotonic time running ``speed`` times faster than real time, starting at 0."""

    def __init__(self, speed: float = 1.0) -> None:
        """Start the clock now; ``speed`` > 0 (10 = ten simulated seconds per real second)."""
        if not speed > 0:
            raise ValueError(f"clock speed {speed} is not allowed (allowed: a number > 0)")
        self.speed = speed
        self._start = time.monotonic()

    def __call__(self) -> float:
        """Simulated seconds since the clock was created."""
        return (time.monotonic() - self._start) * self.speed


class ManualClock:
    """A clock that only moves when told to: deterministic tests."""

    def __init__(self, start: float = 0.0) -> None:
        """Start at ``start`` seconds."""
        self.now = start

    def __call__(self) -> float:
        """The current time in seconds."""
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards by {seconds} s")
        self.now += seconds
        return self.now


@dataclass(slots=True)
class Faults:
    """Fault injection for one unit id, read by the servers on every request (mutable on purpose).

    * ``silent``: never answer (a dead or absent device; the request simply times out).
    * ``exception``: answer every request with this exception code.
    * ``corrupt_crc``: answer, but with a wrong CRC (RTU only; TCP has no CRC).
    * ``drop_connection``: on TCP, close every client connection instead of answering.
    * ``answer_as``: answer with this unit id in the frame instead of the one asked (RTU only:
      a unit answering for another unit id; the client must not take it for a reading).
    * ``truncate``: answer only the first half of the frame (RTU only: a frame cut short).
    * ``delay``: answer this many seconds late (RTU only; longer than the client's timeout, the
      answer arrives while the next request is on the line).
    """

    silent: bool = False
    exception: ModbusExceptionCode | None = None
    corrupt_crc: bool = False
    drop_connection: bool = False
    answer_as: int | None = None
    truncate: bool = False
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One write a simulated device received: when, where, what, and what it answered."""

    at: float
    """``time.monotonic()`` when it arrived."""
    address: int
    values: tuple[int, ...]
    answer: ModbusExceptionCode | None
    """None when the device accepted it, else the exception it answered."""


class FaultyDevice:
    """Wraps a device (or none) with injectable faults; behaves like the wrapped device otherwise.

    ``FaultyDevice()`` alone is a unit id that never answers. ``writes`` logs every write that
    reaches the unit (the servers drop a silent unit's requests before they get here), with the
    answer it got, so a test can count and check every write on the wire.
    """

    def __init__(self, inner: SimulatedDevice | None = None, faults: Faults | None = None) -> None:
        """Wrap ``inner``; without ``inner`` the unit is silent unless an exception is set."""
        self.inner = inner
        self.faults = faults if faults is not None else Faults(silent=inner is None)
        self.writes: list[WriteRecord] = []

    def read(self, function: int, address: int, count: int) -> ReadAnswer:
        """The wrapped device's answer, or the injected exception."""
        if self.faults.exception is not None:
            return self.faults.exception
        if self.inner is None:
            return ModbusExceptionCode.DEVICE_FAILURE
        return self.inner.read(function, address, count)

    def write(self, address: int, values: Sequence[int]) -> WriteAnswer:
        """The wrapped device's answer, or the injected exception (logged in ``writes``)."""
        if self.faults.exception is not None:
            answer: WriteAnswer = self.faults.exception
        elif self.inner is None:
            answer = ModbusExceptionCode.DEVICE_FAILURE
        else:
            answer = self.inner.write(address, values)
        self.writes.append(WriteRecord(time.monotonic(), address, tuple(values), answer))
        return answer


@dataclass(slots=True)
class SharedUnitId:
    """Two (or more) devices set to the same unit id on one line: every request reaches all.

    Each of them acts on every write. On RTU (`serve_rtu`) they all answer at once: identical
    answers (a write echo) look like one frame, different ones collide into a frame with a bad
    CRC. Over TCP (no shared line) the first device's answer is served.
    """

    devices: list[SimulatedDevice] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)

    def read(self, function: int, address: int, count: int) -> ReadAnswer:
        """Every device reads (feeding its watchdog); the first one's answer."""
        answers = [d.read(function, address, count) for d in self.devices]
        return answers[0]

    def write(self, address: int, values: Sequence[int]) -> WriteAnswer:
        """Every device writes; the first one's answer."""
        answers = [d.write(address, values) for d in self.devices]
        return answers[0]


def faults_of(device: SimulatedDevice) -> Faults:
    """The faults injected into ``device`` (none for a plain device)."""
    return device.faults if isinstance(device, FaultyDevice | SharedUnitId) else _NO_FAULTS


_NO_FAULTS = Faults()
