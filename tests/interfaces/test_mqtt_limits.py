"""External limits over MQTT against a real broker: an energy manager publishes
``<prefix>/group/<group>/limit/set``; the simulated chargers are lowered within two cycles and
raised again when the limit expires; a bad payload is answered on ``limit/result``."""

from __future__ import annotations

import asyncio
import json
import time

import aiomqtt

from ampgate.config import check_config_text
from ampgate.gateway.loop import Gateway
from ampgate.interfaces.control import ControlChannel
from ampgate.interfaces.mqtt import MqttPublisher
from gateway.simsite import start_site
from interfaces.broker import recording
from interfaces.mqtt_site import PREFIX, mqtt_site_text

LIMIT_SET = f"{PREFIX}/group/main/limit/set"
RESULT = f"{PREFIX}/group/main/limit/result"


async def test_a_limit_over_mqtt_lowers_the_chargers_and_expires_back(broker):
    site = await start_site(2, limit=32, building=(4.0, 4.0, 4.0))
    text = mqtt_site_text(site, broker.port).replace(
        "fallback_load = 8\n", 'fallback_load = 8\nexternal_limits = ["mqtt"]\n'
    )
    config, problems = check_config_text(text, "depot.toml")
    assert config is not None and config.mqtt is not None, problems
    channel = ControlChannel()
    gateway = Gateway(config, control=channel)
    publisher = MqttPublisher(
        config.mqtt, gateway.store, site="depot", backoff=(0.2, 1.0), limits=(config, channel)
    )
    await gateway.start()
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        async with (
            recording(broker.port, f"{PREFIX}/group/main/limit/#") as rec,
            aiomqtt.Client("127.0.0.1", broker.port) as manager,
        ):
            publisher.start()
            deadline = time.monotonic() + 8
            while sum(rt.setpoint or 0 for rt in gateway.chargers.values()) < 20:
                assert time.monotonic() < deadline, "the cars never reached their share"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # the publisher has subscribed to limit/set by now
            await manager.publish(LIMIT_SET, json.dumps({"amps": 12, "valid_for": 2}), qos=1)
            await rec.until(lambda r: r.latest(RESULT) is not None, 5, "a result")
            assert json.loads(rec.latest(RESULT).payload) == {"ok": True}
            await asyncio.sleep(2 * config.dlm.cycle_seconds + 0.3)
            lowered = sum(rt.setpoint or 0 for rt in gateway.chargers.values())
            assert lowered <= 12 - 4 + 0.5, lowered  # 12 A minus about 4 A of building
            assert gateway.events.counts.get("external_limit_set") == 1
            deadline = time.monotonic() + 6
            while gateway.events.counts.get("external_limit_expired", 0) == 0:
                assert time.monotonic() < deadline, "the limit never expired"
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)
            assert sum(rt.setpoint or 0 for rt in gateway.chargers.values()) > lowered

            for payload, field in (
                ('{"amps": 40, "valid_for": 5}', "amps"),  # above the 32 A fuse
                ('{"amps": 10}', "valid_for"),
                ('{"amps": 10, "valid_for": 5, "colour": 1}', "colour"),
                ("not json", "body"),
            ):
                before = len(rec.on(RESULT))
                await manager.publish(LIMIT_SET, payload, qos=1)
                await rec.until(lambda r, n=before: len(r.on(RESULT)) > n, 5, payload)
                result = json.loads(rec.on(RESULT)[-1].payload)
                assert (result["ok"], result["status"], result["field"]) == (False, 422, field)
            await manager.publish(
                f"{PREFIX}/group/nowhere/limit/set", '{"amps": 10, "valid_for": 5}', qos=1
            )
            await asyncio.sleep(0.5)
            assert gateway.events.counts.get("external_limit_set") == 1  # nothing else was set
    finally:
        await publisher.stop()
        stop.set()
        await asyncio.wait_for(task, 3)
        await gateway.shutdown()
        await site.stop()
