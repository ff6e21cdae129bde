"""The package's layering (docs/architecture.md): arrows point down, no cycles, pure cores.

Every import in src/ampgate is read from the source (top level, inside functions and under
``TYPE_CHECKING`` alike): a module imports its own package or a lower layer, never a higher one;
no two modules import each other through any path; ``codec`` and ``dlm`` import no I/O, clock or
device code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "ampgate"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("demo",),
    ("daemon",),
    ("sim",),
    ("gateway",),
    ("interfaces",),
    ("config", "devices"),
    ("dlm", "codec", "transport"),
    ("errors", "logging", "__init__"),
)
"""Top to bottom; ``__main__`` is the ``python -m ampgate`` entry point above them all."""
RANK = {part: i for i, parts in enumerate(LAYERS) for part in parts} | {"__main__": -1}

PURE_FORBIDDEN = (
    "asyncio", "socket", "selectors", "ssl", "http", "urllib", "subprocess",
    "time", "datetime", "random", "pymodbus", "serial", "serial_asyncio", "serial_asyncio_fast",
)  # fmt: skip
"""What a pure core (codec, dlm) never imports: I/O, the clock, randomness."""


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Every module ``name`` imports, as absolute names.

    ``from X import y`` counts ``X.y`` when that is a module of ``known``, else ``X``: importing a
    submodule from a package does not import what the package's ``__init__`` imports.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in known or not known else base)
    return found


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def graph() -> dict[str, set[str]]:
    """Module → the ampgate modules it imports (only names that are modules)."""
    mods = modules()
    known = set(mods)
    return {
        name: {m for m in imports_of(name, path, known) if m in mods and m != name}
        for name, path in mods.items()
    }


def test_every_package_has_a_layer():
    missing = {layer_of(m) for m in modules()} - set(RANK)
    assert not missing, f"add {sorted(missing)} to LAYERS and to docs/architecture.md"


def test_imports_point_down_or_stay_in_their_package():
    upward = []
    for name, targets in graph().items():
        for target in targets:
            src, dst = layer_of(name), layer_of(target)
            if src != dst and RANK[dst] <= RANK[src] and dst != "__init__":
                upward.append(f"{name} -> {target} ({src} may not import {dst})")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycles():
    g = graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(g[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("core", ["codec", "dlm"])
def test_pure_cores_import_no_io_clock_or_upper_layer(core):
    bad = []
    for name, path in modules().items():
        if layer_of(name) != core:
            continue
        for target in imports_of(name, path, set(modules())):
            root = target.split(".")[0]
            if root in PURE_FORBIDDEN:
                bad.append(f"{name} imports {target}")
            if root == "ampgate" and layer_of(target) not in (core, "errors"):
                bad.append(f"{name} imports {target}")
    assert not bad, "\n".join(sorted(bad))


def test_the_engine_holds_no_device_register_tables():
    """EVC2 register meanings (enum tables of reg 6 and reg 33) live in ampgate.devices."""
    for path in (PACKAGE / "dlm").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {
            t.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        assert not names & {"_EVSE_STATUS", "_IEC_STATE"}, path


def test_the_checks_see_a_real_violation(tmp_path):
    """The scanner resolves relative imports and finds names under functions."""
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from ..gateway import loop\n", encoding="utf-8")
    assert "ampgate.gateway.loop" in imports_of("ampgate.interfaces.x", sample)
