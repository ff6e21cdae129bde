"""One Modbus bus: a single pymodbus client, one request in flight, fair queueing, own retries.

A bus is an RS485 port (:class:`~ampgate.transport.buses.SerialBus`) or a TCP endpoint shared by
every unit id behind it (:class:`~ampgate.transport.buses.TcpBus`). pymodbus must not run calls
in parallel on one connection, and its own retry loop holds a lock across every retry, so the
bus runs with pymodbus ``retries=0`` and does the scheduling itself:

* one worker task sends one attempt at a time;
* reads are queued per unit id and served round-robin; the priority lane (lowering setpoints)
  is served first;
* a failed attempt goes back to the head of its unit's queue after a backoff, so a dead device
  costs at most ``(retries + 1) × timeout`` and other devices use the bus between its attempts;
* the inter-request gap is kept from the end of the last answer (or timeout) to the next send;
* after a timeout or a bad frame the bus waits until the line has been quiet for
  ``quiet_after_timeout`` seconds, so a late answer cannot be taken for the next request's;
* the connection is (re)opened on demand with a bounded exponential backoff; pymodbus' own
  reconnect task is disabled so closing the bus leaves no task or socket behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from ampgate.errors import TransportError
from ampgate.transport.health import DeviceHealth, HealthTracker
from ampgate.transport.result import RequestResult, ResultKind, exception_name
from ampgate.transport.scheduler import FairScheduler, Slot

READ_FUNCTIONS = (3, 4)
WRITE_FUNCTIONS = (6, 16)
#: Exception codes worth another attempt: the device says it is busy or acknowledges later.
RETRYABLE_EXCEPTIONS = frozenset({5, 6})


class _BadFrame(ModbusException):
    """Raised into a pending request when its answer arrived with a bad CRC."""


class _Disconnected(ConnectionException):
    """Raised into a pending request when the connection dropped under it."""


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
        where = f"{bus} unit {self.unit_id}"
        if not 0 <= self.unit_id <= 255:
            raise TransportError(f"{where}: unit id {self.unit_id} is outside 0–255")
        if self.function not in READ_FUNCTIONS + WRITE_FUNCTIONS:
            raise TransportError(f"{where}: function {self.function} is not one of 3, 4, 6, 16")
        if not 0 <= self.address <= 0xFFFF or self.address + self.count - 1 > 0xFFFF:
            raise TransportError(f"{where}: address {self.address}+{self.count} exceeds 0–65535")
        limit = 125 if self.function in READ_FUNCTIONS else (1 if self.function == 6 else 123)
        if not 1 <= self.count <= limit:
            raise TransportError(
                f"{where}: FC{self.function} count {self.count} is outside 1–{limit}"
            )
        if self.function in WRITE_FUNCTIONS:
            if len(self.values) != self.count:
                raise TransportError(f"{where}: {len(self.values)} values for count {self.count}")
            bad = [v for v in self.values if not (isinstance(v, int) and 0 <= v <= 0xFFFF)]
            if bad:
                raise TransportError(f"{where}: register values {bad} are outside 0–65535")


@dataclass(slots=True)
class _Job:
    request: Request
    future: asyncio.Future[RequestResult]
    attempts: int = 0
    last_kind: ResultKind = ResultKind.TIMEOUT
    last_detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Timing and retry policy of one bus."""

    timeout: float = 0.5
    """Seconds to wait for an answer (also the connect timeout)."""
    retries: int = 1
    """Extra attempts after the first (0 = one attempt only)."""
    backoff: float = 0.05
    """Seconds before the first retry; doubles for each further retry."""
    inter_request_gap: float = 0.0
    """Minimum seconds from the end of an answer to the next request."""
    quiet_after_timeout: float = 0.0
    """Line silence required after a timeout or bad frame before the next request."""
    reconnect_delay: float = 0.2
    reconnect_delay_max: float = 10.0
    reconnect_after_unanswered: int | None = None
    """Close and reopen the connection after this many unanswered attempts in a row (TCP)."""
    offline_after: int = 3

    def __post_init__(self) -> None:
        """Reject settings that would make the bus unbounded or unsafe."""
        if self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise TransportError(
                f"bus settings: timeout {self.timeout} must be > 0, retries {self.retries} "
                f"and backoff {self.backoff} must be >= 0"
            )


class ModbusBus:
    """A queue-served pymodbus client. Build one with SerialBus or TcpBus."""

    def __init__(self, name: str, client: ModbusBaseClient, settings: BusSettings) -> None:
        """Serve requests for ``name`` over ``client`` (created with retries=0, no reconnect)."""
        self.name = name
        self.settings = settings
        self._client = client
        client.set_max_no_responses(2**31)  # the bus decides when to reconnect, not pymodbus
        client.ctx.trace_packet = self._trace_packet
        client.ctx.trace_connect = self._trace_connect
        self._scheduler: FairScheduler[_Job] = FairScheduler()
        self._health: dict[int, HealthTracker] = {}
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._in_flight = False
        self._last_activity = 0.0
        self._last_rx = 0.0
        self._unanswered_in_row = 0
        self._next_connect = 0.0
        self._connect_delay = settings.reconnect_delay
        self.bad_frames = 0
        self.connects = 0

    # ---------------------------------------------------------------- public API
    async def read_registers(
        self, unit_id: int, function: int, address: int, count: int, *, priority: bool = False
    ) -> RequestResult:
        """Read ``count`` registers with FC 3 or 4; never raises for device failures."""
        return await self.submit(Request(unit_id, function, address, count), priority=priority)

    async def write_registers(
        self, unit_id: int, address: int, values: Sequence[int], *, priority: bool = False
    ) -> RequestResult:
        """Write registers: FC 06 for one word, FC 16 for several."""
        values = tuple(values)
        function = 6 if len(values) == 1 else 16
        request = Request(unit_id, function, address, len(values), values)
        return await self.submit(request, priority=priority)

    async def submit(self, request: Request, *, priority: bool = False) -> RequestResult:
        """Queue ``request`` (priority lane if asked) and wait for its result."""
        if self._closed:
            raise TransportError(f"{self.name}: bus is closed")
        request.validate(self.name)
        loop = asyncio.get_running_loop()
        job = _Job(request, loop.create_future())
        self._scheduler.push(Slot(request.unit_id, job, priority=priority))
        self._tracker(request.unit_id)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(), name=f"ampgate bus {self.name}")
        self._wakeup.set()
        return await job.future

    def health(self, unit_id: int) -> DeviceHealth:
        """Frozen health snapshot of ``unit_id`` on this bus."""
        return self._tracker(unit_id).snapshot()

    def health_all(self) -> dict[int, DeviceHealth]:
        """Health of every unit this bus has talked to."""
        return {u: t.snapshot() for u, t in sorted(self._health.items())}

    @property
    def connected(self) -> bool:
        """True while the port/connection is open."""
        return self._client.connected

    async def close(self) -> None:
        """Stop the worker, fail queued requests with ``connection`` and close the client."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        for slot in self._scheduler.drain():
            self._finish(slot.item, ResultKind.CONNECTION, detail="bus closed")
        self._client.close()

    async def __aenter__(self) -> ModbusBus:
        """Use the bus as an async context manager (closes on exit)."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the bus."""
        await self.close()

    # ---------------------------------------------------------------- pymodbus hooks
    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._last_rx = time.monotonic()
        return data

    def _trace_connect(self, connected: bool) -> None:
        if not connected:
            self._fail_pending(_Disconnected("connection lost during request"))

    def _on_bad_frame(self, frame: bytes) -> None:
        self.bad_frames += 1
        self._fail_pending(_BadFrame(f"bad CRC in frame {frame.hex(' ')}"))

    def _fail_pending(self, exc: Exception) -> None:
        # pymodbus awaits ctx.response_future with a timeout; ending it early turns a known
        # failure into an immediate result instead of a full timeout.
        future = self._client.ctx.response_future
        if self._in_flight and not future.done():
            future.set_exception(exc)

    # ---------------------------------------------------------------- worker
    def _tracker(self, unit_id: int) -> HealthTracker:
        tracker = self._health.get(unit_id)
        if tracker is None:
            tracker = self._health[unit_id] = HealthTracker(
                self.name, unit_id, self.settings.offline_after
            )
        return tracker

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            slot = self._scheduler.pop(now)
            if slot is None:
                due = self._scheduler.next_due()
                self._wakeup.clear()
                wait = None if due is None else max(0.0, due - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait)
                continue
            job = slot.item
            if job.future.done():  # the caller gave up (cancelled) before it was sent
                continue
            try:
                await self._attempt(job)
            except Exception as exc:  # a bug must not stop the bus for every other device
                self._in_flight = False
                self._finish(job, ResultKind.CONNECTION, detail=f"internal error: {exc!r}")
                continue
            settings = self.settings
            retry = job.last_kind is not ResultKind.OK and (
                job.last_kind is not ResultKind.EXCEPTION
                or job.extra.get("exception_code") in RETRYABLE_EXCEPTIONS
            )
            if retry and job.attempts <= settings.retries:
                slot.not_before = time.monotonic() + settings.backoff * 2 ** (job.attempts - 1)
                self._scheduler.push(slot, front=True)
            else:
                self._finish(job, job.last_kind, detail=job.last_detail)

    def _finish(self, job: _Job, kind: ResultKind, *, detail: str = "") -> None:
        request = job.request
        code = job.extra.get("exception_code") if kind is ResultKind.EXCEPTION else None
        result = RequestResult(
            kind=kind,
            bus=self.name,
            unit_id=request.unit_id,
            function=request.function,
            address=request.address,
            count=request.count,
            words=tuple(job.extra.get("words", ())) if kind is ResultKind.OK else (),  # type: ignore[arg-type]
            exception_code=code,  # type: ignore[arg-type]
            exception_name=exception_name(code) if isinstance(code, int) else None,
            rtt=job.extra.get("rtt") if kind in (ResultKind.OK, ResultKind.EXCEPTION) else None,  # type: ignore[arg-type]
            attempts=max(job.attempts, 1) if kind is not ResultKind.CONNECTION else job.attempts,
            detail=detail,
        )
        self._tracker(request.unit_id).record(result)
        if not job.future.done():
            job.future.set_result(result)

    async def _ensure_connected(self) -> str | None:
        """Open the client if needed; return a reason when it cannot be opened now."""
        if self._client.connected:
            return None
        now = time.monotonic()
        if now < self._next_connect:
            return f"not connected; next connect attempt in {self._next_connect - now:.2f} s"
        self.connects += 1
        try:
            ok = await self._client.connect()
        except Exception as exc:  # pyserial raises termios.error (not OSError) on bad settings
            ok = False
            reason = f"cannot connect: {exc!r}"
        else:
            reason = "cannot connect"
        if ok and self._client.connected:
            self._connect_delay = self.settings.reconnect_delay
            self._unanswered_in_row = 0
            self._last_activity = time.monotonic()
            return None
        self._client.close()
        self._next_connect = time.monotonic() + self._connect_delay
        self._connect_delay = min(self._connect_delay * 2, self.settings.reconnect_delay_max)
        return reason

    async def _attempt(self, job: _Job) -> None:
        request = job.request
        job.attempts += 1
        reason = await self._ensure_connected()
        if reason is not None:
            job.last_kind, job.last_detail = ResultKind.CONNECTION, reason
            return
        gap_end = self._last_activity + self.settings.inter_request_gap
        if (delay := gap_end - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        start = time.monotonic()
        self._in_flight = True
        try:
            response = await self._call(request)
        except _BadFrame as exc:
            job.last_kind, job.last_detail = ResultKind.CRC, str(exc)
        except ConnectionException as exc:
            job.last_kind, job.last_detail = ResultKind.CONNECTION, str(exc)
            self._client.close()
        except ModbusIOException:
            job.last_kind = ResultKind.TIMEOUT
            job.last_detail = f"no answer within {self.settings.timeout} s"
        except ModbusException as exc:
            job.last_kind, job.last_detail = ResultKind.CRC, f"undecodable answer: {exc}"
        else:
            job.extra["rtt"] = time.monotonic() - start
            if response.isError():
                job.last_kind = ResultKind.EXCEPTION
                job.extra["exception_code"] = int(response.exception_code)
            else:
                job.last_kind = ResultKind.OK
                if request.function in READ_FUNCTIONS:
                    job.extra["words"] = tuple(response.registers)
            job.last_detail = ""
        finally:
            self._in_flight = False
            self._last_activity = time.monotonic()
        if job.last_kind in (ResultKind.TIMEOUT, ResultKind.CRC):
            self._unanswered_in_row += 1
            await self._wait_for_quiet_line()
            limit = self.settings.reconnect_after_unanswered
            if limit is not None and self._unanswered_in_row >= limit:
                self._client.close()
        elif job.last_kind is not ResultKind.CONNECTION:
            self._unanswered_in_row = 0

    async def _wait_for_quiet_line(self) -> None:
        """Wait until nothing was received for ``quiet_after_timeout`` (bounded by timeout)."""
        quiet = self.settings.quiet_after_timeout
        if quiet <= 0:
            return
        deadline = time.monotonic() + self.settings.timeout
        while True:
            silent_for = time.monotonic() - max(self._last_rx, self._last_activity)
            if silent_for >= quiet or time.monotonic() >= deadline:
                break
            await asyncio.sleep(quiet - silent_for)
        self._client.ctx.recv_buffer = b""  # drop any late bytes before the next request
        self._last_activity = time.monotonic()

    async def _call(self, request: Request) -> ModbusPDU:
        client, unit = self._client, request.unit_id
        if request.function == 3:
            return await client.read_holding_registers(
                request.address, count=request.count, device_id=unit
            )
        if request.function == 4:
            return await client.read_input_registers(
                request.address, count=request.count, device_id=unit
            )
        if request.function == 6:
            return await client.write_register(request.address, request.values[0], device_id=unit)
        return await client.write_registers(request.address, list(request.values), device_id=unit)
