"""An energy meter of any shipped map, measuring a building load plus the chargers wired behind it.

The load profile is a callable ``time -> (I1, I2, I3)`` in amps per site phase (import positive; a
negative current is export, e.g. PV). Chargers (anything with ``site_currents(now)``, such as
`Evc2Simulator`) add their draw on the site phase they are wired to. Power is V·I per phase
(power factor 1, an assumption of the simulator), energies integrate power between requests.

Fields are served only where the map has them; a single-phase map's L2/L3 fields, if present,
serve their "no value" sentinel (ABB), or 0 if the map gives none.

Real meters are imperfect, and so can this one be: ``noise_a`` adds a measurement jitter to the
served currents (a real meter under load never repeats the same value), ``update_interval``
refreshes the registers only that often, ``lag`` serves what flowed that many seconds earlier
(averaging), and :meth:`MeterSimulator.freeze` keeps answering with the values of that moment
(a meter whose measurement hangs while its Modbus side still answers).
"""

from __future__ import annotations

import random
from collections import deque
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
        noise_a: float = 0.0,
        update_interval: float = 0.0,
        lag: float = 0.0,
        seed: int = 1,
        rmap: RegisterMap | None = None,
    ) -> None:
        """Start measuring at ``clock()`` with the given energy counter readings.

        ``noise_a``: each served current is off by up to ± this many amps (uniform, from a
        generator seeded with ``seed``). ``update_interval``: seconds between register
        refreshes (0: every read). ``lag``: the served values are those of ``lag`` s before.
        """
        if noise_a < 0 or update_interval < 0 or lag < 0:
            raise ValueError(
                f"noise_a {noise_a}, update_interval {update_interval} and lag {lag} must be >= 0"
            )
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
        self.noise_a = noise_a
        self.update_interval = update_interval
        self.lag = lag
        self.frozen = False
        self.overrides: dict[str, float | None] = {}
        """Values served instead of the measured ones (`override`)."""
        self._random = random.Random(seed)
        self._import_wh = energy_import_kwh * 1000.0
        self._export_wh = energy_export_kwh * 1000.0
        self._now = clock()
        self._currents: PhaseCurrents = (0.0, 0.0, 0.0)
        self._served: PhaseCurrents = (0.0, 0.0, 0.0)
        self._history: deque[tuple[float, PhaseCurrents]] = deque()
        self._published_at = -float("inf")
        self._sample(self._now)
        self._refresh(self._now)

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
        """Signed current per site phase really flowing at the last step (import positive)."""
        return self._currents

    @property
    def served_currents(self) -> PhaseCurrents:
        """Signed current per site phase the registers show (lagged, noisy or frozen)."""
        return self._served

    @property
    def powers(self) -> PhaseCurrents:
        """Signed active power per site phase really flowing at the last step, W."""
        v, i = self.voltages, self._currents
        return (v[0] * i[0], v[1] * i[1], v[2] * i[2])

    def freeze(self, frozen: bool = True) -> None:
        """Keep serving the present register values (``False``: measure again)."""
        self.advance()
        self.frozen = frozen
        if not frozen:
            self._published_at = -float("inf")
            self._refresh(self._now)

    def override(self, **values: float | None) -> None:
        """Serve these values (engineering units; None = the field's "no value" sentinel, NaN,
        ±inf allowed for float fields) instead of the measured ones until the next call;
        ``override()`` measures again. A meter glitch: NaN, infinity, sentinels, zeros."""
        for name in values:
            self.map.field(name)  # MapError naming the close matches for a wrong name
        self.overrides = dict(values)
        self._published_at = -float("inf")
        self._refresh(self._now)

    @property
    def energy_import_kwh(self) -> float:
        """Imported energy counter, kWh (unrounded)."""
        return self._import_wh / 1000.0

    @property
    def energy_export_kwh(self) -> float:
        """Exported energy counter, kWh (unrounded)."""
        return self._export_wh / 1000.0

    def set_energy(self, import_kwh: float, export_kwh: float | None = None) -> None:
        """Make the energy counters read these values from now on (a meter glitching to 0, a
        reset, or a replaced meter: the counter may go backwards)."""
        self.advance()
        self._import_wh = import_kwh * 1000.0
        if export_kwh is not None:
            self._export_wh = export_kwh * 1000.0
        self._published_at = -float("inf")
        self._refresh(self._now)

    def settle(self) -> None:
        """Show the present load at once, as a meter that has been measuring it for a while.

        A simulator built before the loads behind it were attached would otherwise show
        none of them until its next register refresh.
        """
        self._history.clear()
        self._published_at = -float("inf")
        self._sample(self._now)
        self._refresh(self._now)

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
        self._refresh(self._now)

    def _refresh(self, now: float) -> None:
        """Publish the values the meter shows at ``now`` (unless frozen or not yet due)."""
        history = self._history
        history.append((now, self._currents))
        while len(history) > 1 and history[1][0] <= now - self.lag + 1e-9:
            history.popleft()  # keep the newest sample at least `lag` old first
        if self.frozen or now - self._published_at < self.update_interval - 1e-9:
            return
        self._published_at = now
        shown = history[0][1] if history[0][0] <= now - self.lag + 1e-9 else self._currents
        if self.noise_a > 0:
            jitter = self._random.uniform
            n = self.noise_a
            shown = (shown[0] + jitter(-n, n), shown[1] + jitter(-n, n), shown[2] + jitter(-n, n))
        if self.phases == 1:
            shown = (shown[0], 0.0, 0.0)
        self._served = shown
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
        shown = self._served
        powers = tuple(v * i for v, i in zip(self.voltages, shown, strict=True))
        for i in range(3):
            absent = i >= self.phases
            for name, value in (
                (f"voltage_l{i + 1}", self.voltages[i]),
                (f"current_l{i + 1}", abs(shown[i])),
                (f"power_l{i + 1}", powers[i]),
            ):
                self._serve(name, None if absent else value)
        self._serve("power_total", sum(powers))
        self._serve("frequency", self.frequency)
        for name, wh in (("energy_import", self._import_wh), ("energy_export", self._export_wh)):
            if self.map.has_field(name):
                image.set(name, energy_in_unit(self.map.field(name), wh))
        for name, override in self.overrides.items():
            spec = self.map.field(name)
            if override is not None and spec.type.startswith("f"):
                image.set_raw(name, override / spec.scale)  # NaN and ±inf as they are, unclamped
            else:
                image.set(name, override)

    def _serve(self, name: str, value: float | None) -> None:
        if not self.map.has_field(name):
            return
        if value is None and not self.map.field(name).missing:
            value = 0.0
        self.image.set(name, value)
