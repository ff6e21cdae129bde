"""The ``ampgate`` entry point itself: exit codes and output hygiene."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AMPGATE = Path(sys.executable).with_name("ampgate")


def test_closed_pipe_exits_quietly_without_traceback():
    # `ampgate maps | head`-style use where the reader has already gone: every write fails.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [str(AMPGATE), "maps", "teltocharge-evc2"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=30,
        )
    finally:
        os.close(write_end)
    err = proc.stderr
    assert proc.returncode == 0
    assert b"Traceback" not in err
    assert b"BrokenPipe" not in err


def test_version_flag_names_the_package():
    out = subprocess.run(
        [str(AMPGATE), "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.startswith("ampgate ")
