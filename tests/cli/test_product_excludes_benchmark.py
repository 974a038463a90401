"""The benchmark is a tool, not part of the product: `keyledger` never imports it (nor moto,
which only the benchmark's comparison needs), and the installed package does not hold it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parents[2]


def test_keyledger_help_imports_neither_the_benchmark_nor_moto() -> None:
    probe = (
        "import sys\n"
        "from app.entrypoints.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tools', 'moto')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_the_installed_package_holds_no_benchmark() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(where=str(REPO), include=include)
    assert "app" in packages
    assert not [p for p in packages if p.startswith("tools") or "bench" in p]


def test_the_benchmark_runs_from_the_checkout() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--suite" in out and "--operations" in out
