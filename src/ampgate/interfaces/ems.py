"""The Modbus TCP server for energy managers: external limits in, measurements out.

A fixed, documented register map (``docs/integration.md``), unit id ``[ems] unit_id`` (1):

* holding register 0: the map version (:data:`MAP_VERSION`), read-only;
* for the n-th group of the site file (n from 0), at base ``100 + 10 n``:

  - holding ``+0..+2``: the EMS's external limit on L1..L3 in 0.1 A (0xFFFF = none on that
    phase), ``+3``: how long it is valid, s. A write of any of them (re)sets the limit from the
    four registers (write all four with FC 16 to be sure of what is set); all three phases
    0xFFFF clears it. Reading them gives the limit as ampgate holds it (0xFFFF once expired).
  - input ``+0..+2``: measured current through the fuse L1..L3 in 0.1 A (0xFFFF = no live
    meter), ``+3..+5``: the effective limit L1..L3 in 0.1 A, ``+6``: chargers charging at or
    below the group.

A write out of range, to a group that does not take limits from ``ems``, or to the version is
answered with exception 03 (illegal data value) and changes nothing; an address outside the map
with exception 02. The server never passes anything through to a charger: ampgate stays the
only master on their lines. It reads the snapshot and queues validated requests on the
:class:`~ampgate.interfaces.control.ControlChannel`, nothing else.
"""

from __future__ import annotations

import contextlib
import time

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ampgate.config import SiteConfig
from ampgate.errors import ConfigError
from ampgate.interfaces.control import ControlChannel, LimitRejected, limit_request
from ampgate.interfaces.snapshot import DaemonSnapshot, GroupSnapshot
from ampgate.interfaces.store import SnapshotStore
from ampgate.logging import get_logger

MAP_VERSION = 1
BASE = 100
STRIDE = 10
NONE = 0xFFFF
"""A value that is not there (no limit on a phase, no live meter)."""
HOLDING_PER_GROUP = 4
INPUT_PER_GROUP = 7


def _deciamps(amps: float | None) -> int:
    if amps is None:
        return NONE
    return max(0, min(NONE - 1, round(amps * 10)))


def _subtree(config: SiteConfig, group: str) -> set[str]:
    """``group`` and every group below it."""
    return {g for g in config.groups if group in config.ancestors(g)}


class EmsRegisters:
    """The EMS map over the snapshot store: what a read shows, what a write requests."""

    def __init__(self, config: SiteConfig, store: SnapshotStore, channel: ControlChannel) -> None:
        """Serve ``config``'s groups in site-file order from ``store``; queue on ``channel``."""
        self.config, self.store, self.channel = config, store, channel
        self.groups = list(config.groups)
        self.log = get_logger("ampgate.ems")
        self.pending: dict[int, tuple[float, list[int]]] = {}
        """Per group: when the EMS's last accepted write came and its four registers, shown
        until the gateway's next snapshot carries the limit (a read right after a write reads
        what was written)."""

    def group_at(self, address: int) -> tuple[int, int] | None:
        """(group index, offset) of an address in a group's block, else None."""
        index, offset = divmod(address - BASE, STRIDE)
        if address < BASE or index >= len(self.groups):
            return None
        return index, offset

    def holding(self, snapshot: DaemonSnapshot, index: int) -> list[int]:
        """A group's four holding registers: the EMS limit ampgate holds (0xFFFF: none)."""
        group = self._group(snapshot, index)
        control = None if group is None else group.control
        for limit in control.external_limits if control else ():
            if limit.source == "ems" and limit.amperes is not None:
                return [*(_deciamps(a) for a in limit.amperes), round(limit.valid_for_seconds)]
        written = self.pending.get(index)
        settle = 3 * self.config.dlm.cycle_seconds
        if written is not None and time.monotonic() - written[0] <= settle:
            return list(written[1])
        return [NONE, NONE, NONE, 0]

    def inputs(self, snapshot: DaemonSnapshot, index: int) -> list[int]:
        """A group's seven input registers: measured current, effective limit, charging."""
        name = self.groups[index]
        group = self._group(snapshot, index)
        measured = [NONE, NONE, NONE]
        effective = [_deciamps(a) for a in self.config.groups[name].effective_limit()]
        if group is not None:
            measured = [_deciamps(p.measured_amperes) for p in group.phases] or measured
            if group.control is not None:
                effective = [_deciamps(a) for a in group.control.effective_limit_amperes]
        below = _subtree(self.config, name)
        charging = sum(
            1
            for d in snapshot.devices
            if d.kind == "charger"
            and d.group in below
            and d.up
            and d.charger is not None
            and d.charger.vehicle_state == "charging"
        )
        return [*measured, *effective, charging]

    def _group(self, snapshot: DaemonSnapshot, index: int) -> GroupSnapshot | None:
        name = self.groups[index]
        return next((g for g in snapshot.dlm.groups if g.name == name), None)

    def write(self, address: int, values: list[int], held: list[int]) -> ExcCodes | None:
        """Validate a write of ``values`` at ``address`` over the ``held`` registers of its
        group; queue the limit it makes, or the exception that answers it."""
        spot = self.group_at(address)
        if spot is None or spot[1] + len(values) > HOLDING_PER_GROUP:
            return ExcCodes.ILLEGAL_VALUE  # the version, or past a group's four registers
        index, offset = spot
        image = list(held)
        image[offset : offset + len(values)] = values
        name, amps, valid_for = self.groups[index], image[:3], image[3]
        try:
            if all(a == NONE for a in amps):
                request = limit_request(self.config, name, "ems", clear=True)
            else:
                fuse = self.config.groups[name].limit
                phases = [f if a == NONE else a / 10 for a, f in zip(amps, fuse, strict=True)]
                request = limit_request(self.config, name, "ems", amps=phases, valid_for=valid_for)
        except LimitRejected as exc:
            self.log.warning("ems_write_refused", group=name, registers=image, problem=str(exc))
            return ExcCodes.ILLEGAL_VALUE
        self.channel.submit(request)
        self.pending[index] = (time.monotonic(), image)
        return None

    async def action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus' hook on every access: refresh what is read, validate what is written."""
        snapshot = self.store.latest()
        if set_values is not None:
            spot = self.group_at(address)
            held = [] if spot is None else self._held(registers, start_address, spot[0])
            return self.write(address, [int(v) for v in set_values], held)
        for index in range(len(self.groups)):
            at = BASE + STRIDE * index - start_address
            fresh = self.inputs(snapshot, index) if function_code == 4 else None
            if function_code == 3:
                fresh = self.holding(snapshot, index)
            if fresh is not None and at >= 0 and at + len(fresh) <= len(registers):
                registers[at : at + len(fresh)] = fresh
        return None

    def _held(self, registers: list[int], start_address: int, index: int) -> list[int]:
        at = BASE + STRIDE * index - start_address
        return registers[at : at + HOLDING_PER_GROUP]

    def device(self, unit_id: int) -> SimDevice:
        """The pymodbus device serving this map (holding and input registers apart)."""
        holding = [SimData(0, values=[MAP_VERSION], datatype=DataType.REGISTERS)]
        inputs = []
        for index in range(len(self.groups)):
            base = BASE + STRIDE * index
            holding.append(SimData(base, values=[NONE, NONE, NONE, 0], datatype=DataType.REGISTERS))
            inputs.append(SimData(base, values=[0] * INPUT_PER_GROUP, datatype=DataType.REGISTERS))
        bits = [SimData(0, values=[False], datatype=DataType.BITS)]
        return SimDevice(unit_id, simdata=(bits, bits, holding, inputs), action=self.action)


class EmsServer:
    """The EMS Modbus TCP server of one site, in the daemon's event loop."""

    def __init__(self, config: SiteConfig, store: SnapshotStore, channel: ControlChannel) -> None:
        """Serve ``config``'s ``[ems]`` section; nothing is bound until :meth:`start`."""
        if config.ems is None:
            raise ConfigError("[ems]: the section is absent; the EMS server is off")
        self.registers = EmsRegisters(config, store, channel)
        self.host, self.port = config.ems.host_port()
        self.unit_id = config.ems.unit_id
        self._server: ModbusTcpServer | None = None

    async def start(self) -> None:
        """Listen (port 0 picks a free one, then ``port`` holds it); ConfigError naming
        ``[ems] listen`` when the address cannot be bound."""
        server = ModbusTcpServer(
            self.registers.device(self.unit_id), address=(self.host, self.port)
        )
        try:
            await server.serve_forever(background=True)
        except OSError as exc:
            raise ConfigError(
                f"[ems] listen: cannot listen on {self.host}:{self.port}: {exc}"
            ) from exc
        sockets = getattr(server.transport, "sockets", None)
        if not sockets:
            raise ConfigError(f"[ems] listen: cannot listen on {self.host}:{self.port}")
        self.port = sockets[0].getsockname()[1]
        self._server = server

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            server, self._server = self._server, None
            with contextlib.suppress(Exception):
                await server.shutdown()
