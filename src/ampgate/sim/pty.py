"""A virtual RS485 line: two linked pseudo-terminals made by ``socat``.

Bytes written to one end come out of the other, so a simulator served on one end and a real
Modbus RTU client on the other exercise real framing and CRC without hardware. A pty moves bytes
at memory speed whatever baud rate is set; :func:`ampgate.sim.serve_rtu` with line emulation
restores the wire timing.

Used by the demo, the benchmarks and the test fixtures, so there is one way to make a line.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ampgate.errors import AmpgateError


class VirtualLineError(AmpgateError):
    """socat is missing or did not create the pty pair in time."""


def socat_available() -> bool:
    """True when the ``socat`` program is on PATH."""
    return shutil.which("socat") is not None


@contextlib.contextmanager
def virtual_serial_line(
    folder: Path | None = None,
    *,
    names: tuple[str, str] = ("client", "server"),
    timeout: float = 5.0,
) -> Iterator[tuple[str, str]]:
    """Yield the paths of two linked ptys ``(first, second)``; tear socat down on exit.

    ``folder`` holds the two links (a fresh temporary folder, removed afterwards, when omitted);
    ``names`` are the link names. Raises :class:`VirtualLineError` when socat is missing or does
    not create the links within ``timeout`` seconds, with socat's own messages.
    """
    socat = shutil.which("socat")
    if socat is None:
        raise VirtualLineError(
            "socat is not installed: a virtual RS485 line needs it (apt-get install socat)"
        )
    owned = folder is None
    where = Path(tempfile.mkdtemp(prefix="ampgate-line-")) if folder is None else folder
    first, second = where / names[0], where / names[1]
    log_path = where / f"{names[0]}-{names[1]}.socat.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [socat, "-d", "-d", f"pty,raw,echo=0,link={first}", f"pty,raw,echo=0,link={second}"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + timeout
        while not (first.exists() and second.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise VirtualLineError(
                    f"socat did not create the pty pair in {timeout:g} s: "
                    + log_path.read_text(errors="replace").strip()[-500:]
                )
            time.sleep(0.01)
        yield str(first), str(second)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if owned:
            shutil.rmtree(where, ignore_errors=True)
