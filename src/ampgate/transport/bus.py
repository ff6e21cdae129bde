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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from ampgate.errors import TransportError
from ampgate.transport.health import DeviceHealth, HealthTracker
from ampgate.transport.request import READ_FUNCTIONS, Request
from ampgate.transport.result import RequestResult, ResultKind, exception_name
from ampgate.transport.scheduler import FairScheduler, Slot

#: Exception codes worth another attempt: the device says it is busy or acknowledges later.
RETRYABLE_EXCEPTIONS = frozenset({5, 6})


class _BadFrame(ModbusException):
    """Raised into a pending request when its answer arrived with a bad CRC."""


class _Disconnected(ConnectionException):
    """Raised into a pending request when the connection dropped under it."""


@dataclass(slots=True)
class _Job:
    request: Request
    turn: asyncio.Future[None] | None = None
    """Resolved when the job may use the bus (None on the idle fast path)."""
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
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
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
        """Queue ``request`` (priority lane if asked), run its attempts in turn, return the result.

        The caller's own task sends its attempts when the scheduler gives it the bus; between
        attempts the bus is released so other units get their turn.
        """
        if self._closed:
            raise TransportError(f"{self.name}: bus is closed")
        request.validate(self.name)
        job = _Job(request)
        slot: Slot[_Job] = Slot(request.unit_id, job, priority=priority)
        self._tracker(request.unit_id)
        settings = self.settings
        retry_pending = False
        while True:
            await self._acquire(slot, front=retry_pending)
            if self._closed:
                self._busy = False
                return self._finish(job, ResultKind.CONNECTION, detail="bus closed")
            try:
                await self._attempt(job)
            except asyncio.CancelledError:
                self._release()
                raise
            except Exception as exc:  # a bug must not stop the bus for every other device
                self._in_flight = False
                self._release()
                return self._finish(job, ResultKind.CONNECTION, detail=f"internal error: {exc!r}")
            retry = job.last_kind is not ResultKind.OK and (
                job.last_kind is not ResultKind.EXCEPTION
                or job.extra.get("exception_code") in RETRYABLE_EXCEPTIONS
            )
            if not (retry and job.attempts <= settings.retries):
                self._release()
                return self._finish(job, job.last_kind, detail=job.last_detail)
            slot.not_before = time.monotonic() + settings.backoff * 2 ** (job.attempts - 1)
            retry_pending = True
            self._release(keep_waiting=slot)

    async def _acquire(self, slot: Slot[_Job], *, front: bool) -> None:
        """Return when ``slot`` holds the bus (at once when the bus is idle and nothing waits)."""
        job = slot.item
        if front and job.turn is not None and job.turn.done() is False:
            pass  # already queued by _release(keep_waiting=…)
        elif (
            not self._busy
            and not front
            and len(self._scheduler) == 0
            and slot.not_before <= time.monotonic()
        ):
            self._busy = True
            self._scheduler.mark_served(slot.unit_id)
            return
        else:
            job.turn = asyncio.get_running_loop().create_future()
            self._scheduler.push(slot, front=front)
            self._dispatch()
        turn = job.turn
        assert turn is not None
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # the turn was granted just as the caller was cancelled
            raise

    def _release(self, keep_waiting: Slot[_Job] | None = None) -> None:
        """Give the bus up; ``keep_waiting`` re-queues a retry at the head of its unit first."""
        if keep_waiting is not None:
            keep_waiting.item.turn = asyncio.get_running_loop().create_future()
            self._scheduler.push(keep_waiting, front=True)
        self._busy = False
        if len(self._scheduler):
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand the bus to the next due waiter, or arm a timer for the next backoff."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy:
            return
        now = time.monotonic()
        while (slot := self._scheduler.pop(now)) is not None:
            turn = slot.item.turn
            if turn is None or turn.done():  # the caller gave up while waiting
                continue
            self._busy = True
            turn.set_result(None)
            return
        due = self._scheduler.next_due()
        if due is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, due - now), self._dispatch)

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
        """Fail waiting requests with ``connection`` (bus closed) and close the client."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for slot in self._scheduler.drain():
            turn = slot.item.turn
            if turn is not None and not turn.done():
                turn.set_result(None)  # the waiter sees the bus closed and returns
        self._fail_pending(_Disconnected("bus closed"))
        self._client.close()
        await asyncio.sleep(0)

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

    def _finish(self, job: _Job, kind: ResultKind, *, detail: str = "") -> RequestResult:
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
        return result

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
        if not self._client.connected:
            reason = await self._ensure_connected()
            if reason is not None:
                job.last_kind, job.last_detail = ResultKind.CONNECTION, reason
                return
        if self.settings.inter_request_gap > 0:
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
