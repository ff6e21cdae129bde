"""Malformed and foreign MBAP frames never kill a TcpBus: each request ends with a not-ok result
within its timeout, and then the same bus reads correctly from the same, now well-behaved peer;
no task or file descriptor is left behind."""

from __future__ import annotations

import asyncio
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from ampgate.transport import RequestResult, TcpBus
from transport.conftest import open_fds

from .mbap_peer import BEHAVIOURS, MbapPeer, Step, register_value

TIMEOUT = 0.15
ADDRESS, COUNT = 10, 4

steps = st.builds(
    Step,
    st.sampled_from(BEHAVIOURS),
    st.integers(1, 300),
    st.binary(min_size=0, max_size=40),
)


async def scenario(script: list[Step]) -> None:
    tasks_before, fds_before = len(asyncio.all_tasks()), open_fds()
    peer = MbapPeer(list(script))
    await peer.start()
    bus = TcpBus(
        "127.0.0.1",
        peer.port,
        timeout=TIMEOUT,
        retries=0,
        reconnect_delay=0.01,
        reconnect_delay_max=0.02,
    )
    expected = tuple(register_value(ADDRESS + i) for i in range(COUNT))
    try:
        for step in script:
            start = time.monotonic()
            result = await asyncio.wait_for(
                bus.read_registers(1, 3, ADDRESS, COUNT), TIMEOUT * 4 + 1
            )
            elapsed = time.monotonic() - start
            assert isinstance(result, RequestResult)
            assert not result.ok, (step, result)
            assert elapsed < TIMEOUT * 2 + 0.3, (step, elapsed)
            if step.behaviour == "close":  # the reconnect waits out its delay
                await asyncio.sleep(0.03)
        peer.script.clear()
        result = await asyncio.wait_for(bus.read_registers(1, 3, ADDRESS, COUNT), 2)
        assert result.ok and result.words == expected, (script, result)
        again = await asyncio.wait_for(bus.read_registers(1, 4, ADDRESS + 1, 2), 2)
        assert again.ok and again.words == expected[1:3], (script, again)
    finally:
        await bus.close()
        await peer.stop()
    await asyncio.sleep(0.02)
    assert len(asyncio.all_tasks()) == tasks_before
    assert open_fds() == fds_before


@settings(max_examples=20, deadline=None)
@given(st.lists(steps, min_size=1, max_size=3))
def test_malformed_mbap_answers_end_requests_cleanly_and_the_bus_recovers(
    script: list[Step],
) -> None:
    asyncio.run(scenario(script))


def test_every_behaviour_once_on_one_bus() -> None:
    asyncio.run(scenario([Step(b, 3, b"\x00\x01\x00\x00\x00\x05\x01\x03\x02") for b in BEHAVIOURS]))
