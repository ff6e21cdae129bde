"""Fair request scheduling for one bus (pure, no I/O).

Reads are queued per unit id and served round-robin, so a device with many queued reads cannot
starve the others. A priority lane (FIFO) is served before any read: writes that lower a
setpoint use it. A request waiting for a retry backoff is skipped until it is due, letting other
units use the bus meanwhile.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Slot(Generic[T]):
    """A queued item with its unit, lane and earliest start time (monotonic seconds)."""

    unit_id: int
    item: T
    priority: bool = False
    not_before: float = 0.0
    seq: int = field(default=0)


class FairScheduler(Generic[T]):
    """Priority lane first, then round-robin over units (least recently served), each FIFO."""

    def __init__(self) -> None:
        """Create an empty scheduler."""
        self._priority: deque[Slot[T]] = deque()
        self._units: OrderedDict[int, deque[Slot[T]]] = OrderedDict()
        self._seq = 0
        self.queued = 0
        """Number of queued items (a plain attribute: the bus reads it on every request)."""
        self._turns = 0
        self._served: dict[int, int] = {}
        """Unit id → turn number it was last served at (least recently served goes first)."""

    def mark_served(self, unit_id: int) -> None:
        """Record that ``unit_id`` just used the bus (also on the idle fast path)."""
        self._turns += 1
        self._served[unit_id] = self._turns

    def __len__(self) -> int:
        """Number of queued items."""
        return self.queued

    def push(self, slot: Slot[T], *, front: bool = False) -> None:
        """Queue ``slot``; ``front`` puts a retry back at the head of its own queue."""
        self._seq += 1
        self.queued += 1
        slot.seq = self._seq
        if slot.priority:
            queue = self._priority
        else:
            found = self._units.get(slot.unit_id)
            if found is None:
                found = self._units[slot.unit_id] = deque()
            queue = found
        if front:
            queue.appendleft(slot)
        else:
            queue.append(slot)

    def pop(self, now: float) -> Slot[T] | None:
        """Take the next due item, or None when nothing is due at ``now``."""
        for i, slot in enumerate(self._priority):
            if slot.not_before <= now:
                del self._priority[i]
                self.queued -= 1
                return slot
        due = [u for u, q in self._units.items() if q[0].not_before <= now]
        if not due:
            return None
        # Round-robin: the due unit served least recently goes first.
        unit_id = min(due, key=lambda u: self._served.get(u, 0))
        queue = self._units[unit_id]
        head = queue.popleft()
        self.queued -= 1
        if not queue:
            del self._units[unit_id]
        self.mark_served(unit_id)
        return head

    def next_due(self) -> float | None:
        """Earliest ``not_before`` among queued items (None when empty)."""
        times = [s.not_before for s in self._priority]
        times += [q[0].not_before for q in self._units.values()]
        return min(times) if times else None

    def drain(self) -> list[Slot[T]]:
        """Remove and return every queued item."""
        out = list(self._priority)
        self._priority.clear()
        for queue in self._units.values():
            out.extend(queue)
        self._units.clear()
        self.queued = 0
        return out
