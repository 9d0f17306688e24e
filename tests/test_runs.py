"""Runs people come back to: a checkpoint after every epoch, interrupted runs (SIGTERM, a killed
process) resumed to the very weights an uninterrupted run ends with, the best epoch kept on
request, the final fit on every item with post-processing from another run, blends, the list of
past runs, the dry run, and run folders that cannot be used refused in one line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kaggletools import api
from kaggletools.runs import folder as runs
from kaggletools.fit import schedules
from kaggletools.cli.app import main as cli
from kaggletools.errors import CompetitionError, OptionError, RunError

REDUX = "dogs-vs-cats-redux-kernels-edition"
TINY = ["--backbone", "resnet18", "--no-pretrained", "--size", "32", "--batch-size", "8", "--freeze-epochs", "2",
        "--epochs", "2", "--quiet"]
TINY_API = dict(backbone="resnet18", pretrained=False, size=32, batch_size=8, freeze_epochs=2, epochs=2,
                progress=False)


def _weights(folder: Path) -> dict:
    return torch.load(folder / "model.pt", weights_only=True)["state_dict"]


def _only_run(root: Path) -> Path:
    (folder,) = [p for p in (root / REDUX).iterdir() if p.is_dir()]
    return folder


def _start(data: Path, root: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "kaggletools", "train", REDUX, "--data", str(data), "--runs", str(root), *TINY]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for_epochs(root: Path, n: int, proc: subprocess.Popen) -> Path:
    """Poll until the run folder's checkpoint holds `n` epochs (the process still running)."""
    for _ in range(6000):
        folders = list((root / REDUX).glob("*")) if (root / REDUX).is_dir() else []
        if folders and (folders[0] / "metrics.csv").is_file() and (folders[0] / "checkpoint.pt").is_file():
            if len(pd.read_csv(folders[0] / "metrics.csv")) >= n:
                return folders[0]
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        time.sleep(0.05)
    raise AssertionError("the run never reached its epoch")


@pytest.fixture(scope="module")
def uninterrupted(dogs_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("whole")
    proc = subprocess.run([sys.executable, "-m", "kaggletools", "train", REDUX, "--data", str(dogs_dir), "--runs",
                           str(root), *TINY], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return _only_run(root)


@pytest.mark.parametrize("sig,code,status", [(signal.SIGTERM, 143, "interrupted"), (signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGKILL, -9, "killed")])
def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(dogs_dir, tmp_path, uninterrupted, sig, code, status):
    root = tmp_path / "runs"
    proc = _start(dogs_dir, root)
    folder = _wait_for_epochs(root, 1, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    if sig != signal.SIGKILL:
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted")
    assert runs.Run(folder).status() == status and not (folder / "model.pt").exists()
    with pytest.raises(RunError, match="not a finished run"):
        api.predict(folder)
    resumed = subprocess.run([sys.executable, "-m", "kaggletools", "train", "--resume", str(folder), "--quiet"],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert runs.Run(folder).status() == "finished" and not (folder / "failed.json").exists()
    resumed, whole = _weights(folder), _weights(uninterrupted)
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[k], whole[k]) for k in whole), "resumed weights differ from an uninterrupted run"
    assert len(pd.read_csv(folder / "metrics.csv")) == 4



def test_an_interrupt_while_a_checkpoint_is_written_waits_for_it(dogs_dir, tmp_path, uninterrupted, monkeypatch):
    """Ctrl-C just as an epoch ends (while its checkpoint is written) must not cost that epoch."""
    from kaggletools.steps import train as training

    write = training.Checkpoints.__call__

    def interrupted_while_writing(self, learner, position):
        if position.done == 1 and position.phase == 0:
            os.kill(os.getpid(), signal.SIGINT)  # arrives before anything of this epoch is written
        write(self, learner, position)

    monkeypatch.setattr(training.Checkpoints, "__call__", interrupted_while_writing)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the uninterrupted run (OMP_NUM_THREADS=1): the same sums, bit for bit
    try:
        with pytest.raises(KeyboardInterrupt):
            api.train(REDUX, dogs_dir, runs_dir=tmp_path, **TINY_API)
        folder = _only_run(tmp_path)
        assert runs.Run(folder).status() == "interrupted" and len(pd.read_csv(folder / "metrics.csv")) == 1
        monkeypatch.setattr(training.Checkpoints, "__call__", write)
        api.train(None, None, resume=folder)
    finally:
        torch.set_num_threads(threads)
    resumed, whole = _weights(folder), _weights(uninterrupted)
    assert all(torch.equal(resumed[k], whole[k]) for k in whole), "resumed weights differ from an uninterrupted run"



def test_a_run_stopped_in_its_first_epoch_resumes_from_the_start(dogs_dir, tmp_path, uninterrupted, monkeypatch):
    from kaggletools.fit.learner import Learner

    epoch = Learner._epoch

    def stopped(self, *args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C within the first epoch: no checkpoint yet

    monkeypatch.setattr(Learner, "_epoch", stopped)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the uninterrupted run (OMP_NUM_THREADS=1)
    try:
        with pytest.raises(KeyboardInterrupt):
            api.train(REDUX, dogs_dir, runs_dir=tmp_path, **TINY_API)
        folder = _only_run(tmp_path)
        assert runs.Run(folder).status() == "interrupted" and not (folder / "checkpoint.pt").exists()
        monkeypatch.setattr(Learner, "_epoch", epoch)
        api.train(None, None, resume=folder)
    finally:
        torch.set_num_threads(threads)
    resumed, whole = _weights(folder), _weights(uninterrupted)
    assert all(torch.equal(resumed[k], whole[k]) for k in whole), "resumed weights differ from an uninterrupted run"
    assert runs.Run(folder).status() == "finished" and len(pd.read_csv(folder / "metrics.csv")) == 4


def test_resume_keeps_the_recorded_split_when_the_data_folder_changed(dogs_dir, tmp_path, uninterrupted,
                                                                      monkeypatch):
    """Images added before --resume stay out (the checkpoint never saw them, the split must not
    change); a split.csv naming items the folder lacks is refused."""
    import shutil

    from kaggletools.steps import train as training

    data_dir = tmp_path / "data"
    shutil.copytree(dogs_dir, data_dir)
    write = training.Checkpoints.__call__

    def stop_after_the_first_epoch(self, learner, position):
        write(self, learner, position)
        if position.done == 1 and position.phase == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.Checkpoints, "__call__", stop_after_the_first_epoch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(KeyboardInterrupt):
            api.train(REDUX, data_dir, runs_dir=tmp_path / "runs", **TINY_API)
        folder = _only_run(tmp_path / "runs")
        monkeypatch.setattr(training.Checkpoints, "__call__", write)
        for i, image in enumerate(sorted((data_dir / "train").glob("*.jpg"))[:4]):
            shutil.copy(image, data_dir / "train" / f"{'cat' if 'cat' in image.name else 'dog'}.{900 + i}.jpg")
        api.train(None, None, resume=folder)
    finally:
        torch.set_num_threads(threads)
    resumed, whole = _weights(folder), _weights(uninterrupted)
    assert all(torch.equal(resumed[k], whole[k]) for k in whole), "resumed weights differ from an uninterrupted run"
    split = pd.read_csv(folder / "split.csv", dtype={"id": str})
    valid = pd.read_csv(folder / "valid_predictions.csv", dtype={"id": str})
    assert sorted(valid["id"]) == sorted(split.loc[split["is_valid"], "id"]) and len(split) == 48

    other = tmp_path / "other"
    shutil.copytree(folder, other)
    (other / "model.pt").unlink()
    (other / "failed.json").write_text('{"status": "interrupted"}')
    split.assign(id=[f"made-up-{i}" for i in range(len(split))]).to_csv(other / "split.csv", index=False)
    with pytest.raises(CompetitionError, match="split.csv names 48 item.*no longer holds"):
        api.train(None, None, resume=other)

def test_signals_held_back_are_delivered_when_the_block_ends(tmp_path):
    from kaggletools import signals
    from kaggletools.errors import Interrupted

    for sig, raised in ((signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Interrupted)):
        written = tmp_path / f"{sig.name}.txt"
        with pytest.raises(raised), signals.terminate_raises():
            with signals.deferred():
                os.kill(os.getpid(), sig)
                written.write_text("whole")
        assert written.read_text() == "whole"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

def test_resume_refuses_a_finished_run_and_recipe_changes(uninterrupted):
    with pytest.raises(RunError, match="already finished"):
        api.train(None, None, resume=uninterrupted)
    with pytest.raises(OptionError, match="own recipe"):
        api.train(REDUX, None, resume=uninterrupted, lr=1.0)


def test_keep_best_keeps_the_best_epoch(dogs_dir, tmp_path):
    run = api.train(REDUX, dogs_dir, runs_dir=tmp_path, keep="best", **TINY_API)
    history = pd.read_csv(run.file("metrics.csv"))
    kept = run.load_json("report.json")["kept"]
    assert kept["epoch"] == int(history.loc[history["log_loss"].idxmin(), "epoch"])
    assert kept["score"] == pytest.approx(history["log_loss"].min())
    assert not run.file("best.pt").exists() and not run.file("checkpoint.pt").exists()


def test_final_fit_on_every_item_takes_post_processing_from_a_validated_run(dogs_dir, tmp_path, uninterrupted):
    with pytest.raises(OptionError, match="post-from.*no such run"):
        api.train(REDUX, dogs_dir, runs_dir=tmp_path, valid_frac=0, post_from=str(tmp_path / "nope"), **TINY_API)
    run = api.train(REDUX, dogs_dir, runs_dir=tmp_path, valid_frac=0, post_from=str(uninterrupted), **TINY_API)
    report = run.load_json("report.json")
    assert report["n_valid"] == 0 and "another run" in report["note"]
    assert report["post"] == json.loads((uninterrupted / "report.json").read_text())["post"]
    assert not pd.read_csv(run.file("split.csv"))["is_valid"].any()
    csv = api.predict(run.path, dogs_dir, out=tmp_path / "final.csv", progress=False)
    api.validate(REDUX, csv, dogs_dir)


def test_blend_of_runs_and_the_list_of_runs(dogs_dir, tmp_path, uninterrupted):
    other = api.train(REDUX, dogs_dir, runs_dir=tmp_path, **{**TINY_API, "seed": 7})
    result = api.blend([uninterrupted, other.path], weights=[1, 3], out=tmp_path / "blend.csv", progress=False)
    assert result["validation"] == "shared" and result["weights"] == pytest.approx([0.25, 0.75])
    api.validate(REDUX, tmp_path / "blend.csv", dogs_dir)
    test = [pd.read_csv(p / "test_predictions.csv") for p in (uninterrupted, other.path)]
    blended = pd.read_csv(Path(result["folder"]) / "test_predictions.csv")
    assert np.allclose(blended["dog_prob"], 0.25 * test[0]["dog_prob"] + 0.75 * test[1]["dog_prob"])
    with pytest.raises(RunError, match="one finite, non-negative weight per run"):
        api.blend([uninterrupted, other.path], weights=[1], out=tmp_path / "x.csv")
    listed = api.runs(REDUX, tmp_path)
    assert list(listed["status"]) == ["finished"] * len(listed) and str(other.path) in set(listed["run"])
    finished = listed[listed["backbone"] == "resnet18"]
    assert list(finished["plain"]) == sorted(finished["plain"]), "best (lowest log loss) first"


def test_check_is_a_dry_run_and_typos_fail_before_any_run_folder(dogs_dir, tmp_path, capsys):
    report = api.check(REDUX, dogs_dir, backbone="resnet18", pretrained=False, size=32, batch_size=8,
                       runs_dir=tmp_path / "runs")
    assert report["train"] + report["valid"] == 48 and report["output_shape"] == [8, 1]
    assert report["classes"]["dog"]["valid"] > 0 and report["epoch_seconds_estimate"] > 0
    assert set(report["classes"]) == {"cat", "dog"}  # both classes, by their names
    assert sum(c["train"] + c["valid"] for c in report["classes"].values()) == 48
    assert not (tmp_path / "runs").exists()
    for typo, said in ((["--tta", "flp"], "invalid choice: 'flp'"), (["--backbone", "resnet35"], "resnet34"),
                       (["--valid-frac", "1.5"], "valid-frac"), (["--fold", "3", "--folds", "2"], "fold 3")):
        assert cli(["train", REDUX, "--data", str(dogs_dir), "--runs", str(tmp_path / "runs"), *typo]) != 0
        assert said in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()



def test_weights_that_cannot_be_had_fail_before_any_run_folder(dogs_dir, tmp_path, monkeypatch, capsys):
    """Uncached timm weights and an unreachable hub: refused at once (not after the hub's retries),
    with nothing written."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as s:  # a loopback port nobody listens on: connecting is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    for proxy in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    assert cli(["train", REDUX, "--data", str(dogs_dir), "--runs", str(tmp_path / "runs"),
                "--backbone", "resnet10t", "--size", "32"]) == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} cannot be reached" in err and "--no-pretrained" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()

def test_unusable_model_files_are_one_line_errors(uninterrupted, tmp_path, capsys):
    for name, payload in (("empty", b""), ("garbage", b"not a torch file at all")):
        folder = tmp_path / name
        import shutil

        shutil.copytree(uninterrupted, folder)
        (folder / "model.pt").write_bytes(payload)
        assert cli(["predict", str(folder), "--out", str(tmp_path / f"{name}.csv")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "model.pt cannot be read" in err and "Traceback" not in err
    foreign = tmp_path / "foreign"
    shutil.copytree(uninterrupted, foreign)
    state = torch.load(foreign / "model.pt", weights_only=True)
    state["meta"]["recipe"]["backbone"] = "resnet34"  # weights of resnet18 claimed to be resnet34's
    torch.save(state, foreign / "model.pt")
    assert cli(["predict", str(foreign), "--out", str(tmp_path / "f.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit resnet34" in err and len(err) < 400
    assert not list(tmp_path.glob("*.csv"))



def _damaged_copy(uninterrupted: Path, folder: Path, damage) -> Path:
    import shutil

    shutil.copytree(uninterrupted, folder)
    damage(folder)
    return folder


def _edit_meta(folder: Path, **changes) -> None:
    state = torch.load(folder / "model.pt", weights_only=True)
    for key, value in changes.items():
        if value is None:
            del state["meta"][key]
        else:
            state["meta"][key] = value
    torch.save(state, folder / "model.pt")


DAMAGE = {
    "failed.json holds a list": (lambda f: (f / "failed.json").write_text("[1, 2]"), "not a finished run"),
    "failed.json is a folder": (lambda f: (f / "failed.json").mkdir(), "not a finished run"),
    "config.json is garbage": (lambda f: (f / "config.json").write_text("{garbage"), "config.json cannot be read"),
    "config.json holds a list": (lambda f: (f / "config.json").write_text("[]"), "config.json holds a list"),
    "config.json lacks data_dir": (lambda f: (f / "config.json").write_text('{"competition": "dogscats"}'),
                                   "config.json does not hold what kaggletools writes"),
    "meta lacks the competition": (lambda f: _edit_meta(f, competition=None), "model.pt does not hold"),
    "meta n_extra is text": (lambda f: _edit_meta(f, n_extra="x"), "model.pt does not hold"),
    "meta mean of one value": (lambda f: _edit_meta(f, mean=[0.5]), "one value per input channel"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_run_folder_is_one_line_naming_the_file(uninterrupted, tmp_path, capsys, case):
    damage, said = DAMAGE[case]
    folder = _damaged_copy(uninterrupted, tmp_path / "run", damage)
    assert cli(["predict", str(folder), "--out", str(tmp_path / "sub.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and "Traceback" not in err, err
    assert not (tmp_path / "sub.csv").exists()


def test_the_run_list_shows_a_damaged_folder_and_every_other_run(uninterrupted, tmp_path):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(uninterrupted, root / REDUX / "good")
    _damaged_copy(uninterrupted, root / REDUX / "bad", lambda f: (f / "report.json").write_text("[]"))
    _damaged_copy(uninterrupted, root / REDUX / "alien",
                  lambda f: (f / "config.json").write_text('{"competition": "nosuch"}'))
    listed = api.runs(None, root)
    by_name = {Path(r).name: s for r, s in zip(listed["run"], listed["status"])}
    assert by_name == {"good": "finished", "bad": "damaged", "alien": "damaged"}


def test_blend_weights_must_be_finite_and_a_refused_blend_leaves_no_folder(uninterrupted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for weights in ([float("nan"), 1], [float("inf"), 1]):
        with pytest.raises(RunError, match="finite, non-negative weight"):
            api.blend([uninterrupted, uninterrupted], weights=weights, out=tmp_path / "b.csv")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "b.csv").exists()

def test_sgdr_restarts_at_each_cycle_and_one_cycle_peaks():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = schedules.SGDR(opt, steps_per_epoch=4, epochs=7, cycle_len=1, cycle_mult=2)  # cycles of 1, 2, 4 epochs
    rates = []
    for _ in range(28):
        rates.append(opt.param_groups[0]["lr"])
        sched.step()
    assert [i for i in range(1, 28) if rates[i] > rates[i - 1]] == [4, 12]  # restarts after 1 and 3 epochs
    assert rates[0] == rates[4] == rates[12] == 1.0 and rates[11] < 0.2
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cycle = schedules.OneCycle(opt, 10, pct_start=0.3, div=5)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        cycle.step()
    assert seen[0] == pytest.approx(0.2) and max(seen) == pytest.approx(1.0, abs=0.1) and seen[-1] < 0.1
    state = cycle.state_dict()
    again = schedules.OneCycle(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 10, 0.3, 5)
    again.load_state_dict(state)
    assert again.optimizer.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_a_run_saved_with_train_bn_among_its_options_resumes_with_it_in_its_recipe(uninterrupted, tmp_path):
    """Before train_bn joined the Recipe, config.json kept it under options: a resume still honours it."""
    from kaggletools.steps.train import resume_settings

    config = json.loads((uninterrupted / "config.json").read_text())
    config["recipe"].pop("train_bn", None)
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "metrics.csv").write_text("epoch\n")  # interrupted: a resume may go on
    for train_bn in (True, False):
        (old / "config.json").write_text(json.dumps({**config, "options": {**config["options"], "train_bn": train_bn}}))
        assert resume_settings(old).recipe.train_bn is train_bn
