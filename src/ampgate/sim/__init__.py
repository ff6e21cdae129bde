"""ampgate.sim: simulated EVC2 chargers and energy meters, served over Modbus TCP and RTU.

Device models are transport-agnostic and take an injected clock (seconds), so tests and the demo
can run a site faster than real time. Registers are served exactly as the shipped register maps
say (type, word order, scale, function code, holes, max registers per request).

```python
from ampgate.sim import (
    Evc2Simulator, ElectricVehicle, MeterSimulator, constant_load,
    SpeedClock, ManualClock, FaultyDevice, Faults, ModbusExceptionCode,
    serve_tcp, serve_rtu, run_simulation, METER_UNIT_ID,
)

clock = SpeedClock(speed=10)                      # 10 simulated s per real s; ManualClock for tests
charger = Evc2Simulator(clock, rotation=(1, 2, 3))  # serial 123456789, reg 9 = 21571
charger.plug_in(ElectricVehicle(phases=3, max_current=16, reaction_delay=2))
charger.unplug(); charger.set_error_bits(["overcurrent error"]); charger.set_warning_bits(0)
meter = MeterSimulator("eastron-sdm630", constant_load(10, 12, 8), clock, chargers=[charger])

device.read(function, address, count) -> list[int] | ModbusExceptionCode
device.write(address, values) -> None | ModbusExceptionCode

server = await serve_tcp({1: charger, 100: meter, 7: FaultyDevice()}, port=0)  # 7: silent
server.port; server.drop_connections(); await server.stop()

rtu = await serve_rtu({1: charger}, "/dev/pts/7", baudrate=9600, line_emulation=True)
rtu.stats  # LineStats: frames_received, answered, refused_in_silent_interval, ignored,
           # bad_frames, wire_time_s, last_wire_time_s, last_response_delay_s
await rtu.stop()

sim = await start_simulation(chargers=2, meter_model="eastron-sdm630", tcp_port=0,
                             serial_port=None, speed=10)   # chargers 1..N, meter METER_UNIT_ID=100
sim.describe(); sim.chargers[1]; sim.meter; sim.tcp.port; await sim.stop()
await run_simulation(2, "eastron-sdm630", 5020, None, on_started=print_it)  # until cancelled
```

Line emulation (RTU): an answer is written when its last character would arrive at the baud rate
(11 bits per character, 3.5-character silent interval, 1.75 ms above 19200 baud); a request that
starts inside the silent interval after the previous frame gets no answer and is counted. Clients
must therefore leave a silent interval between an answer and the next request, as on a real bus.

Faults (`Faults` on a `FaultyDevice`, changeable at run time): ``silent`` (never answers),
``exception`` (answers that exception code), ``corrupt_crc`` (RTU: answer with a wrong CRC),
``drop_connection`` (TCP: close client connections instead of answering).
"""

from ampgate.sim.device import (
    Clock,
    Faults,
    FaultyDevice,
    ManualClock,
    ModbusExceptionCode,
    SimulatedDevice,
    SpeedClock,
)
from ampgate.sim.evc2 import ElectricVehicle, Evc2Simulator
from ampgate.sim.meter import LoadProfile, MeterSimulator, constant_load
from ampgate.sim.registers import RegisterImage
from ampgate.sim.rtu import LineStats, RtuSimServer, serve_rtu, transaction_wire_time
from ampgate.sim.site import (
    METER_UNIT_ID,
    Simulation,
    building_load,
    run_simulation,
    start_simulation,
)
from ampgate.sim.tcp import TcpSimServer, serve_tcp

__all__ = [
    "METER_UNIT_ID",
    "Clock",
    "ElectricVehicle",
    "Evc2Simulator",
    "Faults",
    "FaultyDevice",
    "LineStats",
    "LoadProfile",
    "ManualClock",
    "MeterSimulator",
    "ModbusExceptionCode",
    "RegisterImage",
    "RtuSimServer",
    "SimulatedDevice",
    "Simulation",
    "SpeedClock",
    "TcpSimServer",
    "building_load",
    "constant_load",
    "run_simulation",
    "serve_rtu",
    "serve_tcp",
    "start_simulation",
    "transaction_wire_time",
]
