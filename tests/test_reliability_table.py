"""docs/reliability.md's fault table cannot drift from the tests: every test under tests/faults
is in it, every test it names exists, and a row says ``open`` exactly when its test is a strict
``xfail`` (a known gap), ``pass`` otherwise."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "reliability.md"

# Collects the named test files in a separate pytest process and prints every item's node id
# with whether it carries an xfail mark (collection only: nothing runs).
COLLECT = """
import json, sys, pytest

class Items:
    def __init__(self):
        self.found = {}

    def pytest_collection_modifyitems(self, items):
        for item in items:
            mark = item.get_closest_marker("xfail")
            self.found[item.nodeid] = None if mark is None else mark.kwargs.get("reason", "")

items = Items()
args = ["--collect-only", "-q", "-p", "no:cacheprovider", *sys.argv[1:]]
code = pytest.main(args, plugins=[items])
print("ITEMS " + json.dumps(items.found))
sys.exit(0 if code in (0, 5) else code)
"""


def table_rows() -> list[tuple[str, str]]:
    """``(test reference, result)`` of every row of the fault table."""
    text = TABLE.read_text()
    section = text[text.index("## The fault table") : text.index("## Fuzzing")]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("fault", "---"):
            continue
        reference = re.fullmatch(r"`([^`]+)`", cells[2])
        assert reference, f"docs/reliability.md: the test cell {cells[2]!r} is not one `test`"
        rows.append((reference.group(1), cells[3]))
    return rows


def collected(files: set[str]) -> dict[str, str | None]:
    """Node id -> xfail reason (None: not xfail) of every test in ``files``."""
    done = subprocess.run(
        [sys.executable, "-c", COLLECT, *sorted(files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("ITEMS ")), None)
    assert done.returncode == 0 and line is not None, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(line[len("ITEMS ") :])


def test_the_fault_table_names_every_fault_test_and_says_which_are_open():
    rows = table_rows()
    assert len(rows) >= 30
    files = {ref.split("::")[0] for ref, _ in rows}
    files |= {str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "faults").glob("test_*.py")}
    items = collected(files)
    named: set[str] = set()
    for reference, result in rows:
        matched = {
            n: r for n, r in items.items() if n == reference or n.startswith(reference + "[")
        }
        assert matched, f"docs/reliability.md names {reference}, which is not a test"
        named |= set(matched)
        xfail = {n for n, reason in matched.items() if reason is not None}
        if result == "open":
            assert xfail == set(matched), f"{reference} is open in the table but not xfail"
        else:
            assert result == "pass", f"{reference}: result {result!r}; allowed: pass, open"
            assert not xfail, f"{reference} is xfail ({items[min(xfail)]}) but the table says pass"
    fault_tests = {n for n in items if n.startswith("tests/faults/")}
    assert fault_tests <= named, (
        f"fault tests not in docs/reliability.md: {sorted(fault_tests - named)}"
    )
