"""The registry: third-party packages register competitions through the entry-point group
`kaggletools.competitions`, a broken plugin is a warning, and bad declarations are named errors."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from kaggletools.competition import registry as competition
from kaggletools.competition import tasks
from kaggletools.competition.bases import MultiClassLabel
from kaggletools.errors import CompetitionError

PLUGIN = '''
from kaggletools.competition.bases import MultiClassLabel
from kaggletools.competition.registry import register
from kaggletools.competition import layouts


@register("my-flowers", "flowers")
class Flowers(MultiClassLabel):
    title = "A third-party competition"
    classes = ("daisy", "rose", "tulip")
    files = ("train.zip",)

    def items(self, data_dir, split):
        return layouts.labelled_by_folder(data_dir, "train", self.classes) if split == "train" \\
            else layouts.unlabelled(data_dir, "test")

    def make_fixture(self, folder, n_train=64, n_test=32, seed=0):
        raise NotImplementedError("not needed by this test")
'''


def _install_plugin(root, module: str, body: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[kaggletools.competitions]\n{module} = {module}\n")


def _competitions(root) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-m", "kaggletools", "competitions"], capture_output=True, text=True,
                          env=env)


def test_a_plugin_registers_through_the_entry_point_group(tmp_path):
    _install_plugin(tmp_path, "kt_flowers", PLUGIN)
    out = _competitions(tmp_path)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if "my-flowers" in line)
    assert "flowers" in line and "multiclass" in line and "micro_f1" in line


def test_a_broken_plugin_is_a_warning_and_the_others_still_list(tmp_path):
    _install_plugin(tmp_path, "kt_broken", "raise RuntimeError('plugin bug')\n")
    out = _competitions(tmp_path)
    assert out.returncode == 0 and "dogs-vs-cats" in out.stdout
    assert "warning: competition plugin 'kt_broken'" in out.stderr and "plugin bug" in out.stderr


def test_a_task_that_does_not_exist_is_named_with_the_fix():
    with pytest.raises(CompetitionError, match="unknown task 'multiclas'.*MultiClass()"):
        tasks.resolve("multiclas")

    @competition.register("test-bad-task")
    class Bad(MultiClassLabel):
        task = "multi-class"
        classes = ("a", "b")

        def items(self, data_dir, split):
            raise AssertionError

        def make_fixture(self, folder, n_train=64, n_test=32, seed=0):
            raise AssertionError

    try:
        with pytest.raises(CompetitionError, match="test_registry.Bad: unknown task 'multi-class'"):
            competition.get("test-bad-task")
        Bad.task, Bad.classes = tasks.Binary(), ("a", "b")
        with pytest.raises(CompetitionError, match="binary task has one class"):
            competition.get("test-bad-task")
        Bad.task, Bad.classes = tasks.MultiClass(), ("a", "a")
        with pytest.raises(CompetitionError, match="unique"):
            competition.get("test-bad-task")
    finally:
        competition._REGISTRY.pop("test-bad-task")
