"""The MQTT publisher against a real broker (mosquitto on a loopback port): a gateway on
simulators publishes its site; a subscriber checks topics, payloads, retained flags, events,
the clean ``offline``, reconnection after a broker outage and logging in with a password file.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path

import pytest

from interfaces.broker import Broker, needs_mosquitto, recording
from interfaces.mqtt_site import PREFIX, charging, charging_one, run_site, stop_site


async def test_a_site_on_simulators_publishes_its_state_and_only_what_changes(depot, broker):
    async with recording(broker.port, f"{PREFIX}/#") as rec:
        depot.publisher.start()
        await rec.until(charging, 10, "both chargers charging")
        await asyncio.sleep(1.5)  # some cycles with nothing new for most topics
        assert rec.latest(f"{PREFIX}/status").payload == "online"
        snapshot = depot.gateway.store.latest()
        for name in ("c1", "c2"):
            topic = f"{PREFIX}/charger/{name}"
            state = json.loads(rec.latest(f"{topic}/state").payload)
            assert state["name"] == name and state["model"] == "teltocharge-evc2"
            assert state["group"] == "main" and state["bus"] == "lan"
            assert state["online"] is True and state["vehicle_state"] == "charging"
            assert state["setpoint"] == float(rec.latest(f"{topic}/setpoint").payload)
            assert state["setpoint"] == depot.setpoint(name)
            assert rec.latest(f"{topic}/online").payload == "true"
            assert rec.latest(f"{topic}/vehicle_state").payload == "charging"
            device = next(d for d in snapshot.devices if d.name == name)
            assert device.charger is not None
            drawn = float(rec.latest(f"{topic}/current_l1").payload)
            assert abs(drawn - depot.site.chargers[name].current) < 1.0
            assert float(rec.latest(f"{topic}/power").payload) > 1000
        meter = json.loads(rec.latest(f"{PREFIX}/meter/grid/state").payload)
        assert meter["online"] is True and meter["stale"] is False and meter["group"] == "main"
        truth = depot.site.true_currents()
        assert abs(float(rec.latest(f"{PREFIX}/meter/grid/current_l1").payload) - truth[0]) < 3
        group = json.loads(rec.latest(f"{PREFIX}/group/main/state").payload)
        assert group["limit_l1"] == 32 and group["building_load_source_l1"] == "meter"
        assert abs(group["building_load_l1"] - 4.0) < 1.5  # the building's 4 A
        assert rec.latest(f"{PREFIX}/group/main/meter_stale").payload == "false"
        # only what changed: no value topic repeats its previous payload
        by_topic: dict[str, list[str]] = {}
        for message in rec.messages:
            by_topic.setdefault(message.topic, []).append(message.payload)
        for topic, payloads in by_topic.items():
            if topic.endswith(("/state", "/status")):
                continue
            repeats = [a for a, b in itertools.pairwise(payloads) if a == b]
            assert not repeats, (topic, payloads)
        assert len(by_topic[f"{PREFIX}/charger/c1/online"]) == 1
        assert len(by_topic[f"{PREFIX}/group/main/limit_l1"]) == 1
        live = {m.topic for m in rec.messages} - {f"{PREFIX}/events"}
        assert any(not m.retain for m in rec.on(f"{PREFIX}/events"))  # setpoint_changed and such
    # a late subscriber gets every state and value as retained messages
    async with recording(broker.port, f"{PREFIX}/#") as late:
        await late.until(lambda r: {m.topic for m in r.messages} >= live, 3, "the retained set")
        firsts = {t: late.on(t)[0] for t in live}  # later ones may be live updates
        assert all(m.retain for m in firsts.values()), [m for m in firsts.values() if not m.retain]
        assert not late.on(f"{PREFIX}/events")  # events are not retained
        state = json.loads(late.latest(f"{PREFIX}/charger/c1/state").payload)
        assert state["vehicle_state"] == "charging"


async def test_measurements_are_published_at_most_every_interval(broker):
    running = await run_site(broker.port, measurement_interval_seconds=1.0)
    try:
        async with recording(broker.port, f"{PREFIX}/#") as rec:
            running.publisher.start()
            await rec.until(charging_one, 10, "c1 charging")
            began, cycles = time.monotonic(), len(running.cycles)
            await asyncio.sleep(3.2)
            cycles = len(running.cycles) - cycles  # about 16 of 0.2 s
            # the meter's currents have noise: they change every cycle
            currents = [m.at for m in rec.on(f"{PREFIX}/meter/grid/current_l1") if m.at >= began]
            assert 2 <= len(currents) <= 5, (len(currents), cycles)  # every 1 s, not every cycle
            gaps = [b - a for a, b in itertools.pairwise(currents)]
            assert all(g >= 0.7 for g in gaps), gaps  # 1 s apart when sent, give or take delivery
            setpoints = rec.on(f"{PREFIX}/charger/c1/setpoint")
            assert setpoints and all(
                a.payload != b.payload for a, b in itertools.pairwise(setpoints)
            )
    finally:
        await stop_site(running)


async def test_events_are_published_as_they_are_emitted_and_not_retained(depot, broker):
    async with recording(broker.port, f"{PREFIX}/#") as rec:
        depot.publisher.start()
        await rec.until(charging, 10, "both chargers charging")
        depot.site.faults["c2"].silent = True
        await rec.until(
            lambda r: any(json.loads(m.payload)["name"] == "device_offline" for m in r.on(
                f"{PREFIX}/events")),
            5,
            "the device_offline event",
        )  # fmt: skip
        (message,) = [
            m
            for m in rec.on(f"{PREFIX}/events")
            if json.loads(m.payload)["name"] == "device_offline"
        ]
        event = json.loads(message.payload)
        assert event["device"] == "c2" and event["level"] == "warning"
        assert set(event) == {"unix_time", "level", "name", "device", "context"}
        assert abs(event["unix_time"] - time.time()) < 5
        emitted = next(e for e in depot.gateway.events.recent if e.name == "device_offline")
        assert message.at - emitted.time < 0.5  # as emitted, not a cycle or more later
        assert not message.retain
        await rec.until(
            lambda r: r.latest(f"{PREFIX}/charger/c2/online").payload == "false", 3, "c2 offline"
        )
        state = json.loads(rec.latest(f"{PREFIX}/charger/c2/state").payload)
        assert state["online"] is False


async def test_a_clean_stop_says_offline_and_a_late_subscriber_reads_it(depot, broker):
    async with recording(broker.port, f"{PREFIX}/status") as rec:
        depot.publisher.start()
        await rec.until(lambda r: r.latest(f"{PREFIX}/status") is not None, 5, "online")
        assert rec.latest(f"{PREFIX}/status").payload == "online"
        await depot.publisher.stop()
        await rec.until(lambda r: r.latest(f"{PREFIX}/status").payload == "offline", 3, "offline")
    async with recording(broker.port, f"{PREFIX}/status") as late:
        await late.until(lambda r: bool(r.messages), 3, "the retained status")
        assert late.messages[-1].payload == "offline" and late.messages[-1].retain


async def test_a_broker_outage_leaves_the_cycles_alone_and_the_publisher_reconnects(depot, broker):
    depot.publisher.start()
    async with recording(broker.port, f"{PREFIX}/charger/c1/state") as rec:
        await rec.until(lambda r: bool(r.messages), 10, "a first state")
    assert depot.publisher.connections == 1
    began = time.monotonic()
    broker.stop()
    await asyncio.sleep(2.5)  # the publisher notices, retries every 0.2, 0.4, 0.8, 1 s
    assert not depot.publisher.connected and depot.publisher.last_problem
    broker.start()  # the same port; no persistence: every retained message is gone
    async with recording(broker.port, f"{PREFIX}/#") as rec:
        await rec.until(
            lambda r: (
                r.latest(f"{PREFIX}/charger/c1/state") is not None
                and r.latest(f"{PREFIX}/status") is not None
            ),
            5,
            "the state published again",
        )
        assert rec.latest(f"{PREFIX}/status").payload == "online"
    assert depot.publisher.connections == 2
    period = depot.gateway.config.dlm.cycle_seconds
    assert depot.max_cycle_gap(began) < 2 * period, depot.max_cycle_gap(began)


async def test_a_broker_that_never_answers_does_not_slow_the_cycles(tmp_path):
    needs_mosquitto()
    import socket

    silent = socket.socket()  # accepts TCP connections (the backlog) and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    running = await run_site(silent.getsockname()[1])
    try:
        running.publisher.start()
        began = time.monotonic()
        await asyncio.sleep(2.0)
        assert not running.publisher.connected
        assert running.max_cycle_gap(began) < 2 * running.gateway.config.dlm.cycle_seconds
        assert len([t for t in running.cycles if t >= began]) >= 7  # 0.2 s cycles in 2 s
    finally:
        await stop_site(running)
        silent.close()


async def test_a_password_file_logs_in_and_a_wrong_one_is_refused(tmp_path: Path):
    needs_mosquitto()
    from interfaces.broker import MOSQUITTO_PASSWD

    if MOSQUITTO_PASSWD is None:
        pytest.skip("mosquitto_passwd is not installed (it comes with the mosquitto package)")
    broker = Broker(tmp_path, users={"ampgate": "s3cret", "reader": "r3ad"})
    broker.start()
    try:
        good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
        good.write_text("s3cret\n")
        bad.write_text("wrong\n")
        running = await run_site(broker.port, username="ampgate", password_file=str(good))
        try:
            async with recording(
                broker.port, f"{PREFIX}/status", username="reader", password="r3ad"
            ) as rec:
                running.publisher.start()
                await rec.until(lambda r: bool(r.messages), 5, "online with a password")
                assert rec.messages[-1].payload == "online"
        finally:
            await stop_site(running)
        refused = await run_site(broker.port, username="ampgate", password_file=str(bad))
        try:
            refused.publisher.start()
            await asyncio.sleep(1.0)
            assert refused.publisher.connections == 0
            assert "authori" in (refused.publisher.last_problem or "").lower()
        finally:
            await stop_site(refused)
    finally:
        broker.stop()
