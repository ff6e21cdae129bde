"""What the loop publishes for metrics, from a real poll of simulated devices over Modbus TCP."""

from __future__ import annotations

import time

from prometheus_client import generate_latest

from ampgate.config import check_config_text
from ampgate.gateway.loop import Gateway
from ampgate.interfaces.metrics import build_registry
from ampgate.sim import ElectricVehicle, Evc2Simulator, MeterSimulator, serve_tcp

SITE = """
[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {port}
timeout = 0.3
[groups.home]
limit = 25
[meters.grid]
model = "eastron-sdm120"
bus = "lan"
unit_id = 10
group = "home"
location = "including"
[chargers.garage]
bus = "lan"
unit_id = 1
group = "home"
phases = 1
[dlm]
cycle_seconds = 0.2
watchdog_seconds = 2
ramp_up_amps_per_second = 40
[http]
enabled = false
"""


async def test_a_single_phase_meter_reports_its_total_power_in_metrics():
    # SDM120: one active-power register (power_l1) and no power_total field in the map
    clock = time.monotonic
    charger = Evc2Simulator(clock)
    charger.plug_in(ElectricVehicle(phases=1, max_current=16, reaction_delay=0.05))
    meter = MeterSimulator(
        "eastron-sdm120", lambda _now: (5.0, 0.0, 0.0), clock, chargers=[charger]
    )
    server = await serve_tcp({1: charger, 10: meter}, host="127.0.0.1", port=0)
    config, problems = check_config_text(SITE.format(port=server.port), "sdm120.toml")
    assert config is not None, problems
    gateway = Gateway(config)
    try:
        await gateway.start()
        for _ in range(3):
            await gateway.cycle()
        (snap,) = [d for d in gateway.store.latest().devices if d.name == "grid"]
        readings = snap.meter
        assert readings is not None
        assert readings.power_watts.l1 is not None and readings.power_watts.l1 > 0
        assert readings.total_power_watts == readings.power_watts.l1
        text = generate_latest(build_registry(gateway.store)).decode()
        total = [
            line
            for line in text.splitlines()
            if line.startswith("ampgate_meter_total_power_watts{") and 'device="grid"' in line
        ]
        assert len(total) == 1 and float(total[0].rsplit(" ", 1)[1]) > 0, total
    finally:
        await gateway.shutdown(write=False)
        await server.stop()
