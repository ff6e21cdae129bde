"""sd_notify without extra dependencies: readiness, watchdog keep-alive and status for systemd.

systemd passes ``$NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for the abstract namespace)
to a ``Type=notify`` service; each notification is one AF_UNIX datagram of ``KEY=value`` lines
(see sd_notify(3)). Outside systemd the variable is unset and every function here does nothing
and returns ``False``. Sending never raises: a lost notification must not stop the daemon
(systemd's watchdog will notice if keep-alives stop for good).

The daemon calls :func:`notify_ready` once the first cycle has run, :func:`notify_watchdog` every
loop iteration (at most every :func:`watchdog_interval` / 2 is plenty), :func:`notify_status` with a
one-line summary, and :func:`notify_stopping` when shutting down.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

NOTIFY_SOCKET = "NOTIFY_SOCKET"


def _address(raw: str) -> str | bytes | None:
    if not raw:
        return None
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()  # abstract namespace: leading NUL, no terminator
    if raw.startswith("/"):
        return raw
    return None  # sd_notify(3) accepts only absolute paths and abstract names


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one raw sd_notify message (``"READY=1"``...); True when it was sent."""
    env = os.environ if environ is None else environ
    address = _address(env.get(NOTIFY_SOCKET, ""))
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


def notify_ready(status: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd the service is up (``READY=1``), optionally with a status line."""
    message = "READY=1"
    if status:
        message += "\nSTATUS=" + _one_line(status)
    return notify(message, environ)


def notify_watchdog(environ: Mapping[str, str] | None = None) -> bool:
    """Keep the systemd watchdog from firing (``WATCHDOG=1``)."""
    return notify("WATCHDOG=1", environ)


def notify_status(text: str, environ: Mapping[str, str] | None = None) -> bool:
    """Set the one-line status shown by ``systemctl status`` (``STATUS=...``)."""
    return notify("STATUS=" + _one_line(text), environ)


def notify_stopping(environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd the service is shutting down (``STOPPING=1``)."""
    return notify("STOPPING=1", environ)


def notify_reloading(environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd a configuration reload has started (``RELOADING=1``); send READY=1 after."""
    return notify("RELOADING=1", environ)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds from ``$WATCHDOG_USEC``, or None when it is not for us.

    None when the variable is unset, not a positive integer, or ``$WATCHDOG_PID`` names another
    process. Send :func:`notify_watchdog` at least twice per interval.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
