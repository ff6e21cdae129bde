"""The gate in front of every HTTP endpoint that changes something: writes are off by default.

Without ``[http] token_file`` every write endpoint answers 403. With it, a request must carry
``Authorization: Bearer <token>`` (the file's content without surrounding whitespace), compared
in constant time; a missing or wrong token is 401. A write endpoint declares the gate as a
dependency::

    @app.post("/api/v1/...", dependencies=[Depends(require_write_token)])

The token lives on the app (``app.state.write_token``, set by
:func:`ampgate.interfaces.api.make_app`), so the gate needs no global state.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated

from fastapi import Header, HTTPException, Request

from ampgate.errors import ConfigError

TOKEN_KEY = "http.token_file"


def read_token_file(path: str | Path) -> str:
    """The bearer token in ``path`` (stripped); ConfigError naming the key if unreadable/empty."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{TOKEN_KEY}: cannot read {path}: {exc.strerror or exc}; allowed: a readable file "
            "holding the bearer token, or no token_file (writes off)"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{TOKEN_KEY}: {path} is not UTF-8 text") from exc
    if not token:
        raise ConfigError(f"{TOKEN_KEY}: {path} is empty; allowed: a file holding the bearer token")
    return token


async def require_write_token(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """FastAPI dependency of every write endpoint: 403 when writes are off, 401 without the
    right bearer token, nothing when the request may write."""
    token: str | None = getattr(request.app.state, "write_token", None)
    if token is None:
        raise HTTPException(403, "writes are off: set [http] token_file to allow them")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise HTTPException(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
