"""An energy meter of any shipped map, measuring a building load plus the chargers wired behind it.

The load profile is a callable ``time -> (I1, I2, I3)`` in amps per site phase (import positive; a
negative current is export, e.g. PV). Chargers (anything with ``site_currents(now)``, such as
`Evc2Simulator`) add their draw on the site phase they are wired to. Power is V·I per phase
(power factor 1, an assumption of the simulator), energies integrate power between requests.

Fields are served only where the map has them; a single-phase map's L2/L3 fields, if present,
serve their "no value" sentinel (ABB), or 0 if the map gives none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ampgate.codec import RegisterMap, load_map
from ampgate.sim.device import Clock, ModbusExceptionCode, ReadAnswer, WriteAnswer
from ampgate.sim.registers import RegisterImage, energy_in_unit

PhaseCurrents = tuple[float, float, float]
LoadProfile = Callable[[float], PhaseCurrents]


class CurrentSource(Protocol):
    """Something drawing current behind a meter (a charger)."""

    def site_currents(self, now: float | None = None) -> PhaseCurrents:
        """Amps on site phases 1, 2, 3 at ``now``."""
        ...


def constant_load(l1: float, l2: float = 0.0, l3: float = 0.0) -> LoadProfile:
    """A load profile drawing fixed currents on each phase."""

    def profile(_now: float) -> PhaseCurrents:
        return (l1, l2, l3)

    return profile


class MeterSimulator:
    """A meter of model ``model_id`` (any id from `ampgate.codec.list_models` of kind meter)."""

    def __init__(
        self,
        model_id: str,
        load_profile: LoadProfile,
        clock: Clock,
        *,
        chargers: Sequence[CurrentSource] = (),
        voltages: tuple[float, float, float] = (230.0, 230.0, 230.0),
        frequency: float = 50.0,
        energy_import_kwh: float = 1000.0,
        energy_export_kwh: float = 0.0,
        rmap: RegisterMap | None = None,
    ) -> None:
        """Start measuring at ``clock()`` with the given energy counter readings."""
        self.map = rmap if rmap is not None else load_map(model_id)
        if self.map.model.kind != "meter":
            raise ValueError(f"model {self.map.id!r} is a {self.map.model.kind}, not a meter")
        self.image = RegisterImage(self.map)
        self.load_profile = load_profile
        self.clock = clock
        self.chargers: list[CurrentSource] = list(chargers)
        self.voltages = voltages
        self.frequency = frequency
        self.phases = self.map.model.phases
        self._import_wh = energy_import_kwh * 1000.0
        self._export_wh = energy_export_kwh * 1000.0
        self._now = clock()
        self._currents: PhaseCurrents = (0.0, 0.0, 0.0)
        self._sample(self._now)
        self._publish()

    def attach(self, charger: CurrentSource) -> None:
        """Wire a charger behind this meter: its draw is measured from now on."""
        self.chargers.append(charger)

    def read(self, function: int, address: int, count: int) -> ReadAnswer:
        """Answer a read as the meter would (function, quantity, holes checked per the map)."""
        self.advance()
        return self.image.read(function, address, count)

    def write(self, address: int, values: Sequence[int]) -> WriteAnswer:
        """Write holding registers; the shipped meter maps have none writable (exception 2)."""
        result = self.image.check_write(address, values)
        if isinstance(result, ModbusExceptionCode):
            return result
        self.image.store_words(3, address, values)
        return None

    @property
    def currents(self) -> PhaseCurrents:
        """Signed current per site phase at the last step (import positive)."""
        return self._currents

    @property
    def powers(self) -> PhaseCurrents:
        """Signed active power per site phase at the last step, W."""
        return tuple(v * i for v, i in zip(self.voltages, self._currents, strict=True))  # type: ignore[return-value]

    @property
    def energy_import_kwh(self) -> float:
        """Imported energy counter, kWh (unrounded)."""
        return self._import_wh / 1000.0

    @property
    def energy_export_kwh(self) -> float:
        """Exported energy counter, kWh (unrounded)."""
        return self._export_wh / 1000.0

    def advance(self, now: float | None = None) -> None:
        """Integrate energy up to ``now`` (default ``clock()``) and take a new sample.

        Energy uses the power of the previous sample over the whole interval (a meter polled
        every few seconds makes that error small; the chargers themselves integrate exactly).
        """
        now = self.clock() if now is None else now
        dt = now - self._now
        if dt > 0:
            total = sum(self.powers)
            if total >= 0:
                self._import_wh += total * dt / 3600.0
            else:
                self._export_wh += -total * dt / 3600.0
            self._now = now
        self._sample(self._now)
        self._publish()

    def _sample(self, now: float) -> None:
        load = self.load_profile(now)
        totals = [float(load[0]), float(load[1]), float(load[2])]
        for charger in self.chargers:
            for i, amps in enumerate(charger.site_currents(now)):
                totals[i] += amps
        if self.phases == 1:
            totals[1] = totals[2] = 0.0
        self._currents = (totals[0], totals[1], totals[2])

    def _publish(self) -> None:
        image = self.image
        powers = self.powers
        for i in range(3):
            absent = i >= self.phases
            for name, value in (
                (f"voltage_l{i + 1}", self.voltages[i]),
                (f"current_l{i + 1}", abs(self._currents[i])),
                (f"power_l{i + 1}", powers[i]),
            ):
                self._serve(name, None if absent else value)
        self._serve("power_total", sum(powers))
        self._serve("frequency", self.frequency)
        for name, wh in (("energy_import", self._import_wh), ("energy_export", self._export_wh)):
            if self.map.has_field(name):
                image.set(name, energy_in_unit(self.map.field(name), wh))

    def _serve(self, name: str, value: float | None) -> None:
        if not self.map.has_field(name):
            return
        if value is None and not self.map.field(name).missing:
            value = 0.0
        self.image.set(name, value)
