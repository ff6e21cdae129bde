"""``GET /api/v1/stream``: server-sent events from the snapshot store.

A ``site`` event (the JSON of ``GET /api/v1/site``) first and after every published snapshot,
an ``event`` event (one :class:`~ampgate.interfaces.api_models.EventView`) for each gateway
event as it is emitted, and a comment line as keep-alive when nothing was sent for a while.
The stream reads a bounded :class:`~ampgate.interfaces.store.Subscription` (a slow client
loses the oldest items, never slows the control loop), which is closed when the client goes
(the response task is cancelled) or the server stops (``stopping`` is set).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from ampgate.interfaces.api_models import event_view
from ampgate.interfaces.snapshot import DaemonSnapshot, Event
from ampgate.interfaces.store import SnapshotStore

DEFAULT_KEEPALIVE_SECONDS = 15.0
RETRY_MILLISECONDS = 2000
"""How soon a browser reconnects after the stream broke (a daemon restart)."""


def sse_message(event: str, data: str) -> bytes:
    """One server-sent event: ``event: NAME`` and the data (one JSON line)."""
    return f"event: {event}\ndata: {data}\n\n".encode()


async def event_stream(
    store: SnapshotStore,
    site_json: Callable[[DaemonSnapshot], str],
    stopping: asyncio.Event,
    keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS,
) -> AsyncIterator[bytes]:
    """Yield the stream's bytes until ``stopping`` is set (or the consumer stops iterating)."""
    with store.subscribe() as subscription:
        yield f"retry: {RETRY_MILLISECONDS}\n\n".encode() + sse_message(
            "site", site_json(store.latest())
        )
        stop = asyncio.ensure_future(stopping.wait())
        item: asyncio.Future[DaemonSnapshot | Event] | None = None
        try:
            while not stopping.is_set():
                if item is None:
                    item = asyncio.ensure_future(subscription.get())
                done, _ = await asyncio.wait(
                    (item, stop), timeout=keepalive_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                if stop in done:
                    break
                if item not in done:
                    yield b": keep-alive\n\n"
                    continue
                published, item = item.result(), None
                if isinstance(published, DaemonSnapshot):
                    yield sse_message("site", site_json(published))
                else:
                    yield sse_message("event", event_view(published).model_dump_json())
        finally:
            stop.cancel()
            if item is not None:
                item.cancel()
