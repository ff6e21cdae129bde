"""SerialBus over a socat pty pair: real RTU framing and CRC; pymodbus server and raw responder."""

from __future__ import annotations

import asyncio
import itertools
import time

from ampgate.transport import ResultKind, SerialBus

from .conftest import open_fds
from .rtu_responder import RawRtuResponder, Unit


def regs(base: int, n: int = 20) -> dict[int, int]:
    return {i: base + i for i in range(n)}


async def test_reads_writes_and_exceptions_through_a_pymodbus_rtu_server(rtu_server):
    async with SerialBus(rtu_server, baudrate=19200, timeout=0.5) as bus:
        assert (await bus.read_registers(1, 3, 5, 3)).words == (5, 6, 7)
        assert (await bus.read_registers(2, 4, 0, 2)).words == (100, 101)
        assert (await bus.write_registers(2, 1, [555])).kind is ResultKind.OK
        assert (await bus.write_registers(2, 2, [1, 2])).function == 16
        assert (await bus.read_registers(2, 3, 0, 4)).words == (100, 555, 1, 2)
        beyond = await bus.read_registers(1, 3, 95, 10)
        assert (beyond.kind, beyond.exception_code) == (ResultKind.EXCEPTION, 2)


async def test_silent_unit_costs_only_its_timeout_and_others_keep_answering(socat_pair):
    a, b = socat_pair
    units = {1: Unit(regs(0)), 2: Unit(behaviour="silent"), 3: Unit(regs(300))}
    responder = RawRtuResponder(b, units)
    await responder.start()
    timeout, retries, backoff = 0.25, 1, 0.05
    bus = SerialBus(a, baudrate=19200, timeout=timeout, retries=retries, backoff=backoff)
    try:
        start = time.monotonic()
        done_at: dict[int, float] = {}

        async def read(unit: int):
            result = await bus.read_registers(unit, 3, 0, 2)
            done_at.setdefault(unit, time.monotonic() - start)
            return result

        # The silent unit is asked first; the others are queued behind it.
        results = await asyncio.gather(read(2), read(1), read(3), read(1), read(3))
        silent = results[0]
        assert silent.kind is ResultKind.TIMEOUT and silent.attempts == retries + 1
        assert silent.rtt is None and silent.detail == f"no answer within {timeout} s"
        assert [r.words for r in results[1:]] == [(0, 1), (300, 301), (0, 1), (300, 301)]
        # The other units were served between the silent unit's attempts ...
        assert done_at[1] < timeout * 1.6 and done_at[3] < timeout * 1.6
        # ... and the silent unit cost its own bounded (retries + 1) × timeout, no more.
        assert (retries + 1) * timeout <= done_at[2] < (retries + 1) * timeout + backoff + 0.3
        health = bus.health(2)
        assert health.counts["timeout"] == 1 and health.attempts == 2
        assert health.consecutive_unanswered == 1 and not health.online
        assert bus.health(1).online and bus.health(1).counts["ok"] == 2
    finally:
        await bus.close()
        await responder.stop()


async def test_corrupted_crc_is_reported_as_crc_not_timeout(socat_pair):
    a, b = socat_pair
    responder = RawRtuResponder(b, {4: Unit(regs(40), behaviour="bad_crc"), 5: Unit(regs(50))})
    await responder.start()
    bus = SerialBus(a, baudrate=19200, timeout=0.4, retries=1, backoff=0.01)
    try:
        start = time.monotonic()
        result = await bus.read_registers(4, 3, 0, 2)
        elapsed = time.monotonic() - start
        assert result.kind is ResultKind.CRC
        assert result.attempts == 2 and "bad CRC" in result.detail
        assert bus.bad_frames == 2
        assert elapsed < 0.4, "a bad frame ends the attempt without waiting for the timeout"
        assert bus.health(4).counts["crc"] == 1
        assert (await bus.read_registers(5, 3, 0, 2)).words == (50, 51)
    finally:
        await bus.close()
        await responder.stop()


async def test_late_answer_is_not_taken_for_the_next_request(socat_pair):
    a, b = socat_pair
    unit = Unit(regs(10), behaviour="late:0.25")
    responder = RawRtuResponder(b, {6: unit})
    await responder.start()
    bus = SerialBus(a, baudrate=19200, timeout=0.2, retries=0, quiet_after_timeout=0.1)
    try:
        first = await bus.read_registers(6, 3, 0, 2)
        assert first.kind is ResultKind.TIMEOUT
        # The next answer is slow too: sent at once, the late (10, 11) would arrive first.
        unit.behaviour = "late:0.1"
        second = await bus.read_registers(6, 3, 2, 2)
        assert second.words == (12, 13), "the late answer (10, 11) must have been discarded"
        gap = responder.seen[1].at - responder.seen[0].at
        assert gap >= 0.25 + 0.1 - 0.02, "the bus waited for the line to be quiet"
    finally:
        await bus.close()
        await responder.stop()


async def test_reads_are_served_round_robin_across_units(socat_pair):
    a, b = socat_pair
    responder = RawRtuResponder(b, {1: Unit(regs(0)), 2: Unit(regs(200)), 3: Unit(regs(300))})
    await responder.start()
    bus = SerialBus(a, baudrate=19200, timeout=0.3)
    try:
        calls = [bus.read_registers(1, 3, i, 1) for i in range(8)]
        calls += [bus.read_registers(2, 3, 0, 1), bus.read_registers(3, 3, 0, 1)]
        results = await asyncio.gather(*calls)
        assert all(r.ok for r in results)
        order = [s.unit_id for s in responder.seen]
        assert order[:4] == [1, 2, 3, 1], "unit 1's backlog does not starve units 2 and 3"
    finally:
        await bus.close()
        await responder.stop()


async def test_lowering_write_in_the_priority_lane_overtakes_queued_reads(socat_pair):
    a, b = socat_pair
    responder = RawRtuResponder(b, {1: Unit(regs(0)), 2: Unit(regs(200))})
    await responder.start()
    bus = SerialBus(a, baudrate=19200, timeout=0.3)
    try:
        reads = [asyncio.ensure_future(bus.read_registers(u, 3, 0, 10)) for u in (1, 2) * 4]
        await asyncio.sleep(0)  # all reads are queued; the first is about to be sent
        write = await bus.write_registers(2, 15, [6], priority=True)
        assert write.kind is ResultKind.OK
        await asyncio.gather(*reads)
        functions = [s.function for s in responder.seen]
        assert functions.index(6) <= 1, f"write sent at position {functions.index(6)}"
        assert responder.units[2].registers[15] == 6
    finally:
        await bus.close()
        await responder.stop()


async def test_inter_request_gap_is_kept_between_answer_and_next_request(socat_pair):
    a, b = socat_pair
    responder = RawRtuResponder(b, {1: Unit(regs(0)), 2: Unit(regs(200))})
    await responder.start()
    gap = 0.03
    bus = SerialBus(a, baudrate=9600, timeout=0.3, inter_request_gap=gap)
    try:
        await asyncio.gather(*(bus.read_registers(u, 3, 0, 4) for u in (1, 2) * 4))
        starts = [s.at for s in responder.seen]
        # The responder answers at once, so the spacing of requests bounds the gap from below.
        assert min(b2 - b1 for b1, b2 in itertools.pairwise(starts)) >= gap * 0.95
    finally:
        await bus.close()
        await responder.stop()


async def test_serial_port_gone_and_back_is_reopened_without_leaks(tmp_path):
    import subprocess

    a, b = tmp_path / "a", tmp_path / "b"

    def start_socat() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (a.exists() and b.exists()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return proc

    tasks_before, fds_before = len(asyncio.all_tasks()), open_fds()
    proc = start_socat()
    responder = RawRtuResponder(str(b), {1: Unit(regs(0))})
    await responder.start()
    bus = SerialBus(str(a), baudrate=19200, timeout=0.2, retries=0, reconnect_delay=0.05)
    try:
        assert (await bus.read_registers(1, 3, 0, 1)).ok
        await responder.stop()
        proc.terminate()
        proc.wait(timeout=5)
        lost = await bus.read_registers(1, 3, 0, 1)
        assert lost.kind in (ResultKind.CONNECTION, ResultKind.TIMEOUT)
        gone = await bus.read_registers(1, 3, 0, 1)
        assert gone.kind is ResultKind.CONNECTION

        proc = start_socat()
        responder = RawRtuResponder(str(b), {1: Unit(regs(70))})
        await responder.start()
        deadline = time.monotonic() + 3
        result = await bus.read_registers(1, 3, 0, 1)
        while not result.ok and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            result = await bus.read_registers(1, 3, 0, 1)
        assert result.words == (70,)
    finally:
        await bus.close()
        await responder.stop()
        proc.terminate()
        proc.wait(timeout=5)
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == tasks_before
    assert open_fds() == fds_before


async def test_cancelled_callers_do_not_wedge_the_bus(socat_pair):
    a, b = socat_pair
    responder = RawRtuResponder(b, {1: Unit(regs(0)), 2: Unit(behaviour="silent")})
    await responder.start()
    bus = SerialBus(a, baudrate=19200, timeout=0.2, retries=0)
    try:
        in_flight = asyncio.ensure_future(bus.read_registers(2, 3, 0, 1))
        waiting = asyncio.ensure_future(bus.read_registers(1, 3, 0, 1))
        await asyncio.sleep(0.05)
        waiting.cancel()
        in_flight.cancel()
        await asyncio.gather(in_flight, waiting, return_exceptions=True)
        result = await asyncio.wait_for(bus.read_registers(1, 3, 3, 1), 1.0)
        assert result.words == (3,)
        assert [s.unit_id for s in responder.seen] == [2, 1], "the cancelled wait was never sent"
    finally:
        await bus.close()
        await responder.stop()


async def test_answer_to_a_cancelled_request_is_not_taken_for_the_next_one(socat_pair):
    a, b = socat_pair
    unit = Unit(regs(10), behaviour="late:0.15")
    responder = RawRtuResponder(b, {6: unit})
    await responder.start()
    bus = SerialBus(a, baudrate=19200, timeout=0.3, retries=0, quiet_after_timeout=0.05)
    try:
        cancelled = asyncio.ensure_future(bus.read_registers(6, 3, 0, 2))
        await asyncio.sleep(0.05)  # on the wire, its answer (10, 11) comes at 0.15 s
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        unit.behaviour = "late:0.01"
        result = await asyncio.wait_for(bus.read_registers(6, 3, 2, 2), 1.0)
        assert result.words == (12, 13), "the cancelled request's answer must be discarded"
        gap = responder.seen[1].at - responder.seen[0].at
        assert gap >= 0.15, "the next request waited for the cancelled one's answer"
        assert gap < 0.3 + 0.1, "the drain ends once the answer has come, not at the timeout"
    finally:
        await bus.close()
        await responder.stop()
