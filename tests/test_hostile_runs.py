"""Run folders, blends, plots and the decode cache against hostile and unlucky input: text that
matplotlib would parse as math, a full disk or a read-only place (simulated: a writer that raises
ENOSPC, torch's writer failing, a disk_usage that reports no room), files of a run or blend edited
by hand (probabilities out of range, NaN, text, wrong types in config.json, a model.pt of another
competition, a checkpoint of another architecture), two processes on one run, leftovers of killed
ones. Each is one line naming the file (and the field), with nothing half-written, or is drawn
literally; nothing costs a trained model."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kaggletools import api
from kaggletools.cli.app import main as cli
from kaggletools.errors import RunError
from kaggletools.runs import folder as runs

REDUX = "dogs-vs-cats-redux-kernels-edition"
TINY = dict(backbone="resnet18", pretrained=False, size=32, batch_size=8, freeze_epochs=1, epochs=1, progress=False)
TINY_FLAGS = ["--backbone", "resnet18", "--no-pretrained", "--size", "32", "--batch-size", "8", "--freeze-epochs", "1",
              "--epochs", "1", "--quiet"]
MATH = "$\\frac{x}_^{"  # unbalanced math: matplotlib's parser fails on it


# -- fixtures: one finished run, one stopped after its first epoch --------------------------------
@pytest.fixture(scope="module")
def finished(dogs_dir, tmp_path_factory) -> Path:
    """A finished run with its test predictions."""
    root = tmp_path_factory.mktemp("finished")
    run = api.train(REDUX, dogs_dir, runs_dir=root, **TINY)
    api.predict(run.path, out=root / "sub.csv", progress=False)
    assert (run.path / "test_predictions.csv").is_file()
    return run.path


@pytest.fixture(scope="module")
def stopped(dogs_dir, tmp_path_factory) -> Path:
    """A run interrupted (Ctrl-C) right after its first epoch's checkpoint: resumable."""
    from kaggletools.steps import train as training

    write = training.Checkpoints.__call__

    def then_stop(self, learner, position):
        write(self, learner, position)
        raise KeyboardInterrupt

    root = tmp_path_factory.mktemp("stopped")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.Checkpoints, "__call__", then_stop)
        with pytest.raises(KeyboardInterrupt):
            api.train(REDUX, dogs_dir, runs_dir=root, **TINY)
    (folder,) = (root / REDUX).iterdir()
    assert runs.Run(folder).status() == "interrupted" and (folder / runs.CHECKPOINT).is_file()
    return folder


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob("*") if ".partial" in p.name)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- 1. text from outside, drawn literally; a plot never costs the model ---------------------------
def test_plots_draw_outside_text_literally(tmp_path, monkeypatch):
    import matplotlib

    from kaggletools.io import plots

    monkeypatch.setitem(matplotlib.rcParams, "text.usetex", True)  # a user's matplotlibrc: no TeX here
    fig, ax = plots.figure()
    ax.plot([1e-4, 1e-2], [1, 2], label=f"train {MATH}")
    ax.set_xscale("log")
    ax.set_title(f"cat.{MATH}.jpg")
    ax.set_xlabel("$x_")
    ax.set_yticks([1, 2], [MATH, "b$_^"])
    ax.text(0.5, 0.5, "$\\notacommand$ 100% #&")
    ax.legend()
    fig.suptitle("$$$")
    path = plots.save(fig, tmp_path / "hostile.png")
    assert path.stat().st_size > 1000 and not _leftovers(tmp_path)
    title = ax.title
    assert not title.get_parse_math() and not title.get_usetex()
    ticks = [t for t in ax.xaxis.get_major_ticks() if t.label1.get_text()]
    assert ticks and all(t.label1.get_parse_math() for t in ticks)  # 10^-3 on the log axis stays math


def test_a_grid_of_items_titled_with_math_characters_is_drawn(tmp_path):
    from kaggletools.runs import gallery

    items = [np.full((8, 8, 3), 128, np.uint8)] * 3
    titles = [f"{MATH}\nactual: $dog", "a_b^c $x$ $", "\\$ 50%"]
    assert gallery.grid(items, titles, "image", tmp_path / "grid.png", title=f"top {MATH}").is_file()


def test_training_files_named_with_math_characters_train_to_the_end(dogs_dir, tmp_path):
    """Each training file renamed cat.<n>$\\frac{x}_^{.jpg: every plot that shows an id (top losses)
    is drawn, and the run ends finished with its weights and no warning."""
    data = tmp_path / "data"
    shutil.copytree(dogs_dir, data)
    for image in sorted((data / "train").iterdir()):
        kind, n = image.name.split(".")[:2]
        image.rename(image.with_name(f"{kind}.{n}{MATH}.jpg"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = api.train(REDUX, data, runs_dir=tmp_path / "runs", **TINY)
    assert run.status() == "finished" and (run.path / "interpret_top_losses.png").is_file()
    summary = json.loads((run.path / "interpret.json").read_text())
    assert any(MATH in row["id"] for row in summary["top_losses"])


def test_a_plot_that_fails_is_a_warning_and_the_run_keeps_its_weights(dogs_dir, tmp_path, monkeypatch):
    from kaggletools.runs import history

    def broken(*args, **kwargs):
        raise ValueError("Unknown symbol: \\frac (mathtext)")

    monkeypatch.setattr(history, "history_plot", broken)
    with pytest.warns(UserWarning, match="history.png could not be written .*ValueError.*run and its weights"):
        run = api.train(REDUX, dogs_dir, runs_dir=tmp_path, **TINY)
    assert run.status() == "finished" and (run.path / "model.pt").is_file() and not (run.path / "failed.json").exists()
    assert (run.path / "interpret_confusion.png").is_file()  # the other pictures are still drawn
    assert api.predict(run.path, out=tmp_path / "sub.csv", progress=False).is_file()


def test_a_report_that_fails_is_one_warning_line_on_the_command_line(dogs_dir, tmp_path, monkeypatch, capsys):
    from kaggletools.runs import report

    def broken(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write", broken)
    assert cli(["train", REDUX, "--data", str(dogs_dir), "--runs", str(tmp_path), *TINY_FLAGS]) == 0
    out, err = capsys.readouterr()
    (line,) = [line for line in err.splitlines() if line.startswith("warning:") and "report.html" in line]
    assert "could not be written" in line and Path(out.strip()).joinpath("model.pt").is_file()


# -- 2. full disks and read-only places ----------------------------------------------------------
def _fails_for(name: str, error: BaseException):
    """torch.save failing for one file name (the other saves go through)."""
    save = torch.save

    def failing(obj, f, *args, **kwargs):
        if f".{name}.partial-" in str(f):
            Path(f).write_bytes(b"half a checkpoint")  # what a full disk leaves behind
            raise error
        return save(obj, f, *args, **kwargs)

    return failing


ENFORCE = RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4288 vs 4176\n"
                       "PytorchStreamWriter failed writing file data/3: file write failed")


def test_a_checkpoint_on_a_full_disk_is_one_line_naming_it(dogs_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch, "save", _fails_for(runs.CHECKPOINT, ENFORCE))
    assert cli(["train", REDUX, "--data", str(dogs_dir), "--runs", str(tmp_path), *TINY_FLAGS]) == 1
    line = _one_line(capsys)
    assert "checkpoint.pt could not be written (the disk is full)" in line and "enforce" not in line
    (folder,) = (tmp_path / REDUX).iterdir()
    failed = json.loads((folder / "failed.json").read_text())
    assert failed["status"] == "failed" and failed["error"] in line
    assert not _leftovers(folder) and not (folder / "model.pt").exists()


def test_the_weights_on_a_full_disk_leave_no_half_file(dogs_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _fails_for(runs.WEIGHTS, OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(RunError, match="model.pt could not be written \\(the disk is full\\)"):
        api.train(REDUX, dogs_dir, runs_dir=tmp_path, **TINY)
    (folder,) = (tmp_path / REDUX).iterdir()
    assert runs.Run(folder).status() == "failed" and not _leftovers(folder) and not (folder / "model.pt").exists()


@pytest.mark.parametrize("code, said", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only"),
                                        (errno.EACCES, "no permission"), (errno.EIO, "OSError")])
def test_a_run_file_that_cannot_be_written_is_one_line_and_nothing_partial(tmp_path, monkeypatch, code, said):
    run = runs.Run.create(tmp_path, "r", exact=True)

    def refuse(self, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(self))

    monkeypatch.setattr(Path, "write_text", refuse)
    with pytest.raises(RunError) as caught:
        run.save_json("config.json", {"a": 1})
    message = str(caught.value)
    assert str(run.file("config.json")) in message and said in message and "\n" not in message
    run.mark_failed(RuntimeError("boom"))  # failed.json cannot be written either: no second error
    assert not list(run.path.iterdir())


def test_interpret_on_a_full_disk_is_one_line_naming_the_file(finished, tmp_path, monkeypatch, capsys):
    folder = _copy(finished, tmp_path / "run")
    write_text = Path.write_text

    def full(self, *args, **kwargs):
        if "report.html" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert cli(["interpret", str(folder)]) == 1
    line = _one_line(capsys)
    assert f"{folder / 'report.html'} could not be written (the disk is full)" in line
    assert not _leftovers(folder) and runs.Run(folder).status() == "finished"


def test_the_decode_cache_checks_its_room_before_mapping(dogs_dir, tmp_path, monkeypatch):
    from kaggletools.competition import registry
    from kaggletools.data import cache
    from kaggletools.data import items as data

    comp = registry.get(REDUX)
    items = data.train_items(comp, dogs_dir)
    monkeypatch.setenv("KAGGLETOOLS_CACHE", str(tmp_path / "cache"))
    usage = shutil.disk_usage

    def full(path):
        return usage(path)._replace(free=1024)

    monkeypatch.setattr(shutil, "disk_usage", full)
    with pytest.warns(UserWarning, match="no room .*MiB are free.*decoding into memory"):
        array = cache.load_items(comp, dogs_dir, items, 24, progress=False)
    assert not list((tmp_path / "cache").glob("*.npy")) and not _leftovers(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", usage)
    cached = cache.load_items(comp, dogs_dir, items, 24, progress=False)
    assert isinstance(cached, np.memmap) and np.array_equal(np.asarray(cached), array)


def test_items_that_fit_neither_the_cache_nor_memory_stop_cleanly(dogs_dir, tmp_path, monkeypatch, capsys):
    from kaggletools.cli.app import one_line
    from kaggletools.competition import registry
    from kaggletools.data import cache
    from kaggletools.data import items as data

    comp = registry.get(REDUX)
    items = data.train_items(comp, dogs_dir)
    monkeypatch.setenv("KAGGLETOOLS_CACHE", str(tmp_path / "cache"))
    usage, sysconf = shutil.disk_usage, os.sysconf
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(path)._replace(free=1024))
    monkeypatch.setattr(os, "sysconf", lambda name: 16 if name == "SC_AVPHYS_PAGES" else sysconf(name))
    with pytest.warns(UserWarning, match="no room"), pytest.raises(OSError) as caught:
        cache.load_items(comp, dogs_dir, items, 24, progress=False)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "cache")
    assert "the disk is full" in one_line(caught.value) and str(tmp_path / "cache") in one_line(caught.value)
    assert not list((tmp_path / "cache").glob("*.npy")) and not _leftovers(tmp_path)


@pytest.mark.parametrize("where", ["fallocate", "open"])
def test_a_cache_that_cannot_be_written_falls_back_to_memory(dogs_dir, tmp_path, monkeypatch, where):
    from kaggletools.competition import registry
    from kaggletools.data import cache
    from kaggletools.data import items as data

    comp = registry.get(REDUX)
    items = data.train_items(comp, dogs_dir).head(6)
    monkeypatch.setenv("KAGGLETOOLS_CACHE", str(tmp_path / "cache"))
    if where == "fallocate":  # the blocks are not there: a sparse map would SIGBUS when filled
        def no_room(fd, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "posix_fallocate", no_room)
    else:  # a read-only cache folder
        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(args[0]))

        monkeypatch.setattr(np.lib.format, "open_memmap", read_only)
    with pytest.warns(UserWarning, match="decoding into memory"):
        array = cache.load_items(comp, dogs_dir, items, 24, progress=False)
    assert array.shape == (6, 24, 24, 3) and not array.flags.writeable
    assert not list((tmp_path / "cache").glob("*.npy")) and not _leftovers(tmp_path / "cache")


@pytest.mark.parametrize("damage", ["cut short", "not an array", "other items"])
def test_a_damaged_cache_file_is_decoded_again(dogs_dir, tmp_path, monkeypatch, damage):
    from kaggletools.competition import registry
    from kaggletools.data import cache
    from kaggletools.data import items as data

    comp = registry.get(REDUX)
    items = data.train_items(comp, dogs_dir).head(5)
    monkeypatch.setenv("KAGGLETOOLS_CACHE", str(tmp_path / "cache"))
    whole = np.array(cache.load_items(comp, dogs_dir, items, 24, progress=False))  # a copy, not the map
    (path,) = (tmp_path / "cache").glob("*.npy")
    if damage == "cut short":
        path.write_bytes(path.read_bytes()[:-500])
    elif damage == "not an array":
        path.write_bytes(b"garbage")
    else:
        np.save(path, np.zeros((2, 24, 24, 3), np.uint8))
    with pytest.warns(UserWarning, match="is damaged; decoding again"):
        again = cache.load_items(comp, dogs_dir, items, 24, progress=False)
    assert np.array_equal(np.asarray(again), whole)


# -- 4. what a verb reads from a run folder ------------------------------------------------------
def _edit_meta(folder: Path, **changes) -> None:
    state = torch.load(folder / "model.pt", weights_only=True)
    state["meta"].update(changes)
    torch.save(state, folder / "model.pt")


def test_a_model_of_another_competition_than_config_json_is_refused(finished, tmp_path, capsys):
    folder = _copy(finished, tmp_path / "run")
    _edit_meta(folder, competition="dogs-vs-cats")  # same outputs, other competition
    assert cli(["predict", str(folder), "--out", str(tmp_path / "sub.csv")]) == 1
    line = _one_line(capsys)
    assert "model.pt holds a model of 'dogs-vs-cats'" in line and "config.json names" in line
    assert not (tmp_path / "sub.csv").exists()


def test_a_checkpoint_of_another_architecture_is_one_short_line(stopped, tmp_path, capsys):
    folder = _copy(stopped, tmp_path / "run")
    state = torch.load(folder / runs.CHECKPOINT, weights_only=True)
    from kaggletools.model import network

    other, _ = network.create("resnet34", 1, pretrained=False)
    state["model"] = other.state_dict()
    torch.save(state, folder / runs.CHECKPOINT)
    assert cli(["train", "--resume", str(folder), "-q"]) == 1
    line = _one_line(capsys)
    assert "checkpoint.pt does not fit resnet18" in line and len(line) < 400
    assert runs.Run(folder).status() != "finished"


def test_best_weights_of_another_architecture_are_one_short_line(stopped, tmp_path, capsys):
    from kaggletools.model import network

    folder = _copy(stopped, tmp_path / "run")
    state = torch.load(folder / runs.CHECKPOINT, weights_only=True)
    state["best"] = {"epoch": 1, "score": 0.5}
    torch.save(state, folder / runs.CHECKPOINT)
    torch.save({"model": network.create("resnet34", 1, pretrained=False)[0].state_dict()}, folder / runs.BEST)
    assert cli(["train", "--resume", str(folder), "-q"]) == 1
    line = _one_line(capsys)
    assert "best.pt does not fit resnet18" in line and len(line) < 400
    failed = json.loads((folder / "failed.json").read_text())
    assert failed["status"] == "failed" and "best.pt does not fit" in failed["error"]


def test_a_submission_or_plot_on_a_full_disk_names_the_file_meant(tmp_path, monkeypatch, capsys):
    from kaggletools.cli.app import one_line
    from kaggletools.io import plots
    from kaggletools.score import submission

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(OSError) as caught:
        submission.write(pd.DataFrame({"id": [1], "label": [0.5]}), tmp_path / "sub.csv")
    assert caught.value.filename == str(tmp_path / "sub.csv") and not list(tmp_path.iterdir())
    assert "the disk is full" in one_line(caught.value) and str(tmp_path / "sub.csv") in one_line(caught.value)
    fig, _ = plots.figure()
    monkeypatch.setattr(type(fig), "savefig", full)
    with pytest.raises(OSError) as caught:
        plots.save(fig, tmp_path / "plot.png")
    assert caught.value.filename == str(tmp_path / "plot.png") and not list(tmp_path.iterdir())


CONFIG_EDITS = {  # case -> (edit of config.json, what the line names)
    "size as text": (lambda c: c["recipe"].update(size="32"), "recipe.size is '32' (str), not int"),
    "pretrained as text": (lambda c: c["recipe"].update(pretrained="yes"), "recipe.pretrained is 'yes'"),
    "lr negative": (lambda c: c["recipe"].update(lr=-1.0), "recipe.lr -1.0 must lie in"),
    "tta unknown": (lambda c: c["recipe"].update(tta="flips"), "recipe.tta 'flips' is not one of"),
    "keep as number": (lambda c: c["options"].update(keep=3), "options.keep is 3 (int), not str"),
    "recipe a list": (lambda c: c.update(recipe=[1, 2]), "recipe is a list, not an object"),
    "competition a number": (lambda c: c.update(competition=5), "competition is 5, not a name"),
    "data_dir missing": (lambda c: c.pop("data_dir"), "config.json does not hold what kaggletools writes"),
    "channels_last as text": (lambda c: c["options"].update(channels_last="on"), "options.channels_last is 'on'"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_EDITS))
def test_a_hand_edited_config_json_names_the_file_and_the_field(stopped, tmp_path, capsys, case):
    folder = _copy(stopped, tmp_path / "run")
    edit, said = CONFIG_EDITS[case]
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    assert cli(["train", "--resume", str(folder), "-q"]) == 1
    line = _one_line(capsys)
    assert "config.json" in line and said in line, line
    assert " --" not in line and "TypeError" not in line.replace("(TypeError", "")


def test_wrong_types_in_a_finished_run_are_named_by_predict_and_interpret(finished, tmp_path, capsys):
    folder = _copy(finished, tmp_path / "run")
    _edit_meta(folder, recipe={**torch.load(folder / "model.pt", weights_only=True)["meta"]["recipe"], "size": "32"})
    assert cli(["predict", str(folder), "--out", str(tmp_path / "sub.csv")]) == 1
    assert "model.pt: meta.recipe.size is '32' (str), not int" in _one_line(capsys)
    config = json.loads((folder / "config.json").read_text())
    config["recipe"]["presize"] = [36]
    (folder / "config.json").write_text(json.dumps(config))
    assert cli(["interpret", str(folder)]) == 1
    assert "config.json: recipe.presize is [36] (list), not int" in _one_line(capsys)


def test_a_second_process_on_one_run_is_refused_naming_the_first(stopped, tmp_path, capsys):
    folder = _copy(stopped, tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(folder / runs.LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, f'{os.getpid()}\\n'.encode())\n"
         "print('holding', flush=True)\ntime.sleep(120)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert cli(["train", "--resume", str(folder), "-q"]) == 1
        line = _one_line(capsys)
        assert f"process {holder.pid} is training in it" in line and str(folder) in line
        assert runs.Run(folder).status() == "interrupted"  # the first one's folder is left alone
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (folder / runs.LOCK).read_text().strip() == str(holder.pid)  # stale: its process is dead
    api.train(None, None, resume=folder)  # taken over
    assert runs.Run(folder).status() == "finished" and not (folder / runs.LOCK).exists()


def test_a_run_being_trained_is_locked_against_a_resume(dogs_dir, tmp_path, monkeypatch):
    from kaggletools.steps import train as training

    write, refusals = training.Checkpoints.__call__, []

    def try_to_resume(self, learner, position):
        write(self, learner, position)
        with pytest.raises(RunError) as caught:
            api.train(None, None, resume=self.run.path)
        refusals.append(str(caught.value))

    monkeypatch.setattr(training.Checkpoints, "__call__", try_to_resume)
    run = api.train(REDUX, dogs_dir, runs_dir=tmp_path, **TINY)
    assert refusals and all(f"process {os.getpid()} is training in it" in r for r in refusals)
    assert run.status() == "finished" and not (run.path / runs.LOCK).exists()


def test_resume_removes_only_our_partial_files_of_dead_processes(stopped, tmp_path):
    folder = _copy(stopped, tmp_path / "run")
    dead = _dead_pid()
    ours = [folder / f".checkpoint.pt.partial-{dead}", folder / f".metrics.csv.partial-{dead}"]
    theirs = [folder / ".notes.partial-draft", folder / "notes.partial-123", folder / f"checkpoint.pt.partial-{dead}"]
    for path in ours + theirs:
        path.write_bytes(b"cut by SIGKILL")
    api.train(None, None, resume=folder)
    assert runs.Run(folder).status() == "finished"
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)


def test_a_partial_file_of_a_live_process_is_kept(stopped, tmp_path):
    folder = _copy(stopped, tmp_path / "run")
    live = folder / f".checkpoint.pt.partial-{os.getppid()}"
    live.write_bytes(b"being written")
    assert runs.Run(folder).remove_leftovers() == [] and live.exists()


def test_a_finished_run_holds_no_lock_and_no_partial_file(finished):
    assert not (finished / runs.LOCK).exists() and not _leftovers(finished)


# -- 4. what a blend reads from its runs ----------------------------------------------------------
def _edited(finished: Path, tmp_path: Path, name: str, column: str, value, row: int = 0) -> Path:
    folder = _copy(finished, tmp_path / "edited")
    table = pd.read_csv(folder / name, dtype={"id": str})
    table[column] = table[column].astype(object)
    table.loc[row, column] = value
    table.to_csv(folder / name, index=False)
    return folder


BAD_TABLES = {
    "test above 1": ("test_predictions.csv", "dog_prob", 1.5),
    "test negative": ("test_predictions.csv", "dog_prob", -0.25),
    "test NaN": ("test_predictions.csv", "dog_prob", float("nan")),
    "test text": ("test_predictions.csv", "dog_prob", "high"),
    "test infinite": ("test_predictions.csv", "dog_prob", float("inf")),
    "valid NaN": ("valid_predictions.csv", "dog_prob_tta", float("nan")),
    "valid above 1": ("valid_predictions.csv", "dog_prob_tta", 7.0),
    "valid target NaN": ("valid_predictions.csv", "dog", float("nan")),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_a_blend_refuses_bad_probabilities_naming_file_and_column(finished, tmp_path, capsys, case):
    name, column, value = BAD_TABLES[case]
    folder = _edited(finished, tmp_path, name, column, value)
    assert cli(["blend", str(finished), str(folder), "--out", str(tmp_path / "blend.csv")]) == 1
    line = _one_line(capsys)
    assert f"{folder / name}: column '{column}'" in line, line
    assert not (tmp_path / "runs").exists() and not (tmp_path / "blend.csv").exists()


def test_a_blend_refuses_a_validation_id_listed_twice(finished, tmp_path):
    folder = _copy(finished, tmp_path / "edited")
    table = pd.read_csv(folder / "valid_predictions.csv", dtype={"id": str})
    table.loc[1, "id"] = table.loc[0, "id"]
    table.to_csv(folder / "valid_predictions.csv", index=False)
    with pytest.raises(RunError, match="valid_predictions.csv lists a validation id twice"):
        api.blend([finished, folder], out=tmp_path / "b.csv", progress=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("change", ["unknown id", "missing id"])
def test_a_blend_refuses_test_ids_that_are_not_the_data_folders(finished, tmp_path, capsys, change):
    folder = _copy(finished, tmp_path / "edited")
    table = pd.read_csv(folder / "test_predictions.csv", dtype={"id": str})
    if change == "unknown id":
        table.loc[0, "id"] = "99999"
    else:
        table = table.iloc[1:]
    table.to_csv(folder / "test_predictions.csv", index=False)
    assert cli(["blend", str(folder), str(finished), "--out", str(tmp_path / "b.csv")]) == 1
    line = _one_line(capsys)
    assert f"{folder / 'test_predictions.csv'} does not list the test items" in line
    assert not (tmp_path / "runs").exists() and not (tmp_path / "b.csv").exists()


def test_run_folders_named_with_control_characters_are_listed_escaped(finished, tmp_path, capsys):
    root = tmp_path / "runs"
    _copy(finished, root / REDUX / "evil\x1b[2J\x1b]0;title\x07run")
    assert cli(["runs", "--runs", str(root)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "evil\\x1b[2J" in out


def test_html_in_names_stays_escaped_in_the_report(dogs_dir, tmp_path):
    name = "<img src=x onerror=alert(1)>$x_"
    run = api.train(REDUX, dogs_dir, folder=tmp_path / name, **TINY)
    text = (run.path / "report.html").read_text()
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;$x_" in text


def test_a_blend_refused_while_written_leaves_no_folder(finished, tmp_path, monkeypatch):
    from kaggletools.errors import SubmissionError
    from kaggletools.steps import predict as inference

    def invalid(*args, **kwargs):
        raise SubmissionError("the submission would be invalid")

    monkeypatch.setattr(inference, "write_submission", invalid)
    with pytest.raises(SubmissionError):
        api.blend([finished, finished], out=tmp_path / "b.csv", progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("config.json"))


def test_interpret_predict_or_blend_of_a_blend_folder_is_one_line(finished, tmp_path, capsys):
    result = api.blend([finished, finished], out=tmp_path / "b.csv", progress=False)
    assert cli(["interpret", result["folder"]]) == 1
    line = _one_line(capsys)
    assert "is a blend of runs, not a trained run" in line and f"kaggletools interpret {finished}" in line
    assert "KeyError" not in line
    for verb in (["predict", result["folder"], "--out", str(tmp_path / "p.csv")],
                 ["blend", result["folder"], str(finished), "--out", str(tmp_path / "bb.csv")]):
        assert cli(verb) == 1
        assert "is a blend of runs, not a trained run" in _one_line(capsys)
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "bb.csv").exists()
