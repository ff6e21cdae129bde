"""The README's "Using the codec" example runs exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ampgate.codec import list_models

README = Path(__file__).resolve().parents[2] / "README.md"


def codec_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"<!-- section: codec -->(.*?)<!-- /section: codec -->", text, re.S)
    assert section, "README.md has no codec section"
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), re.S)
    assert len(blocks) == 1, "the codec section must hold exactly one python block"
    return blocks[0]


@pytest.mark.skipif(
    "teltocharge-evc2" not in list_models(),
    reason="register_maps/teltocharge-evc2.toml not shipped yet",
)
def test_readme_codec_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(codec_example(), "README.md codec example", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "16.0 A",
        "C: charging",
        "123456789",
        "[16]",
        "teltocharge-evc2/amps_to_use: 3 A is not allowed (allowed: 0 or 6–32 A)",
    ]
