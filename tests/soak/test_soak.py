"""The soak benchmark's 60-second version: 40 chargers (TCP and RS485) and a meter under
randomised faults; nothing over the fuse beyond reaction, no bad write, nothing leaked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat missing (scripts/setup)")
def test_a_minute_of_faults_keeps_the_fuse_the_wire_and_the_process_clean(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_soak.py"),
            "--duration",
            "60",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    result = json.loads((tmp_path / "soak.json").read_text())["result"]
    summary = (tmp_path / "soak.md").read_text()
    assert done.returncode == 0, summary + done.stderr[-2000:]
    assert result["overload_beyond_reaction_amp_s"] == 0.0
    assert result["writes_out_of_range"] == 0 and result["writes_unintended"] == 0
    assert result["writes"] > 100  # the gateway did write (the checks are not vacuous)
    assert sum(result["faults_injected"].values()) >= 8
    assert result["chargers_online_at_end"] == result["chargers"]
    assert result["tasks_leaked"] == 0 and result["fds_leaked"] == 0
    assert result["sockets_leaked"] == 0
    assert result["rss_growth_mb"] < 5.0
