"""The codec is sans-I/O: it imports no Modbus, serial, asyncio or socket code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import ampgate.codec

CODEC_DIR = Path(ampgate.codec.__file__).parent
FORBIDDEN_IMPORTS = (
    "pymodbus",
    "serial",
    "serial_asyncio",
    "serial_asyncio_fast",
    "socket",
    "asyncio",
    "selectors",
    "ssl",
    "http",
    "urllib",
    "ampgate.transport",
    "ampgate.daemon",
    "ampgate.devices",
)
# Checked at runtime. `socket`/`selectors` are absent on purpose: pydantic's import of the
# standard `email` package loads them; the AST scan below proves the codec itself never does.
FORBIDDEN_MODULES = (
    "pymodbus",
    "serial",
    "serial_asyncio",
    "serial_asyncio_fast",
    "asyncio",
    "ampgate.transport",
    "ampgate.daemon",
    "ampgate.devices",
)


def forbidden(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def test_importing_and_using_the_codec_loads_no_io_modules() -> None:
    script = (
        "import json, sys\n"
        "from ampgate.codec import load_map_file, plan_reads, decode_request, encode_field\n"
        f"rmap = load_map_file({str(Path(__file__).parent / 'fixtures' / 'evc2-like.toml')!r})\n"
        "(request,) = plan_reads(rmap)\n"
        "decode_request(rmap, request, [0] * request.count)\n"
        "encode_field(rmap, 'amps_to_use', 16)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    assert "ampgate.codec" in loaded
    assert [m for m in loaded if forbidden(m, FORBIDDEN_MODULES)] == []


def test_no_codec_module_imports_io() -> None:
    offenders = []
    files = sorted(CODEC_DIR.rglob("*.py"))
    assert len(files) >= 6
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if forbidden(n, FORBIDDEN_IMPORTS)]
        offenders += [
            f"{path.name}: dynamic import"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", ""))
            in ("import_module", "__import__")
        ]
    assert offenders == []
