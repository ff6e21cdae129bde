"""Packaging: build the wheel, install it into a fresh plain venv, run ampgate outside the tree.

The venv is a plain ``python -m venv`` (no system or dev site-packages); ampgate's dependencies
come from the package index pip is configured for (PyPI in CI), exactly as a user installs it.
The build runs on a copy of the sources so the checkout gets no ``build/`` or ``dist/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "one-charger-eastron-rtu.toml"
SOURCES = ("pyproject.toml", "README.md", "src", "register_maps")


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src-copy"
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, src / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
            )
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(source, src / name)
    _run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(src)],
        work,
        240,
    )
    (built,) = (work / "dist").glob("ampgate-*.whl")
    return built


def test_wheel_ships_register_maps_and_py_typed(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    maps = {
        n.rsplit("/", 1)[1]
        for n in names
        if n.startswith("ampgate/register_maps/") and n.endswith(".toml")
    }
    expected = {p.name for p in (ROOT / "register_maps").glob("*.toml")}
    assert expected and maps == expected
    assert "ampgate/py.typed" in names
    assert "ampgate/interfaces/static/status.html" in names  # the status page
    assert not any(n.startswith(("tests/", "src/")) for n in names)


def test_installed_wheel_runs_outside_the_source_tree(wheel: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    python, ampgate = venv / "bin" / "python", venv / "bin" / "ampgate"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], tmp_path, 240)
    where = _run([str(python), "-c", "import ampgate; print(ampgate.__file__)"], tmp_path, 60)
    assert Path(where.stdout.strip()).is_relative_to(venv)

    maps = _run([str(ampgate), "maps"], tmp_path, 60)
    assert "teltocharge-evc2" in maps.stdout

    site = tmp_path / "site.toml"
    shutil.copy2(EXAMPLE, site)
    check = _run([str(ampgate), "check-config", str(site)], tmp_path, 60)
    assert "valid" in check.stdout
