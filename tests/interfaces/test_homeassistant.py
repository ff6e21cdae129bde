"""Home Assistant MQTT discovery, checked against what Home Assistant documents it requires.

The rules below are written from Home Assistant's documentation (the MQTT integration's
"Discovery" section, the MQTT Sensor and MQTT Binary Sensor pages, and the sensor device
classes with their units), not from ampgate's payloads: the discovery topic's shape, the keys a
component requires, a device with identifiers, ``unique_id`` for the device registry, the
units and state classes a device class allows, the ``enum`` rules (``options`` required, no
unit and no state class), and payloads on the state topics that the entity can read.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

import aiomqtt

from interfaces.broker import recording
from interfaces.mqtt_site import PREFIX, charging

DISCOVERY_TOPIC = re.compile(
    r"^homeassistant/(?P<component>[a-z_]+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
    r"(?P<object_id>[a-zA-Z0-9_-]+)/config$"
)
"""``<discovery_prefix>/<component>/[<node_id>/]<object_id>/config`` under the default
discovery prefix; node and object ids are letters, digits, underscore and hyphen."""
REQUIRED_KEYS = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}}
"""What each component's configuration marks *Required*."""
SENSOR_UNITS = {
    "current": {"A", "mA"},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "power": {"mW", "W", "kW", "MW", "GW", "TW", "BTU/h"},
    "energy": {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal"},
    "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "temperature": {"°C", "°F", "K"},
    "enum": set(),
}
"""The units each sensor device class used here accepts (enum: none)."""
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
DEVICE_CLASS_STATE_CLASSES = {
    "current": {"measurement"},
    "voltage": {"measurement"},
    "power": {"measurement"},
    "frequency": {"measurement"},
    "temperature": {"measurement"},
    "energy": {"total", "total_increasing"},
}
BINARY_SENSOR_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
    "tamper", "update", "vibration", "window",
}  # fmt: skip
PAYLOAD_NONE = "None"
"""The state payload Home Assistant's MQTT sensors and binary sensors read as *unknown*."""


def home_assistant_problems(topic: str, config: dict[str, Any]) -> list[str]:
    """Why Home Assistant would refuse or misread this discovery config (empty: it is fine)."""
    problems: list[str] = []
    match = DISCOVERY_TOPIC.match(topic)
    if match is None:
        return [f"{topic}: not a discovery topic"]
    component = match["component"]
    if component not in REQUIRED_KEYS:
        return [f"{topic}: component {component!r} not checked here"]
    problems += [f"{topic}: missing {key}" for key in REQUIRED_KEYS[component] - set(config)]
    if "+" in config.get("state_topic", "+") or "#" in config.get("state_topic", "#"):
        problems.append(f"{topic}: state_topic must be a topic without wildcards")
    if not config.get("unique_id"):
        problems.append(f"{topic}: no unique_id (needed for the device registry)")
    device = config.get("device")
    if device is not None and not (device.get("identifiers") or device.get("connections")):
        problems.append(f"{topic}: device needs identifiers or connections")
    if "availability" in config and "availability_topic" in config:
        problems.append(f"{topic}: availability and availability_topic are exclusive")
    if "origin" in config and not config["origin"].get("name"):
        problems.append(f"{topic}: origin needs a name")
    name = config.get("name")
    if device is not None and isinstance(name, str) and name.startswith(device.get("name", "\0")):
        problems.append(f"{topic}: the entity name repeats the device name")
    device_class, unit = config.get("device_class"), config.get("unit_of_measurement")
    state_class, options = config.get("state_class"), config.get("options")
    if component == "sensor":
        if device_class is not None and device_class not in SENSOR_UNITS:
            problems.append(f"{topic}: device class {device_class!r} not checked here")
        elif (
            device_class is not None and unit is not None and unit not in SENSOR_UNITS[device_class]
        ):
            problems.append(f"{topic}: unit {unit!r} is not valid with {device_class!r}")
        if state_class is not None and state_class not in STATE_CLASSES:
            problems.append(f"{topic}: unknown state class {state_class!r}")
        allowed = DEVICE_CLASS_STATE_CLASSES.get(device_class or "")
        if state_class is not None and allowed is not None and state_class not in allowed:
            problems.append(f"{topic}: state class {state_class!r} not allowed for {device_class}")
        if options is not None:
            if not options:
                problems.append(f"{topic}: an empty options list")
            if state_class or unit:
                problems.append(f"{topic}: options with a state class or unit")
            if device_class != "enum":
                problems.append(f"{topic}: options need device class enum")
        if device_class == "enum" and not options:
            problems.append(f"{topic}: an enum sensor needs options")
    elif device_class is not None and device_class not in BINARY_SENSOR_CLASSES:
        problems.append(f"{topic}: unknown binary sensor device class {device_class!r}")
    return problems


def state_problem(component: str, config: dict[str, Any], payload: str) -> str | None:
    """Why the ``component`` entity could not read ``payload`` from its state topic, or None."""
    if payload == PAYLOAD_NONE:
        return None
    if config["state_topic"].endswith("/config"):
        return "state topic is a config topic"
    if component == "binary_sensor":
        if payload not in (config.get("payload_on", "ON"), config.get("payload_off", "OFF")):
            return f"{payload!r} is neither payload_on nor payload_off"
        return None
    if config.get("options") is not None:
        return None if payload in config["options"] else f"{payload!r} is not an option"
    if config.get("unit_of_measurement") or config.get("state_class"):
        try:
            number = float(payload)
        except ValueError:
            return f"{payload!r} is not a number"
        return None if math.isfinite(number) else f"{payload!r} is not finite"
    return None if len(payload) <= 255 else "a text state longer than 255 characters"


async def test_discovery_configs_have_what_home_assistant_requires(depot, broker):
    async with recording(broker.port, "homeassistant/#") as discovery, recording(
        broker.port, f"{PREFIX}/#"
    ) as states:  # fmt: skip
        depot.publisher.start()
        await states.until(charging, 10, "both chargers charging")
        await discovery.until(lambda r: len(r.messages) > 20, 3, "the discovery configs")
    configs = {m.topic: json.loads(m.payload) for m in discovery.messages}
    for topic, config in configs.items():
        assert home_assistant_problems(topic, config) == [], config
    # the devices: one per charger and meter, via the site's device, which exists too
    devices: dict[str, dict[str, Any]] = {}
    for config in configs.values():
        devices[config["device"]["identifiers"][0]] = config["device"]
    names = {d["name"] for d in devices.values()}
    assert {"c1", "c2", "grid"} <= names
    site = next(d for d in devices.values() if "via_device" not in d)
    for device in devices.values():
        assert device.get("via_device") in (None, site["identifiers"][0])
    c1 = next(d for d in devices.values() if d["name"] == "c1")
    assert c1["manufacturer"].startswith("Teltonika") and "EVC2" in c1["model"]
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(unique_ids) == len(set(unique_ids))
    # the entities the issue names, with the right classes and units
    by_key = {c["unique_id"].rsplit("charger_c1_", 1)[-1]: c for c in configs.values()}
    expected = {
        "current_l1": ("sensor", "current", "measurement", "A", "Current L1"),
        "power": ("sensor", "power", "measurement", "W", "Power"),
        "session_energy": ("sensor", "energy", "total_increasing", "kWh", "Session energy"),
        "setpoint": ("sensor", "current", "measurement", "A", "Setpoint"),
        "vehicle_state": ("sensor", "enum", None, None, "Vehicle"),
        "online": ("binary_sensor", "connectivity", None, None, "Online"),
    }
    for key, (component, device_class, state_class, unit, name) in expected.items():
        config = by_key[key]
        topic = next(t for t, c in configs.items() if c is config)
        assert f"/{component}/" in topic
        assert config["device_class"] == device_class and config["name"] == name
        assert config.get("state_class") == state_class
        assert config.get("unit_of_measurement") == unit
        assert config["availability_topic"] == f"{PREFIX}/status"
    assert "charging" in by_key["vehicle_state"]["options"]
    # every entity can read what its state topic carries, and the status says available
    assert states.latest(f"{PREFIX}/status").payload == by_key["online"]["payload_available"]
    for topic, config in configs.items():
        message = states.latest(config["state_topic"])
        assert message is not None, config["state_topic"]
        component = topic.split("/")[1]
        assert state_problem(component, config, message.payload) is None, (config, message)


async def test_home_assistant_starting_gets_the_discovery_again(depot, broker):
    config_topic = "homeassistant/sensor/ampgate_depot/charger_c1_setpoint/config"
    async with recording(broker.port, "homeassistant/sensor/#") as rec:
        depot.publisher.start()
        await rec.until(lambda r: bool(r.on(config_topic)), 10, "the discovery config")
        await asyncio.sleep(0.5)
        before = len(rec.on(config_topic))
        async with aiomqtt.Client("127.0.0.1", broker.port) as homeassistant:
            await homeassistant.publish("homeassistant/status", "online", qos=1)
        await rec.until(lambda r: len(r.on(config_topic)) > before, 3, "the config again")


async def test_the_checks_see_what_home_assistant_would_refuse():
    """The rules find real mistakes (so a passing discovery test means something)."""
    base = {
        "name": "Power",
        "unique_id": "u1",
        "state_topic": "a/b",
        "device": {"identifiers": ["d"], "name": "c1"},
    }
    ok = "homeassistant/sensor/node/obj/config"
    assert (
        home_assistant_problems(ok, {**base, "device_class": "power", "unit_of_measurement": "W"})
        == []
    )
    bad = [
        (ok, {**base, "device_class": "power", "unit_of_measurement": "A"}),
        (ok, {**base, "device_class": "energy", "unit_of_measurement": "kWh",
              "state_class": "measurement"}),
        (ok, {**base, "device_class": "enum"}),
        (ok, {**base, "device_class": "enum", "options": ["a"], "unit_of_measurement": "A"}),
        (ok, {k: v for k, v in base.items() if k != "state_topic"}),
        (ok, {k: v for k, v in base.items() if k != "unique_id"}),
        (ok, {**base, "device": {"name": "c1"}}),
        (ok, {**base, "name": "c1 Power"}),
        ("homeassistant/sensor/no de/obj/config", base),
        ("homeassistant/binary_sensor/node/obj/config", {**base, "device_class": "online"}),
    ]  # fmt: skip
    for topic, config in bad:
        assert home_assistant_problems(topic, config), config
    assert state_problem("sensor", {"state_topic": "t", "unit_of_measurement": "A"}, "n/a")
    assert state_problem("binary_sensor", {"state_topic": "t"}, "true")  # ON / OFF by default
    assert state_problem("sensor", {"state_topic": "t", "options": ["x"]}, "y")
    assert state_problem("sensor", {"state_topic": "t", "unit_of_measurement": "A"}, "None") is None
