"""The EVC2 simulator served over Modbus TCP to pymodbus' client (real peer), on a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient

from ampgate.codec import decode_field, load_map
from ampgate.sim import ElectricVehicle, Evc2Simulator, ManualClock, serve_tcp

EVC2 = load_map("teltocharge-evc2")


def _value(words: list[int], name: str) -> object:
    field = EVC2.field(name)
    return decode_field(EVC2, field, words[field.address : field.address + field.words]).value


class Peer:
    """A pymodbus TCP client talking to one simulated charger at unit id 1."""

    def __init__(self, client: AsyncModbusTcpClient, charger: Evc2Simulator) -> None:
        self.client = client
        self.charger = charger

    async def registers(self) -> list[int]:
        rr = await self.client.read_holding_registers(0, count=45, device_id=1)
        assert not rr.isError(), rr
        return rr.registers

    async def value(self, name: str) -> object:
        return _value(await self.registers(), name)

    async def write(self, address: int, value: int) -> int | None:
        """Write one register; the exception code, or None on success."""
        rr = await self.client.write_register(address, value, device_id=1)
        return rr.exception_code if rr.isError() else None


@pytest.fixture
async def peer(clock: ManualClock) -> AsyncIterator[Peer]:
    charger = Evc2Simulator(clock)
    server = await serve_tcp({1: charger})
    client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=1, retries=0)
    assert await client.connect()
    try:
        yield Peer(client, charger)
    finally:
        client.close()
        await server.stop()


async def test_identity_serial_words_and_defaults(peer: Peer) -> None:
    words = await peer.registers()
    assert words[9] == 21571
    assert words[24:26] == [52501, 1883]
    assert _value(words, "serial_number") == 123456789
    assert _value(words, "communication_timeout") == 30
    assert _value(words, "failsafe_current") == 6
    assert _value(words, "evse_status") == EVC2.enum_of("evse_status")[7]  # A: no EV


async def test_read_only_register_refuses_writes_with_exception_2(peer: Peer) -> None:
    for address in (0, 9, 12, 24, 38, 41):
        assert await peer.write(address, 1) == 2
    assert (await peer.registers())[9] == 21571


@pytest.mark.parametrize("amps", [33, 3, 5, 100])
async def test_out_of_range_setpoint_refused_with_exception_3(peer: Peer, amps: int) -> None:
    assert await peer.write(15, 16) is None
    assert await peer.write(15, amps) == 3
    assert await peer.value("amps_to_use") == 16
    assert await peer.write(19, 601) == 3
    assert await peer.write(20, 4) == 3


async def test_fc16_write_is_all_or_nothing(peer: Peer) -> None:
    rr = await peer.client.write_registers(19, [10, 40], device_id=1)  # timeout ok, failsafe 40 not
    assert rr.isError() and rr.exception_code == 3
    assert await peer.value("communication_timeout") == 30


async def test_lifetime_energy_is_served_low_word_first(clock: ManualClock) -> None:
    charger = Evc2Simulator(clock, lifetime_energy_kwh=50_000_000.0)  # raw 5e9: needs 3 words
    server = await serve_tcp({1: charger})
    client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=1, retries=0)
    try:
        assert await client.connect()
        words = (await client.read_holding_registers(41, count=4, device_id=1)).registers
        raw = 5_000_000_000
        assert words == [raw & 0xFFFF, (raw >> 16) & 0xFFFF, (raw >> 32) & 0xFFFF, 0]
        assert decode_field(EVC2, "lifetime_energy", words).value == 50_000_000.0
    finally:
        client.close()
        await server.stop()


async def test_ev_draws_after_its_reaction_delay(peer: Peer, clock: ManualClock) -> None:
    assert await peer.write(15, 16) is None
    peer.charger.plug_in(ElectricVehicle(phases=3, max_current=32, reaction_delay=2.0))
    clock.advance(1.9)
    words = await peer.registers()
    assert _value(words, "current_l1") == 0.0
    assert _value(words, "evse_status") == EVC2.enum_of("evse_status")[1]  # waiting for EV
    clock.advance(0.2)
    words = await peer.registers()
    assert [_value(words, f"current_l{i}") for i in (1, 2, 3)] == [16.0, 16.0, 16.0]
    assert _value(words, "active_power") == 3 * 230 * 16
    assert _value(words, "evse_status") == EVC2.enum_of("evse_status")[0]
    assert _value(words, "iec_state") == EVC2.enum_of("iec_state")[4]  # C2
    assert _value(words, "charge_point_state") == EVC2.enum_of("charge_point_state")[3]
    # Lowering is also followed after the delay; the car's own maximum caps the draw.
    assert await peer.write(15, 10) is None
    clock.advance(2.0)
    assert await peer.value("current_l2") == 10.0


async def test_one_phase_car_and_car_maximum(peer: Peer, clock: ManualClock) -> None:
    assert await peer.write(15, 32) is None
    peer.charger.plug_in(ElectricVehicle(phases=1, max_current=13, reaction_delay=0.5))
    clock.advance(1)
    words = await peer.registers()
    assert [_value(words, f"current_l{i}") for i in (1, 2, 3)] == [13.0, 0.0, 0.0]
    assert _value(words, "phase_connected") == EVC2.enum_of("phase_connected")[0]


async def test_setpoint_below_6a_means_not_charging(peer: Peer, clock: ManualClock) -> None:
    assert await peer.write(15, 16) is None
    peer.charger.plug_in(ElectricVehicle(reaction_delay=1.0))
    clock.advance(1.5)
    assert await peer.value("current_l1") == 16.0
    assert await peer.write(15, 0) is None
    clock.advance(1.5)
    words = await peer.registers()
    assert _value(words, "current_l1") == 0.0
    assert _value(words, "evse_status") == EVC2.enum_of("evse_status")[2]  # B2: was charging
    assert _value(words, "charge_point_state") == EVC2.enum_of("charge_point_state")[4]


async def test_watchdog_drops_to_failsafe_and_recovers(peer: Peer, clock: ManualClock) -> None:
    assert await peer.write(20, 8) is None
    assert await peer.write(19, 10) is None
    assert await peer.write(15, 20) is None
    peer.charger.plug_in(ElectricVehicle(max_current=32, reaction_delay=1.0))
    clock.advance(5)
    assert await peer.value("current_l1") == 20.0
    # No request for 10 s after the read at t+5: failsafe at t+15, the car follows 1 s later.
    clock.advance(9.9)
    assert not peer.charger.watchdog_expired
    clock.advance(0.2)
    assert peer.charger.watchdog_expired
    assert peer.charger.current == 20.0
    clock.advance(1.0)
    assert peer.charger.current == 8.0
    words = await peer.registers()  # this read is communication again
    assert _value(words, "current_l1") == 8.0
    assert not peer.charger.watchdog_expired
    clock.advance(1.0)
    assert await peer.value("current_l1") == 20.0


async def test_watchdog_off_keeps_the_last_setpoint(peer: Peer, clock: ManualClock) -> None:
    assert await peer.write(19, 0) is None
    assert await peer.write(15, 20) is None
    peer.charger.plug_in(ElectricVehicle(max_current=32, reaction_delay=1.0))
    clock.advance(3600)
    assert await peer.value("current_l3") == 20.0


async def test_reg16_stops_and_starts_the_session(peer: Peer, clock: ManualClock) -> None:
    assert await peer.write(15, 16) is None
    peer.charger.plug_in(ElectricVehicle(reaction_delay=1.0))
    clock.advance(2)
    assert await peer.value("current_l1") == 16.0
    assert await peer.write(16, 1) is None
    clock.advance(2)
    words = await peer.registers()
    assert _value(words, "current_l1") == 0.0
    assert _value(words, "charge_point_state") == EVC2.enum_of("charge_point_state")[6]
    assert await peer.write(16, 2) is None
    clock.advance(2)
    assert await peer.value("current_l1") == 16.0
    assert await peer.write(16, 3) == 3


async def test_energy_counters_integrate_power(peer: Peer, clock: ManualClock) -> None:
    assert await peer.write(19, 0) is None
    assert await peer.write(15, 16) is None
    peer.charger.plug_in(ElectricVehicle(reaction_delay=0.0))
    clock.advance(3600)
    words = await peer.registers()
    # 3 × 230 V × 16 A for one hour = 11.04 kWh, served in hundredths of a kWh.
    assert _value(words, "session_energy") == 11.04
    assert _value(words, "lifetime_energy") == 11.04
    assert _value(words, "session_duration") == 3600
    peer.charger.unplug()
    peer.charger.plug_in(ElectricVehicle(reaction_delay=0.0))
    clock.advance(1800)
    words = await peer.registers()
    assert _value(words, "session_energy") == 5.52
    assert _value(words, "lifetime_energy") == 16.56


async def test_error_bits_stop_charging_and_warnings_are_served(
    peer: Peer, clock: ManualClock
) -> None:
    assert await peer.write(15, 16) is None
    peer.charger.plug_in(ElectricVehicle(reaction_delay=0.0))
    clock.advance(1)
    peer.charger.set_warning_bits(["temperature warning"])
    peer.charger.set_error_bits(1 << 4)
    words = await peer.registers()
    assert _value(words, "warning_code") == frozenset({EVC2.bits_of("warning_code")[1]})
    assert _value(words, "error_code") == frozenset({EVC2.bits_of("error_code")[4]})
    assert _value(words, "current_l1") == 0.0
    assert _value(words, "evse_status") == EVC2.enum_of("evse_status")[8]
    assert _value(words, "iec_state") == EVC2.enum_of("iec_state")[8]


def test_rotation_maps_charger_phases_to_site_phases(clock: ManualClock) -> None:
    charger = Evc2Simulator(clock, rotation=(2, 3, 1), amps_to_use=10)
    charger.plug_in(ElectricVehicle(phases=1, reaction_delay=0.0))
    clock.advance(1)
    assert charger.phase_currents() == (10.0, 0.0, 0.0)
    assert charger.site_currents() == (0.0, 10.0, 0.0)
    with pytest.raises(ValueError, match="rotation"):
        Evc2Simulator(clock, rotation=(1, 1, 2))


async def test_socket_lock_modes_drive_lock_status(peer: Peer, clock: ManualClock) -> None:
    # Reg 18: 0 auto lock (locked while a car is connected), 1 always lock, 2 force unlock.
    assert await peer.value("lock_status") == 0  # auto, no car
    assert await peer.write(18, 1) is None
    assert await peer.value("lock_status") == 1  # always lock, even without a car
    assert await peer.write(18, 0) is None
    peer.charger.plug_in()
    assert await peer.value("lock_status") == 1  # auto lock with a car
    assert await peer.write(18, 2) is None
    assert await peer.value("lock_status") == 0  # force unlock


async def test_force_unlock_resets_on_state_a(peer: Peer, clock: ManualClock) -> None:
    # Reg 18 = 2 "force unlock in auto mode (resets on state A)": unplugging ends it.
    peer.charger.plug_in()
    assert await peer.write(18, 2) is None
    clock.advance(1)
    assert await peer.value("socket_lock_mode") == 2
    peer.charger.unplug()
    assert await peer.value("socket_lock_mode") == 0
    peer.charger.plug_in()
    assert await peer.value("lock_status") == 1  # auto lock again for the next car
