"""One Modbus bus: a single pymodbus client, one request in flight, fair queueing, own retries.

A bus is an RS485 port (:class:`~ampgate.transport.buses.SerialBus`) or a TCP endpoint shared by
every unit id behind it (:class:`~ampgate.transport.buses.TcpBus`). pymodbus must not run calls
in parallel on one connection, and its own retry loop holds a lock across every retry, so the
bus runs with pymodbus ``retries=0`` and does the scheduling itself:

* one attempt at a time is on the wire, sent by the caller's own task when it holds the bus
  (at once when the bus is idle and nobody waits: no future, task or queue entry then);
* reads are queued per unit id and served round-robin; the priority lane (lowering setpoints)
  is served first;
* a failed attempt goes back to the head of its unit's queue after a backoff, so a dead device
  costs at most ``(retries + 1) × timeout`` and other devices use the bus between its attempts;
* the inter-request gap is kept from the end of the last answer (or timeout) to the next send;
* after a timeout or a bad frame the bus waits until the line has been quiet for
  ``quiet_after_timeout`` seconds, so a late answer cannot be taken for the next request's;
* the connection is (re)opened on demand with a bounded exponential backoff; pymodbus' own
  reconnect task is disabled so closing the bus leaves no task or socket behind.

Longer than 400 lines on purpose: the serial line's discipline (lanes, gaps, the quiet time
after a timeout, the drain of a cancelled request) is one state machine and reads best whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from ampgate.errors import TransportError
from ampgate.transport.health import DeviceHealth, HealthTracker
from ampgate.transport.request import READ_FUNCTIONS, Job, Request
from ampgate.transport.result import RequestResult, ResultKind, exception_name, new_result
from ampgate.transport.scheduler import FairScheduler, Slot

#: Exception codes worth another attempt: the device says it is busy or acknowledges later.
RETRYABLE_EXCEPTIONS = frozenset({5, 6})

_OK, _EXCEPTION, _TIMEOUT = ResultKind.OK, ResultKind.EXCEPTION, ResultKind.TIMEOUT
_CRC, _CONNECTION = ResultKind.CRC, ResultKind.CONNECTION
_monotonic = time.monotonic


class _BadFrame(ModbusException):
    """Raised into a pending request when its answer arrived with a bad CRC."""


class _Disconnected(ConnectionException):
    """Raised into a pending request when the connection dropped under it."""


def _mismatch(request: Request, response: ModbusPDU) -> str | None:
    """Why ``response`` cannot be the answer to ``request`` (another function code, another
    number of registers), or None. pymodbus matches answers by transaction and unit id only."""
    function = response.function_code & 0x7F
    if function != request.function:
        return f"FC{function:02d} answer to an FC{request.function:02d} request"
    if response.isError() or request.function not in READ_FUNCTIONS:
        return None
    if len(response.registers) != request.count:
        return f"{len(response.registers)} registers for a request of {request.count}"
    return None


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
        self._scheduler: FairScheduler[Job] = FairScheduler()
        self._health: dict[int, HealthTracker] = {}
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._drain: asyncio.Task[None] | None = None
        """Holds the line after a request cancelled on the wire (see :meth:`_drain_line`)."""
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
    def read_registers(
        self, unit_id: int, function: int, address: int, count: int, *, priority: bool = False
    ) -> Coroutine[Any, Any, RequestResult]:
        """Read ``count`` registers with FC 3 or 4 (await it); never raises for device failures."""
        return self.submit(Request(unit_id, function, address, count), priority=priority)

    def write_registers(
        self, unit_id: int, address: int, values: Sequence[int], *, priority: bool = False
    ) -> Coroutine[Any, Any, RequestResult]:
        """Write registers (await it): FC 06 for one word, FC 16 for several."""
        values = tuple(values)
        function = 6 if len(values) == 1 else 16
        request = Request(unit_id, function, address, len(values), values)
        return self.submit(request, priority=priority)

    async def submit(self, request: Request, *, priority: bool = False) -> RequestResult:
        """Queue ``request`` (priority lane if asked), run its attempts in turn, return the result.

        The caller's own task sends its attempts when the scheduler gives it the bus; between
        attempts the bus is released so other units get their turn.
        """
        if self._closed:
            raise TransportError(f"{self.name}: bus is closed")
        request.validate(self.name)
        if request.unit_id not in self._health:
            self._tracker(request.unit_id)
        job = Job(request, priority)
        if self._busy or self._scheduler.queued:
            turn = self._queue(job, 0.0, front=False)
            self._dispatch()
            await self._await_turn(turn)
        else:  # idle fast path: take the bus at once
            self._busy = True
            self._scheduler.mark_served(request.unit_id)
        settings = self.settings
        while True:
            if self._closed:
                self._busy = False
                return self._finish(job, _CONNECTION, "bus closed")
            try:
                await self._attempt(job)
            except asyncio.CancelledError:
                if not job.draining:  # else the drain gives the bus back once the line is quiet
                    self._release()
                raise
            except Exception as exc:  # a bug must not stop the bus for every other device
                self._in_flight = False
                self._release()
                return self._finish(job, _CONNECTION, f"internal error: {exc!r}")
            kind = job.kind
            if (
                kind is _OK
                or job.attempts > settings.retries
                or (kind is _EXCEPTION and job.code not in RETRYABLE_EXCEPTIONS)
            ):
                self._release()
                return self._finish(job, kind, job.detail)
            due = _monotonic() + settings.backoff * 2 ** (job.attempts - 1)
            turn = self._queue(job, due, front=True)  # head of its unit's queue, after backoff
            self._release()
            await self._await_turn(turn)

    def _queue(self, job: Job, not_before: float, *, front: bool) -> asyncio.Future[None]:
        """Put ``job`` in the scheduler; return the future that grants it the bus."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        job.turn = turn
        slot = Slot(job.request.unit_id, job, priority=job.priority, not_before=not_before)
        self._scheduler.push(slot, front=front)
        return turn

    async def _await_turn(self, turn: asyncio.Future[None]) -> None:
        """Wait until ``turn`` grants the bus; give it back if cancelled just after the grant."""
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # the turn was granted just as the caller was cancelled
            raise

    def _release(self) -> None:
        """Give the bus up and hand it to the next due waiter, if any."""
        self._busy = False
        if self._scheduler.queued:
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand the bus to the next due waiter, or arm a timer for the next backoff."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy:
            return
        now = _monotonic()
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
        if self._drain is not None:
            self._drain.cancel()
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
            self._last_rx = _monotonic()
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

    # ---------------------------------------------------------------- attempts
    def _tracker(self, unit_id: int) -> HealthTracker:
        tracker = self._health.get(unit_id)
        if tracker is None:
            tracker = self._health[unit_id] = HealthTracker(
                self.name, unit_id, self.settings.offline_after
            )
        return tracker

    def _finish(self, job: Job, kind: ResultKind, detail: str) -> RequestResult:
        request = job.request
        answered = kind is _OK or kind is _EXCEPTION
        code = job.code if kind is _EXCEPTION else None
        if kind is _TIMEOUT and not detail:
            detail = f"no answer within {self.settings.timeout} s"
        result = new_result(
            kind,
            self.name,
            request.unit_id,
            request.function,
            request.address,
            request.count,
            job.words if kind is _OK else (),
            code,
            None if code is None else exception_name(code),
            job.rtt if answered else None,
            job.attempts if kind is _CONNECTION else max(job.attempts, 1),
            detail,
        )
        # submit() created the tracker before the first attempt.
        self._health[request.unit_id].record(result, job.finished_at if answered else None)
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

    async def _attempt(self, job: Job) -> None:
        """Send one attempt of ``job``; leave what happened in ``job.kind`` and friends."""
        request = job.request
        job.attempts += 1
        client = self._client
        if not client.connected:
            reason = await self._ensure_connected()
            if reason is not None:
                job.kind, job.detail = _CONNECTION, reason
                return
        gap = self.settings.inter_request_gap
        if gap > 0 and (delay := self._last_activity + gap - _monotonic()) > 0:
            await asyncio.sleep(delay)
        answered_at = 0.0
        self._in_flight = True
        start = _monotonic()
        try:
            response = await self._call(request)
        except asyncio.CancelledError:
            if self.settings.quiet_after_timeout > 0:
                # The caller gave up with the request on the wire: its answer may still come.
                # Hold the line until it has (or the timeout passed), so it is never taken for
                # the next request's answer.
                job.draining = True
                self._drain = asyncio.get_running_loop().create_task(self._drain_line(start))
            raise
        except _BadFrame as exc:
            job.kind, job.detail = _CRC, str(exc)
        except ConnectionException as exc:
            job.kind, job.detail = _CONNECTION, str(exc)
            client.close()
        except ModbusIOException:
            job.kind, job.detail = _TIMEOUT, ""  # worded in _finish, only if it is the last
        except ModbusException as exc:
            job.kind, job.detail = _CRC, f"undecodable answer: {exc}"
        else:
            answered_at = _monotonic()
            job.rtt = answered_at - start
            job.finished_at = answered_at
            job.detail = ""
            mismatch = _mismatch(request, response)
            if mismatch is not None:  # not an answer to this request: no words are taken
                job.kind, job.detail = _CRC, f"undecodable answer: {mismatch}"
            else:
                if response.isError():
                    job.kind = _EXCEPTION
                    job.code = int(response.exception_code)
                else:
                    job.kind = _OK
                    if request.function in READ_FUNCTIONS:
                        job.words = tuple(response.registers)
                self._unanswered_in_row = 0
                return
        finally:
            self._in_flight = False
            self._last_activity = answered_at or _monotonic()
        if job.kind is _TIMEOUT or job.kind is _CRC:
            self._unanswered_in_row += 1
            await self._wait_for_quiet_line()
            limit = self.settings.reconnect_after_unanswered
            if limit is not None and self._unanswered_in_row >= limit:
                client.close()

    async def _drain_line(self, sent_at: float) -> None:
        """After a cancelled request: wait for its answer to end (or the timeout), then release."""
        try:
            quiet = self.settings.quiet_after_timeout
            deadline = sent_at + self.settings.timeout
            while (now := _monotonic()) < deadline:
                heard = self._last_rx >= sent_at
                if heard and now - self._last_rx >= quiet:
                    break
                await asyncio.sleep(min(quiet, deadline - now))
            self._client.ctx.recv_buffer = b""
            self._last_activity = _monotonic()
        finally:
            self._drain = None
            self._release()

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

    def _call(self, request: Request) -> Awaitable[ModbusPDU]:
        """Start the pymodbus request (no extra coroutine layer: the caller awaits it)."""
        client, unit = self._client, request.unit_id
        if request.function == 3:
            return client.read_holding_registers(
                request.address, count=request.count, device_id=unit
            )
        if request.function == 4:
            return client.read_input_registers(request.address, count=request.count, device_id=unit)
        if request.function == 6:
            return client.write_register(request.address, request.values[0], device_id=unit)
        return client.write_registers(request.address, list(request.values), device_id=unit)
