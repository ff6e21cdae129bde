"""The daemon's HTTP server on 127.0.0.1 for tests: served from an event loop in a thread, so a
plain synchronous test can talk to it with urllib, and helpers to read an SSE stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI

from ampgate.interfaces.api import make_app
from ampgate.interfaces.http import HttpServer
from ampgate.interfaces.store import SnapshotStore


@contextlib.contextmanager
def served(store: SnapshotStore | None = None, app: FastAPI | None = None) -> Iterator[str]:
    """Serve ``app`` (or the daemon's app over ``store``) on a free port; yield the base URL."""
    app = app if app is not None else make_app(store if store is not None else SnapshotStore())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-http", daemon=True)
    thread.start()
    server = HttpServer(app, host="127.0.0.1", port=0)
    try:
        host, port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        yield f"http://{host}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, Any]:
    """``(status, body)``: JSON bodies parsed, others as text."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, kind, raw = response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        status, kind, raw = error.code, error.headers["Content-Type"], error.read()
    text = raw.decode()
    return status, json.loads(text) if kind and kind.startswith("application/json") else text


async def read_sse(
    reader: asyncio.StreamReader, count: int, timeout: float
) -> list[tuple[str, str]]:
    """Read ``count`` server-sent events (``(event, data)``; comments as ``(":", text)``)."""
    found: list[tuple[str, str]] = []
    event, data = "", []
    async with asyncio.timeout(timeout):
        while len(found) < count:
            line = (await reader.readline()).decode()
            if not line:
                break
            line = line.rstrip("\r\n")
            if line.startswith(":"):
                found.append((":", line[1:].strip()))
            elif line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
            elif line == "" and event:
                found.append((event, "\n".join(data)))
                event, data = "", []
    return found


async def open_stream(
    host: str, port: int, path: str = "/api/v1/stream"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open an SSE stream over a plain socket (HTTP/1.0: no chunk sizes between the lines)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    assert b" 200 " in status, status
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer
