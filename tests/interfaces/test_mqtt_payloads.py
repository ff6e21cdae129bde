"""The pure half of the MQTT publisher: snapshot -> (topic, payload, retain), only what changed,
measurements paced, a removed device cleared (ampgate.interfaces.mqtt_payloads)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

from ampgate.interfaces.homeassistant import discovery_messages
from ampgate.interfaces.mqtt_changes import ChangeTracker
from ampgate.interfaces.mqtt_payloads import (
    Subject,
    event_message,
    value_text,
)
from ampgate.interfaces.snapshot import (
    ChargerReadings,
    DaemonSnapshot,
    DeviceSnapshot,
    Event,
    PhaseValues,
)

P = "ampgate/t"


def charger(name: str = "c1", setpoint: float = 16.0, current: float = 15.5) -> DeviceSnapshot:
    return DeviceSnapshot(
        name=name,
        model="teltocharge-evc2",
        kind="charger",
        bus="lan",
        unit_id=1,
        up=True,
        group="main",
        charger=ChargerReadings(
            current_amperes=PhaseValues(current, current, current),
            setpoint_amperes=setpoint,
            vehicle_state="charging",
        ),
    )


def snapshot(*devices: DeviceSnapshot) -> DaemonSnapshot:
    return DaemonSnapshot(devices=devices, site="t")


def discovery(subject: Subject):
    return discovery_messages(subject, site="t", prefix=P, discovery_prefix="homeassistant", qos=1)


def topics(messages) -> dict[str, str]:
    return {m.topic: m.payload for m in messages}


def test_the_first_snapshot_is_sent_in_full_and_then_only_what_changed():
    tracker = ChangeTracker(P, measurement_interval=5.0, discovery=discovery)
    first = tracker.messages(snapshot(charger()), now=0.0)
    sent = topics(first)
    assert sent[f"{P}/charger/c1/setpoint"] == "16"
    assert sent[f"{P}/charger/c1/current_l1"] == "15.5"
    assert sent[f"{P}/charger/c1/online"] == "true"
    assert sent[f"{P}/charger/c1/power"] == "None"  # not known yet
    assert json.loads(sent[f"{P}/charger/c1/state"])["vehicle_state"] == "charging"
    assert any(t.startswith("homeassistant/sensor/ampgate_t/") for t in sent)
    assert all(m.retain for m in first)
    assert tracker.messages(snapshot(charger()), now=1.0) == []
    # a state changes: sent at once, with the state JSON
    lowered = topics(tracker.messages(snapshot(charger(setpoint=10)), now=1.2))
    assert set(lowered) == {f"{P}/charger/c1/setpoint", f"{P}/charger/c1/state"}
    # a measurement changes: held back until the interval since its last publish has passed
    assert tracker.messages(snapshot(charger(setpoint=10, current=9.8)), now=2.0) == []
    later = topics(tracker.messages(snapshot(charger(setpoint=10, current=9.8)), now=5.0))
    assert later[f"{P}/charger/c1/current_l1"] == "9.8"
    assert f"{P}/charger/c1/state" not in later  # the JSON went out at 1.2: due at 6.2
    state = topics(tracker.messages(snapshot(charger(setpoint=10, current=9.8)), now=6.3))
    assert json.loads(state[f"{P}/charger/c1/state"])["current_l1"] == 9.8
    tracker.reset()
    assert len(tracker.messages(snapshot(charger(setpoint=10)), now=6.0)) == len(first)


def test_a_device_that_leaves_the_site_has_every_retained_topic_cleared():
    tracker = ChangeTracker(P, measurement_interval=0.0, discovery=discovery)
    both = tracker.messages(snapshot(charger("c1"), charger("c2")), now=0.0)
    c2_topics = {m.topic for m in both if "c2" in m.topic}
    assert any(t.startswith("homeassistant/") for t in c2_topics)
    cleared = tracker.messages(snapshot(charger("c1")), now=1.0)
    assert {m.topic for m in cleared} == c2_topics
    assert all(m.payload == "" and m.retain for m in cleared)
    # an empty snapshot (before the gateway's first) removes nothing
    assert tracker.messages(DaemonSnapshot(), now=2.0) == []


def test_value_text_is_what_a_simple_consumer_and_home_assistant_read():
    assert value_text(None) == "None"
    assert value_text(True) == "true" and value_text(False) == "false"
    assert value_text(16.0) == "16" and value_text(6.5) == "6.5"
    assert value_text(1 / 3) == "0.333"
    assert value_text(math.nan) == "None"
    assert value_text(("a", "b")) == '["a", "b"]'
    assert value_text("C: charging") == "C: charging"


def test_an_event_is_one_json_object_even_with_odd_context():
    event = Event(
        time=1.0,
        name="charger_overdraw",
        device="c1",
        context={"amps": math.inf, "phases": (1, 2), "why": object()},
        unix_time=1700000000.5,
        level="warning",
    )
    message = event_message(P, event)
    assert message.topic == f"{P}/events" and not message.retain
    body = json.loads(message.payload)
    assert body["level"] == "warning" and body["unix_time"] == 1700000000.5
    assert body["context"]["amps"] is None and body["context"]["phases"] == [1, 2]
    assert isinstance(body["context"]["why"], str)
    assert replace(event, level="info") != event  # frozen value: the publisher cannot change it
