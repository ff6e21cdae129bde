"""The ASGI app of the daemon's one HTTP server (FastAPI), reading only the snapshot store.

Routes:

* ``/`` the live status page (``static/status.html``, self-contained, fed by the stream);
* ``/metrics`` Prometheus (prometheus-client's ASGI app over
  :func:`~ampgate.interfaces.metrics.build_registry`; gzip and OpenMetrics when asked), rendered
  in the loop: with 100 chargers one exposition costs ~50 ms of CPU, once per scrape. A worker
  thread was measured worse: it holds the GIL against the loop's many short wake-ups and a
  cycle ran ~150 ms late instead of <= 50 ms (``benchmarks/results/daemon_http.md``);
  ``/healthz`` (:func:`.health.health`);
* ``/api/v1/site``, ``/api/v1/events?since=``, ``/api/v1/stream`` (server-sent events), and the
  OpenAPI schema at ``/api/v1/openapi.json`` (no docs UI: it would load assets from the web).

Writes are off unless a token is given (:mod:`.write_gate`). The write endpoints are
``PUT /api/v1/groups/{group}/limit`` (an external limit: ``{"amps": 20 | [L1, L2, L3],
"valid_for": 60}`` or ``{"kw": 11, "valid_for": 60}``, 202 when taken for the next cycle, 422
naming the field and the allowed range, 403 when the group does not take limits over HTTP) and
``DELETE`` on the same path (clears it).
:func:`make_app` builds the app; :func:`stop_streams` ends every open stream (before the
server's graceful shutdown, which would otherwise wait for them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import make_asgi_app
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ampgate import __version__
from ampgate.config import SiteConfig
from ampgate.interfaces.api_models import (
    EventsView,
    LimitAccepted,
    PerPhase,
    SiteView,
    events_since,
    site_view,
)
from ampgate.interfaces.control import (
    ControlChannel,
    LimitRejected,
    LimitRequest,
    limit_from_body,
    limit_request,
)
from ampgate.interfaces.health import health
from ampgate.interfaces.metrics import build_registry
from ampgate.interfaces.snapshot import DaemonSnapshot
from ampgate.interfaces.store import SnapshotStore
from ampgate.interfaces.stream import DEFAULT_KEEPALIVE_SECONDS, event_stream
from ampgate.interfaces.write_gate import require_write_token

API_PREFIX = "/api/v1"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"
STATUS_PAGE = "static/status.html"


class _AsgiRoute:
    """An ASGI app as a route endpoint (Starlette calls plain functions as request handlers)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


class _SiteJson:
    """The site JSON of the latest snapshot, rendered once however many streams send it."""

    def __init__(self, clock: Callable[[], float], stall_limit_seconds: float | None) -> None:
        self._clock, self._limit = clock, stall_limit_seconds
        self._snapshot: DaemonSnapshot | None = None
        self._json = ""

    def __call__(self, snapshot: DaemonSnapshot) -> str:
        if snapshot is not self._snapshot:
            self._json = site_view(snapshot, self._clock(), self._limit).model_dump_json()
            self._snapshot = snapshot
        return self._json


def _accepted(request: LimitRequest) -> LimitAccepted:
    amps = request.amps
    return LimitAccepted(
        group=request.group,
        source=request.source,
        amperes=None if amps is None else PerPhase.model_validate(amps),
        kw=request.kw,
        valid_for_seconds=request.valid_for,
        cleared=request.clear,
    )


def _refused(exc: LimitRejected) -> JSONResponse:
    return JSONResponse({"detail": {"field": exc.field, "problem": str(exc)}}, exc.status)


_LIMIT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "additionalProperties": False,
                "required": ["valid_for"],
                "properties": {
                    "amps": {
                        "description": "per phase: one value for all or [L1, L2, L3]; "
                        "0 or 6 A up to the fuse",
                        "oneOf": [
                            {"type": "number"},
                            {
                                "type": "array",
                                "items": {"type": "number"},
                                "minItems": 3,
                                "maxItems": 3,
                            },
                        ],
                    },
                    "kw": {"type": "number", "description": "total power, 0 up to the fuse's"},
                    "valid_for": {"type": "number", "minimum": 1, "maximum": 86400},
                },
            },
            "examples": {
                "amps": {"value": {"amps": 20, "valid_for": 60}},
                "kw": {"value": {"kw": 11, "valid_for": 60}},
            },
        }
    },
}
_LIMIT_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no or a wrong bearer token"},
    403: {"description": "writes are off, or the group does not take limits over HTTP"},
    422: {"description": "a field out of range: `detail.field` and `detail.problem` say which"},
}


def status_page() -> str:
    """The status page's HTML (package data)."""
    return resources.files("ampgate.interfaces").joinpath(STATUS_PAGE).read_text("utf-8")


def make_app(
    store: SnapshotStore,
    *,
    stall_limit_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    write_token: str | None = None,
    keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS,
    site_config: Callable[[], SiteConfig] | None = None,
    control: ControlChannel | None = None,
) -> FastAPI:
    """The app serving ``store``; ``write_token`` None keeps every write endpoint at 403.

    External limits go to ``control``, checked against the running site file
    (``site_config()``, which a reload changes); without them the limit endpoints answer 403.
    """
    app = FastAPI(
        title="ampgate",
        version=__version__,
        description="Read API of an ampgate site gateway: the state published after each "
        "control cycle.",
        openapi_url=OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store
    app.state.write_token = write_token
    app.state.stopping = asyncio.Event()
    page = status_page()
    site_json = _SiteJson(clock, stall_limit_seconds)

    metrics = _AsgiRoute(make_asgi_app(build_registry(store)))
    app.router.routes.append(Route("/metrics", metrics, methods=["GET"], include_in_schema=False))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        """The live status page."""
        return HTMLResponse(page)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        """200 while the control loop runs, 503 when it stalled or has not run yet."""
        status, body = health(store.latest(), clock(), stall_limit_seconds)
        text = json.dumps(body, sort_keys=True) + "\n"
        return Response(text, status_code=status, media_type="application/json")

    @app.get(f"{API_PREFIX}/site", response_model=SiteView)
    async def site() -> SiteView:
        """The site at the latest cycle: loop health, fuse groups, chargers and meters."""
        return site_view(store.latest(), clock(), stall_limit_seconds)

    @app.get(f"{API_PREFIX}/events", response_model=EventsView)
    async def events(
        since: Annotated[
            float | None, Query(description="only events after this unix time (s)")
        ] = None,
    ) -> EventsView:
        """The recent gateway events (the daemon keeps the latest ones), oldest first."""
        return events_since(store.latest(), since)

    @app.get(
        f"{API_PREFIX}/stream",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-sent events: `site` (a SiteView, after every cycle) and "
                "`event` (an EventView, as emitted); a comment line as keep-alive.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def stream() -> StreamingResponse:
        """The site after every cycle and each event as it happens (text/event-stream)."""
        body = event_stream(store, site_json, app.state.stopping, keepalive_seconds)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    def take_limit(group: str, body: object, *, clear: bool) -> Response:
        if site_config is None or control is None:
            return _refused(LimitRejected(403, "group", "this server takes no external limits"))
        try:
            config = site_config()
            if clear:
                limit = limit_request(config, group, "http", clear=True)
            else:
                limit = limit_from_body(config, group, "http", body)
        except LimitRejected as exc:
            return _refused(exc)
        control.submit(limit)
        return JSONResponse(_accepted(limit).model_dump(mode="json"), 202)

    limit_path = f"{API_PREFIX}/groups/{{group}}/limit"
    writes: dict[str, Any] = {
        "dependencies": [Depends(require_write_token)],
        "status_code": 202,
        "response_model": LimitAccepted,
        "responses": _LIMIT_ANSWERS,
    }

    @app.put(limit_path, openapi_extra={"requestBody": _LIMIT_BODY}, **writes)
    async def put_limit(group: str, request: Request) -> Response:
        """Set the group's external limit from HTTP for ``valid_for`` seconds (next cycle on);
        ``{}`` clears it. Needs the bearer token and ``"http"`` in the group's external_limits."""
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _refused(LimitRejected(422, "body", f"not JSON ({exc})"))
        return take_limit(group, body, clear=False)

    @app.delete(limit_path, **writes)
    async def delete_limit(group: str) -> Response:
        """Clear the group's external limit from HTTP (the site file's limits from the next
        cycle on)."""
        return take_limit(group, None, clear=True)

    return app


def stop_streams(app: FastAPI) -> None:
    """End every open ``/api/v1/stream`` response (they finish their current message)."""
    app.state.stopping.set()
