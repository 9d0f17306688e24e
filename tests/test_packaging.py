"""What `pip install .` puts into site-packages: the package kaggletools (its rooms and the
competition modules as kaggletools.competitions) and its dist-info, nothing else at the top level
(a dependency once installed a stray `tests` package there: iterative stratification is now
vendored, kaggletools.data.iterstrat)."""
from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_only_kaggletools_at_its_top_level(tmp_path):
    if importlib.util.find_spec("setuptools") is None or importlib.util.find_spec("pip") is None:
        pytest.skip("building the wheel needs pip and setuptools in this environment")
    source = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("kaggletools", "competitions"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source),
                    "-w", str(tmp_path / "wheel")], check=True, cwd=source, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("kaggletools-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"kaggletools"}, sorted(top)
    assert len([t for t in top if t.endswith(".dist-info")]) == 1
    assert "kaggletools/competitions/state_farm.py" in names and "kaggletools/data/iterstrat.py" in names


def test_no_dependency_is_iterative_stratification_and_no_module_imports_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith(("iterative-stratification", "iterstrat"))]
    assert "iterative-stratification" not in (ROOT / "constraints.txt").read_text()
    users = [str(p.relative_to(ROOT)) for p in [*ROOT.glob("kaggletools/**/*.py"), *ROOT.glob("competitions/*.py")]
             if any(name.split(".")[0] == "iterstrat" for name in _imported(p))]
    assert not users, users


def _imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names
