"""The README's "Adding a competition" example, taken from the README as written, registered from
another package through the entry-point group, and run through the whole loop by `demo`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_competition_runs_the_whole_loop(tmp_path):
    text = README.read_text()
    code = text.split("A complete multi-class example")[1].split("```python\n")[1].split("```")[0]
    (tmp_path / "readme_flowers.py").write_text(code)
    info = tmp_path / "readme_flowers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: readme_flowers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[kaggletools.competitions]\nflowers = readme_flowers\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    listed = subprocess.run([sys.executable, "-m", "kaggletools", "competitions"], capture_output=True, text=True,
                            env=env)
    assert "flowers-recognition" in listed.stdout, listed.stderr
    quick = "from kaggletools import demo; demo.main('flowers', 'demo', progress=False, n_train=120, n_test=40)"
    demo = subprocess.run([sys.executable, "-c", quick], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "validated" in demo.stdout and "beaten" in demo.stdout and "NOT beaten" not in demo.stdout, demo.stdout
