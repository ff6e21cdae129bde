"""Closed-loop simulation of a gateway on a scenario: pure Python, faster than real time.

The world is the scenario's :class:`~ampgate.sim.plant.Plant` (the same EVC2 and meter
simulators the daemon is tested against) on a manual clock. The gateway side follows the
daemon's data path: charger and meter registers are read with the daemon's read plans and
decoded by the codec, turned into the engine's input by :mod:`ampgate.gateway.inputs`, and the
allocator's setpoints are written into the chargers' registers as the daemon would (only
changes, lowerings first). What is not run is the transport; its timing is modelled instead:

- ``transport = "tcp"``: every charger is polled just before the meter is read, writes land
  a few milliseconds after the allocation;
- ``transport = "rtu"``: one RS485 line at ``baudrate`` carries every charger. Each cycle
  queues one fast poll per charger whose previous poll is done (as the daemon does); the
  meter (on TCP) is read at the start of the cycle, so the chargers' readings are those of the
  previous round, 0 to a round older than the meter's; lowering writes take the priority lane
  behind the request on the wire, increases queue behind the polls. Each request takes its
  frames' wire time, the silent intervals and the daemon's inter-request gap.

The scores are :class:`~ampgate.sim.scoring.Score` (see there).
"""

from __future__ import annotations

import functools
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from ampgate.codec import decode_request, encode_field, plan_reads
from ampgate.devices.charger import (
    FAST_FIELDS,
    FAST_GAP,
    SLOW_FIELDS,
    charger_fast_from,
    charger_slow_from,
)
from ampgate.devices.evc2 import PHASE_TO_USE
from ampgate.devices.meter import MEASUREMENT_FIELDS, meter_measurement_from
from ampgate.dlm import EngineState, Measurements, Site, allocate
from ampgate.gateway.control import ControlInputs
from ampgate.gateway.events import EventLog
from ampgate.gateway.inputs import first_measurement_complete, measurements
from ampgate.gateway.runtime import ChargerRuntime, MeterRuntime
from ampgate.sim.device import ManualClock, ReadAnswer
from ampgate.sim.plant import Plant
from ampgate.sim.rtu import transaction_wire_time
from ampgate.sim.scenario import Scenario
from ampgate.sim.scoring import Score, Scorer

Allocator = Callable[[Site, Measurements, Any, float], tuple[dict[str, int], dict[str, Any], Any]]
"""(site, measurements, state, now) -> (amps per charger, phase mode per charger, next state)."""

SAMPLE_S = 0.1
"""Scoring step: the truth is sampled this often."""
GAP_S = 0.005
"""The daemon's gap between requests on an RS485 line (``buses.*.gap`` default)."""
WATCHDOG_REFRESH_FRACTION = 3


def engine_allocator(site: Site, meas: Measurements, state: Any, now: float):
    """Adapter: the ampgate engine as a simulator allocator."""
    alloc = allocate(site, meas, state or EngineState(), now)
    amps = {cid: sp.amps for cid, sp in alloc.setpoints.items()}
    return amps, {cid: sp.phases for cid, sp in alloc.setpoints.items()}, alloc.state


WALL_CLOCK_AT_START = 1_800_000_000.0
"""The wall clock at scenario time 0: a quarter-hour boundary, so the peak budget's aligned
quarters start with the scenario."""


class _SilentLog:
    """A logger that drops everything (the closed loop runs thousands of cycles)."""

    def __getattr__(self, _level: str) -> Callable[..., None]:
        return lambda *_args, **_kw: None


_SILENT = _SilentLog()


class _Request:
    __slots__ = ("charger", "done", "duration", "kind", "request_s", "value")

    def __init__(self, kind: str, charger: str, duration: float, request_s: float, value=None):
        self.kind, self.charger, self.duration = kind, charger, duration
        self.request_s, self.value, self.done = request_s, value, False


class ClosedLoop:
    """One run of an allocator on a scenario (build, then :meth:`run`)."""

    def __init__(self, scenario: Scenario, allocator: Allocator, name: str) -> None:
        """Prepare the plant, the gateway model and the scorer at t = 0."""
        self.scenario = scenario
        self.allocator = allocator
        self.clock = ManualClock()
        self.plant = Plant(scenario, self.clock)
        self.config = scenario.config
        self.site = scenario.site
        self.rtu = scenario.transport == "rtu"
        baud = scenario.baudrate

        def wire(request: int, response: int) -> float:
            return transaction_wire_time(request, response, baud) + GAP_S

        charger_map = next(iter(self.plant.chargers.values())).map
        self.fast_plan = plan_reads(charger_map, FAST_FIELDS, gap=FAST_GAP)
        self.slow_plan = plan_reads(charger_map, SLOW_FIELDS, gap=8)
        self.poll_s = sum(wire(8, 5 + 2 * r.count) for r in self.fast_plan)
        self.slow_s = sum(wire(8, 5 + 2 * r.count) for r in self.slow_plan)
        self.write_s = wire(8, 8) + wire(8, 7)  # FC 06, then the verifying read
        self.request_s = 8 * 11 / baud
        self.chargers = {
            n: ChargerRuntime(name=n, device=None, config=c)
            for n, c in self.config.chargers.items()
        }
        self.meters = {
            n: MeterRuntime(name=n, device=None, config=m) for n, m in self.config.meters.items()
        }
        self.meter_plans = {
            n: plan_reads(m.map, [f for f in MEASUREMENT_FIELDS if m.map.has_field(f)], gap=16)
            for n, m in self.plant.meters.items()
        }
        self.state: Any = None
        self.control = ControlInputs(
            self.config,
            self.site,
            EventLog(logger=_SILENT),
            wall_clock=lambda: WALL_CLOCK_AT_START + self.clock.now,
        )
        """The daemon's control inputs (a peak budget of the scenario's site file)."""
        self.started_at = 0.0
        self.polls = dict.fromkeys(self.chargers, 0)
        self.polling: set[str] = set()
        self.background: dict[str, _Request] = {}
        self.line: deque[_Request] = deque()
        self.urgent: deque[_Request] = deque()
        self.line_busy = False
        self.events: list[tuple[float, int, Callable[[float], None]]] = []
        self.seq = itertools.count()
        wire_total = self.write_s * len(self.chargers) + self.poll_s if self.rtu else 0.02
        self.scorer = Scorer(scenario, name, wire_s=wire_total)

    # ------------------------------------------------------------------ event loop

    def at(self, t: float, action: Callable[[float], None]) -> None:
        """Run ``action(t)`` at time ``t``."""
        heapq.heappush(self.events, (t, next(self.seq), action))

    def run(self) -> Score:
        """Simulate the whole scenario and return its scores."""
        duration = self.scenario.duration_s
        period = self.config.dlm.cycle_seconds
        self.at(0.0, self._sample)
        self.at(0.0, self._cycle)
        if self.scenario.meter_update_s > 0:
            self.at(0.0, self._refresh_meters)
        while self.events:
            t, _, action = heapq.heappop(self.events)
            if t > duration + 1e-9:
                break
            if t > self.clock.now:
                self.clock.now = t
            self.plant.apply_script(t)
            action(t)
            if action == self._cycle:
                self.at(t + period, self._cycle)
            elif action == self._sample:
                self.at(t + SAMPLE_S, self._sample)
            elif action == self._refresh_meters:
                self.at(t + self.scenario.meter_update_s, self._refresh_meters)
        return self.scorer.result(duration)

    def _refresh_meters(self, t: float) -> None:
        """A real meter refreshes its registers on its own clock: exactly every interval."""
        for meter in self.plant.meters.values():
            meter.advance(t)

    def _sample(self, t: float) -> None:
        self.scorer.sample(self.plant.truth(t))

    # ------------------------------------------------------------------ one cycle

    def _cycle(self, t: float) -> None:
        if self.rtu:
            for name in self.chargers:
                if name not in self.polling:
                    self.polling.add(name)
                    slow = self.polls[name] % self.config.dlm.slow_poll_every == 0
                    self._enqueue(
                        _Request(
                            "slow" if slow else "poll", name, self._poll_s(slow), self.request_s
                        )
                    )
            self.at(t + 0.005, self._read_meters)
            self.at(t + 0.008, self._decide)
        else:
            for name in self.chargers:
                slow = self.polls[name] % self.config.dlm.slow_poll_every == 0
                self.at(t + 0.004, self._reading(name, slow, delay=0.002))
            self.at(t + 0.008, self._read_meters)
            self.at(t + 0.011, self._decide)

    def _poll_s(self, slow: bool) -> float:
        return self.poll_s + (self.slow_s if slow else 0.0)

    def _reading(
        self, name: str, slow: bool, *, delay: float = 0.0, at: float | None = None
    ) -> Callable[[float], None]:
        """The action reading charger ``name``: its answer is complete at ``at``, or ``delay``
        after the action runs."""

        def read(now: float) -> None:
            self._read_charger(name, slow, at if at is not None else now + delay)

        return read

    def _read_charger(self, name: str, slow: bool, done: float) -> None:
        """Read a charger's registers now (as its answer is built); usable from ``done``."""
        sim = self.plant.chargers[name]
        values = {}
        for request in [*self.fast_plan, *(self.slow_plan if slow else ())]:
            words = _words(sim.read(request.function, request.address, request.count), name)
            values.update(decode_request(sim.map, request, words))
        self.polls[name] += 1

        def store(now: float) -> None:
            rt = self.chargers[name]
            rt.fast = charger_fast_from(values)
            rt.phase_to_use = rt.fast.phase_to_use
            if slow:
                rt.slow = charger_slow_from(values)
            rt.polled = rt.online = True
            rt.last_ok = rt.measured_at = now
            if rt.fast.amps_to_use is not None:
                rt.setpoint = rt.fast.amps_to_use
            self.polling.discard(name)

        if done <= self.clock.now:
            store(done)
        else:
            self.at(done, store)

    def _read_meters(self, t: float) -> None:
        for name, rt in self.meters.items():
            rt.polled = True
            if self.plant.meter_faults[name].silent:
                rt.online = False
                continue
            sim = self.plant.meters[name]
            values = {}
            for request in self.meter_plans[name]:
                words = _words(sim.read(request.function, request.address, request.count), name)
                values.update(decode_request(sim.map, request, words))
            rt.measurement = meter_measurement_from(values, sim.map.model.phases, name)
            rt.online = True
            rt.last_ok = rt.measured_at = t + 0.003

    def _decide(self, t: float) -> None:
        chargers, meters, config = self.chargers, self.meters, self.config
        if not first_measurement_complete(chargers, meters, config, self.started_at, t):
            return
        observed = measurements(chargers, meters, config, t)
        stale = config.dlm.meter_stale_seconds
        for meter in meters.values():
            meter.stale = meter.measured_at is None or t - meter.measured_at > stale
        site = self.control.site_for_cycle(t, WALL_CLOCK_AT_START + t)
        amps, modes, self.state = self.allocator(site, observed, self.state, t)
        self.control.record_import(meters, None, WALL_CLOCK_AT_START + t)
        refresh = config.dlm.watchdog_seconds / WATCHDOG_REFRESH_FRACTION
        for name, rt in chargers.items():
            if name not in amps:
                continue
            target, mode = amps[name], modes.get(name)
            switch = mode is not None and rt.phase_to_use != PHASE_TO_USE[mode]
            if switch and mode == 1:  # to fewer phases before the setpoint (as the daemon)
                self._write(name, "phase_to_use", PHASE_TO_USE[mode], t, urgent=True)
            changed = rt.setpoint != target
            due = rt.last_write is None or t - rt.last_write >= refresh
            if not (changed or due):
                if switch and mode == 3:
                    self._write(name, "phase_to_use", PHASE_TO_USE[mode], t, urgent=True)
                continue
            lowering = rt.setpoint is None or target < rt.setpoint
            pending = self.background.get(name)
            if pending is not None and not pending.done:
                if pending.value == target and not lowering:
                    continue
                self._cancel(pending)
            self._write(name, "amps_to_use", target, t, urgent=lowering)
            if switch and mode == 3:  # to more phases after the setpoint
                self._write(name, "phase_to_use", PHASE_TO_USE[mode], t, urgent=lowering)

    # ------------------------------------------------------------------ writes and the line

    def _write(self, name: str, field: str, value: int, t: float, *, urgent: bool) -> None:
        request = _Request(field, name, self.write_s if self.rtu else 0.004, self.request_s, value)
        if field == "amps_to_use" and not urgent:
            self.background[name] = request
        if self.rtu:
            self._enqueue(request, urgent=urgent)
        else:
            self.at(t + 0.002, functools.partial(self._apply_write, request))
            self.at(t + request.duration, functools.partial(self._write_done, request))

    def _cancel(self, request: _Request) -> None:
        for queue in (self.line, self.urgent):
            if request in queue:
                queue.remove(request)
                request.done = True

    def _apply_write(self, request: _Request, now: float) -> None:
        sim = self.plant.chargers[request.charger]
        field = sim.map.field(request.kind)
        sim.write(field.address, encode_field(sim.map, field, request.value))

    def _write_done(self, request: _Request, now: float) -> None:
        request.done = True
        if request.kind != "amps_to_use":
            return
        rt = self.chargers[request.charger]
        self.scorer.setpoint_written(request.charger, rt.setpoint, request.value, now)
        rt.setpoint, rt.last_write = request.value, now

    def _enqueue(self, request: _Request, *, urgent: bool = False) -> None:
        (self.urgent if urgent else self.line).append(request)
        if not self.line_busy:
            self._next_on_line(self.clock.now)

    def _next_on_line(self, now: float) -> None:
        queue = self.urgent or self.line
        if not queue:
            self.line_busy = False
            return
        self.line_busy = True
        request = queue.popleft()
        answer_at = now + request.request_s
        done_at = now + request.duration
        if request.kind in ("poll", "slow"):
            self.at(answer_at, self._reading(request.charger, request.kind == "slow", at=done_at))
        else:
            self.at(answer_at, functools.partial(self._apply_write, request))
            self.at(done_at, functools.partial(self._write_done, request))
        self.at(done_at, self._next_on_line)


def simulate(
    scenario: Scenario, allocator: Allocator = engine_allocator, name: str = "engine"
) -> Score:
    """Run ``allocator`` on ``scenario`` with the modelled transport and score it."""
    return ClosedLoop(scenario, allocator, name).run()


def _words(answer: ReadAnswer, device: str) -> list[int]:
    """The registers a simulator answered. The closed loop reads only what the device's map
    holds, so an exception answer is a bug in its plan, not a condition of the simulated site."""
    if isinstance(answer, list):
        return answer
    raise AssertionError(f"{device}: the simulator refused a planned read ({answer!r})")
