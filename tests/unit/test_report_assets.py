"""The report's CSS and script are package data: a copy of the package with exactly what
pyproject.toml installs renders the page; without them the error says to reinstall."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from churnlab import report

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "churnlab"
RENDER = (
    "import datetime as dt\n"
    "from churnlab import report\n"
    "page = report.render(report.ReportInputs(title='t', as_of=dt.date(2025, 3, 1),\n"
    "    generated_at=dt.datetime(2025, 3, 2)))\n"
    "import churnlab; print(churnlab.__file__); print(page)\n"
)


def _installed_copy(dest: Path, *, with_data: bool) -> Path:
    """The package as a wheel built from pyproject.toml lays it out: modules + package data."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["churnlab"] if with_data else []
    root = dest / "site"
    target = root / "churnlab"
    target.mkdir(parents=True)
    for path in PACKAGE.rglob("*"):
        rel = path.relative_to(PACKAGE).as_posix()
        module = path.suffix == ".py" and "/" not in rel
        data = any(fnmatch.fnmatch(rel, g) for g in globs)
        if path.is_file() and "__pycache__" not in rel and (module or data):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target / rel)
    return root


def _render_in(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RENDER],
        cwd=site,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_assets_are_package_data_and_inlined() -> None:
    css = (PACKAGE / "report_assets" / "report.css").read_text()
    js = (PACKAGE / "report_assets" / "report.js").read_text()
    page = report.render(
        report.ReportInputs(title="t", as_of="2025-03-01", generated_at="2025-03-02")
    )
    assert f"<style>{css}</style>" in page and f"<script>{js}</script>" in page
    assert "fmtMoney" in js and ":root{" in css


def test_render_works_from_an_installed_copy(tmp_path: Path) -> None:
    site = _installed_copy(tmp_path, with_data=True)
    done = _render_in(site)
    assert done.returncode == 0, done.stderr
    where, page = done.stdout.split("\n", 1)
    assert Path(where).parent == site / "churnlab"  # not the source tree
    css = (site / "churnlab" / "report_assets" / "report.css").read_text()
    assert f"<style>{css}</style>" in page


def test_a_copy_without_the_data_says_to_reinstall(tmp_path: Path) -> None:
    done = _render_in(_installed_copy(tmp_path, with_data=False))
    assert done.returncode != 0
    assert "report.css is missing from the installed churnlab package" in done.stderr
    assert "reinstall churnlab" in done.stderr


@pytest.mark.parametrize("name", ["report.css", "report.js"])
def test_pyproject_ships_each_asset(name: str) -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["churnlab"]
    assert any(fnmatch.fnmatch(f"report_assets/{name}", g) for g in globs)
