"""The README's "Adding a competition" example, taken from the README as written, registered from
another package through the entry-point group, and run through the whole loop by `demo`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("heading, module, slug, alias", [
    ("A complete multi-class example", "readme_flowers", "flowers-recognition", "flowers"),
    ("A multi-label example", "readme_landscapes", "landscape-tags", "landscapes")])
def test_the_readme_example_competitions_run_the_whole_loop(tmp_path, heading, module, slug, alias):
    text = README.read_text()
    code = text.split(heading)[1].split("```python\n")[1].split("```")[0]
    (tmp_path / f"{module}.py").write_text(code)
    info = tmp_path / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[kaggletools.competitions]\n{alias} = {module}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    listed = subprocess.run([sys.executable, "-m", "kaggletools", "competitions"], capture_output=True, text=True,
                            env=env)
    assert slug in listed.stdout, listed.stderr
    quick = f"from kaggletools.steps import demo; demo.main({alias!r}, 'demo', progress=False, n_train=120, n_test=40)"
    demo = subprocess.run([sys.executable, "-c", quick], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "validated" in demo.stdout and "beaten" in demo.stdout and "NOT beaten" not in demo.stdout, demo.stdout


def test_the_readme_interface_tables_name_what_exists():
    """Every attribute, method, base and layout helper the README's reference names is real."""
    import re

    from kaggletools.competition import bases
    from kaggletools.io import files
    from kaggletools.competition import fixtures
    from kaggletools.competition import layouts
    from kaggletools.competition.interface import Competition

    text = README.read_text().split("## Adding a competition")[1].split("\n## ")[0]
    reference = text.split("The whole interface")[1]
    rows = re.findall(r"^\| `(\w+)", reference, re.M)
    assert len(rows) >= 20, rows
    for name in rows:
        assert name == "register" or hasattr(Competition, name), name
    table = text.split("The bases in `kaggletools.competition.bases`")[1].split("`kaggletools.competition.layouts`")[0]
    named = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert len(named) == 6, named
    for name in named:
        assert isinstance(getattr(bases, name), type) and issubclass(getattr(bases, name), Competition), name
    for helper in re.findall(r"`(\w+)\(", text):
        owners = (layouts, fixtures, files, Competition, bases.MultiLabelTags)
        assert any(hasattr(m, helper) for m in owners) or helper in {
            "register", "Recipe", "MultiClass", "Binary", "MultiLabel", "super"}, helper
