"""Dogs vs. Cats end to end: from a Kaggle download (the real client against the loopback
stand-in) to a submitted file, learning with real ImageNet weights, k-fold, the LR finder,
precomputed features, and the real images in ../shared when present."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fake_kaggle import fake_kaggle
from kaggletools import api
from kaggletools.competition import registry as competition
from kaggletools.data import items as data
from kaggletools.score import metrics
from kaggletools.score import submission
from kaggletools.score import validation
from kaggletools.cli.app import main as cli

REDUX = "dogs-vs-cats-redux-kernels-edition"
FAST = dict(backbone="mobilenet_v2", size=64, presize=72, batch_size=16, freeze_epochs=1, epochs=1)


def _generated_download(n_train=48, n_test=16) -> dict[str, bytes]:
    """The files Kaggle serves for the redux competition, generated (learnable 'cats' and 'dogs')."""
    import tempfile
    import zipfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        competition.get(REDUX).make_fixture(Path(tmp), n_train, n_test, seed=2, side=72)
        with zipfile.ZipFile(Path(tmp) / f"{REDUX}.zip") as z:
            return {name: z.read(name) for name in z.namelist()}


def test_the_whole_loop_from_kaggle_download_to_submit(tmp_path, monkeypatch, capsys):
    files = _generated_download()
    with fake_kaggle(tmp_path / "kaggle", files=files, monkeypatch=monkeypatch, slug=REDUX) as server:
        data_dir = tmp_path / "data"
        assert cli(["download", REDUX, "--data", str(data_dir)]) == 0
        assert (data_dir / "train").is_dir() and (data_dir / "test").is_dir()
        out = tmp_path / "sub.csv"
        rc = cli(["run", REDUX, "--data", str(data_dir), "--runs", str(tmp_path / "runs"), "--out", str(out),
                  "--backbone", "mobilenet_v2", "--size", "64", "--batch-size", "16", "--quiet",
                  "--submit", "kaggletools test"])
        assert rc == 0
        printed = capsys.readouterr().out
        result = json.loads(printed[printed.index("{"):])
        assert result["submission"] == str(out)
        assert server.uploads and next(iter(server.uploads.values())) == out.read_bytes()
        assert cli(["submissions", REDUX]) == 0
        assert "kaggletools test" in capsys.readouterr().out


def test_403_from_kaggle_explains_the_rules_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    with fake_kaggle(tmp_path / "kaggle", files=_generated_download(8, 4), rules_accepted=False,
                     monkeypatch=monkeypatch, slug=REDUX):
        rc = cli(["download", REDUX, "--data", str(tmp_path / "data")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "rules" in err and f"kaggle.com/competitions/{REDUX}/rules" in err
    assert not list((tmp_path / "data").glob("*")) if (tmp_path / "data").exists() else True


def test_missing_credentials_are_explained(tmp_path, monkeypatch, capsys):
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    assert cli(["files", REDUX]) == 1
    assert "kaggle.json" in capsys.readouterr().err


def test_fine_tuning_with_imagenet_weights_learns_and_tta_is_reported(dogs_dir, tmp_path):
    run = api.train(REDUX, dogs_dir, runs_dir=tmp_path, progress=False, tta="crops", **FAST)
    report = run.load_json("report.json")
    assert report["plain"]["error_rate"] <= 0.2
    assert set(report["with_tta"]) == set(report["plain"])
    assert 0.001 <= report["post"]["clip"] <= 0.05
    config = run.load_json("config.json")
    if config["backbone"]["weights"] is None:
        pytest.skip("no ImageNet weights available offline")
    solution = pd.read_csv(dogs_dir.parent / "solution.csv")
    csv = api.predict(run.path, out=tmp_path / "s.csv", progress=False)
    sub = submission.read(csv).astype({"id": int, "label": float}).merge(solution, on="id", suffixes=("", "_true"))
    assert metrics.accuracy(sub[["label_true"]].to_numpy(), sub[["label"]].to_numpy()) >= 0.8


def test_original_competition_writes_hard_labels(tmp_path):
    comp = competition.get("dogs-vs-cats")
    folder = tmp_path / "dogs-vs-cats"
    comp.make_fixture(folder, 24, 8, seed=0, side=64)
    api.prepare(comp, folder)
    assert (folder / "test1").is_dir() and (folder / "sampleSubmission.csv").is_file()
    run = api.train(comp.slug, folder, runs_dir=tmp_path / "runs", progress=False, pretrained=False,
                    backbone="resnet18", size=32, batch_size=8)
    df = submission.read(api.predict(run.path, out=tmp_path / "s.csv", progress=False))
    assert set(df["label"]) <= {"0", "1"} and list(df.columns) == ["id", "label"]
    report = run.load_json("report.json")  # a handful of validation items: a loose estimate, and the way out
    assert report["sampling"]["sd"] >= validation.SHARP and f"kaggletools cv {comp.slug}" in report["sharper"]


def test_cross_validation_blends_its_folds(dogs_dir, tmp_path):
    result = api.cross_validate(REDUX, dogs_dir, folds=3, runs_dir=tmp_path, out=tmp_path / "cv.csv",
                                progress=False, pretrained=False, backbone="resnet18", size=32, batch_size=16,
                                freeze_epochs=1, epochs=0)
    folder = Path(result["folder"])
    assert folder.parent == tmp_path / REDUX, "one folder per cross-validation, the folds inside it"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["fold0", "fold1", "fold2"]
    oof = pd.read_csv(folder / "valid_predictions.csv")
    assert len(oof) == 48 and oof["id"].is_unique and result["validation"] == "out-of-fold"
    assert len(result["runs"]) == 3 and "log_loss" in result["scores"]
    assert result["sampling"]["n_items"] == 48 and result["sampling"]["sd"] > 0  # over every out-of-fold item
    folds = result["folds"]  # each fold on its own 16 items, with the post-processing submitted
    comp = competition.get(REDUX)
    by_fold = []
    for run in result["runs"]:
        y, probs = validation.read_prediction_table(comp, pd.read_csv(Path(run) / "valid_predictions.csv"))
        by_fold.append(comp.metric(y, probs, result["post"]))
        assert not json.loads((Path(run) / "report.json").read_text()).get("sharper"), "a fold points to no cv"
    assert folds["scores"] == pytest.approx(by_fold) and folds["mean"] == pytest.approx(np.mean(by_fold))
    assert folds["sd"] == pytest.approx(np.std(by_fold, ddof=1)) and folds["sd"] > 0
    api.validate(REDUX, tmp_path / "cv.csv", dogs_dir)


def test_lr_finder_suggests_a_rate_and_saves_a_plot(dogs_dir, tmp_path):
    result = api.lr_find(REDUX, dogs_dir, out=tmp_path / "lr.png", suggest="valley,minimum", progress=False, **FAST)
    assert list(result.suggestions) == ["valley", "minimum"]
    assert 1e-7 < result.suggestion < 10 and 1e-8 < result.suggestions["minimum"][0] < 1
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"


def test_precomputed_features_train_the_head_alone(dogs_dir, tmp_path):
    run = api.train(REDUX, dogs_dir, runs_dir=tmp_path, progress=False, precompute=3,
                    **{**FAST, "epochs": 0})
    history = pd.read_csv(run.file("metrics.csv"))
    assert list(history["phase"]) == ["precomputed"] * 3
    assert history["error_rate"].iloc[-1] <= 0.3


def test_real_images_from_shared(shared_data, tmp_path):
    comp = competition.get(REDUX)
    folder = shared_data / "dogs-vs-cats"
    train, test = data.train_items(comp, folder), data.test_items(comp, folder)
    assert len(train) == 2002 and train["dog"].sum() == 1001
    assert len(test) == 1001 and test["source"].iloc[0] == "test1/1.jpg"
    small = api.sample(REDUX, folder, tmp_path / "s", n_train=80, n_test=10)
    run = api.train(REDUX, small, runs_dir=tmp_path / "runs", progress=False, precompute=4,
                    **{**FAST, "size": 112, "presize": 128, "epochs": 0})
    assert run.load_json("report.json")["plain"]["error_rate"] <= 0.2
    csv = api.predict(run.path, out=tmp_path / "sub.csv", progress=False)
    assert len(pd.read_csv(csv)) == 10


def test_keep_frozen_leaves_the_first_layers_as_pretrained_and_trains_the_rest(dogs_dir, tmp_path):
    """--keep-frozen: the body's first layers (weights and batch-norm statistics) end the unfrozen
    phase exactly as ImageNet left them; later layers and the head change."""
    import torch

    from kaggletools.model import network as models

    run = api.train(REDUX, dogs_dir, runs_dir=tmp_path, progress=False, keep_frozen=0.3, **FAST)
    trained = run.load_weights()["state_dict"]
    assert run.load_json("config.json")["recipe"]["keep_frozen"] == 0.3
    pretrained, _ = models.create("mobilenet_v2", 1, pretrained=True)
    reference = pretrained.state_dict()
    models.unfreeze(pretrained, 0.3)  # the same layers the run kept
    named = [(f"body.{n}", p.requires_grad) for n, p in pretrained.body.named_parameters()]
    kept = [n for n, trains in named if not trains]
    kept_stats = [k.replace(".weight", ".running_mean") for k in kept
                  if k.replace(".weight", ".running_mean") in reference]
    assert kept_stats  # the kept layers hold batch-norm layers
    assert all(torch.equal(trained[k], reference[k]) for k in kept + kept_stats)
    later = [n for n, trains in named if trains]
    assert sum(not torch.equal(trained[k], reference[k]) for k in later) > len(later) // 2


def test_concat_pool_trains_and_a_later_predict_rebuilds_it(dogs_dir, tmp_path):
    """--pool concat is saved with the run: `predict` rebuilds the same head width from the run's
    config (a 1,280-wide head would not take the saved 2,560-wide weights). With --lighting too."""
    run = api.train(REDUX, dogs_dir, runs_dir=tmp_path, progress=False, pool="concat", lighting=0.2, tta="none",
                    **FAST)
    assert run.load_json("config.json")["recipe"]["pool"] == "concat"
    assert run.load_json("config.json")["recipe"]["lighting"] == 0.2
    assert run.load_weights()["state_dict"]["head.2.weight"].shape[1] == 2 * 1280
    sub = pd.read_csv(api.predict(run.path, out=tmp_path / "sub.csv", progress=False))
    assert len(sub) == 16 and sub["label"].between(0, 1).all() and sub["label"].nunique() > 1
