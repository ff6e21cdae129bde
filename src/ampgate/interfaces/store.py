"""Where the daemon's latest snapshot is kept and handed to its readers.

:class:`SnapshotStore` holds the latest :class:`~ampgate.interfaces.snapshot.DaemonSnapshot`
(published from the event loop, read from any thread); readers in the loop (the SSE stream, the
MQTT publisher) :meth:`~SnapshotStore.subscribe` to every snapshot and event as it is published.
"""

from __future__ import annotations

import asyncio
import threading

from ampgate.interfaces.snapshot import DaemonSnapshot, Event

Published = DaemonSnapshot | Event
"""What a :class:`Subscription` receives: a site snapshot after each cycle, or an event."""


class Subscription:
    """What the store publishes, in order, for one reader in the event loop (a stream, MQTT).

    Bounded: a reader that falls behind loses the oldest items, never slows the publisher (the
    control loop). ``dropped`` counts what it lost. Use as an async iterator; :meth:`close` (or
    leaving an ``async with``) ends it.
    """

    def __init__(self, store: SnapshotStore, maxsize: int) -> None:
        """Subscribe to ``store`` keeping at most ``maxsize`` unread items."""
        self._store = store
        self._queue: asyncio.Queue[Published] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, item: Published) -> None:
        """Queue ``item``, dropping the oldest unread one when full (called by the store)."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    async def get(self) -> Published:
        """The next published item (waits for one)."""
        return await self._queue.get()

    def close(self) -> None:
        """Stop receiving (idempotent)."""
        self._store._unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Published:
        return await self.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SnapshotStore:
    """Holds the latest :class:`DaemonSnapshot`; publish from the loop, read from any thread.

    Readers in the event loop may also :meth:`subscribe` to every snapshot and every event as
    the gateway publishes them (:meth:`publish`, :meth:`publish_event`); both are called from
    the loop's thread.
    """

    __slots__ = ("_lock", "_snapshot", "_subscriptions")

    def __init__(self, initial: DaemonSnapshot | None = None) -> None:
        """Start with ``initial`` or an empty snapshot (no devices, loop never ran)."""
        self._lock = threading.Lock()
        self._snapshot = initial if initial is not None else DaemonSnapshot()
        self._subscriptions: list[Subscription] = []

    def publish(self, snapshot: DaemonSnapshot) -> None:
        """Replace the latest snapshot atomically and hand it to every subscription."""
        if not isinstance(snapshot, DaemonSnapshot):
            raise TypeError(f"expected a DaemonSnapshot, got {type(snapshot).__name__}")
        with self._lock:
            self._snapshot = snapshot
        for subscription in tuple(self._subscriptions):
            subscription.offer(snapshot)

    def publish_event(self, event: Event) -> None:
        """Hand an event to every subscription as it happens (the snapshot's
        ``recent_events`` carries it too, from the next snapshot on)."""
        for subscription in tuple(self._subscriptions):
            subscription.offer(event)

    def latest(self) -> DaemonSnapshot:
        """Return the latest published snapshot (never a partly updated one)."""
        with self._lock:
            return self._snapshot

    def subscribe(self, maxsize: int = 256) -> Subscription:
        """A new :class:`Subscription` to what is published from now on."""
        subscription = Subscription(self, maxsize)
        self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
