"""Cross-validation whose folds are drawn more than once (`cv --repeats R`): every item scored by R
models, the per-item average, what averaging gains and the estimate of the submission that
averages every model (kaggletools.steps.blend)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from kaggletools import api
from kaggletools.competition import registry
from kaggletools.runs import folder as runs
from kaggletools.score import validation
from kaggletools.steps import blend

REDUX = "dogs-vs-cats-redux-kernels-edition"


def _fake_runs(tmp_path: Path, parts: list[tuple[list[str], np.ndarray, np.ndarray]]) -> list:
    """Run-like objects holding only valid_predictions.csv: (ids, targets, probabilities) each."""
    comp = registry.get(REDUX)
    made = []
    for k, (ids, y, p) in enumerate(parts):
        folder = tmp_path / f"run{k}"
        folder.mkdir()
        validation.prediction_table(comp, np.asarray(ids), y, p, p).to_csv(folder / "valid_predictions.csv",
                                                                            index=False)
        made.append(SimpleNamespace(run=runs.Run(folder), competition=comp))
    return made


def _repeated(n: int = 30, folds: int = 3, repeats: int = 2, seed: int = 0):
    """Targets, and per repeat a fold per item and the probabilities its fold's model gave."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 1)) < 0.5).astype(np.float32)
    ids = [f"i{k}" for k in range(n)]
    draws = []
    for r in range(repeats):
        fold = rng.permutation(np.arange(n) % folds)
        p = np.clip(0.25 + 0.5 * y + rng.normal(0, 0.2, (n, 1)), 0.02, 0.98)  # an independent model per repeat
        draws.append((fold, p))
    return ids, y, draws


def test_repeated_folds_average_each_items_models_and_measure_the_gain(tmp_path):
    comp = registry.get(REDUX)
    ids, y, draws = _repeated()
    parts = [([ids[i] for i in np.flatnonzero(fold == k)], y[fold == k], p[fold == k])
             for fold, p in draws for k in range(3)]
    saved = _fake_runs(tmp_path, parts)
    got = blend._validation(saved, np.full(6, 1 / 6))
    assert got.how == "out-of-fold, 2 repeats" and sorted(got.ids) == sorted(ids)
    order = [ids.index(i) for i in got.ids]
    assert np.allclose(got.y, y[order])
    assert np.allclose(got.probs, (draws[0][1] + draws[1][1])[order] / 2, atol=1e-6)  # each item: the mean of its 2 models
    assert [np.allclose(r, d[1][order]) for r, d in zip(got.repeats, draws)] == [True, True]
    assert len(got.own) == 6 and sorted(len(at) for at, _ in got.own) == [10] * 6

    gain = blend.averaging_gain(comp, got.y, got.repeats, got.probs, {}, n_models=6)
    one = np.mean([comp.metric(y, p) for _, p in draws])
    assert gain["one_model"] == pytest.approx(one, rel=1e-6)
    assert gain["averaged"] == pytest.approx(comp.metric(got.y, got.probs))
    assert gain["gain"] == pytest.approx(gain["averaged"] - one) and gain["gain"] < 0  # two models: lower log loss
    # from 2 to 6 models: the 2-model gain times (1/2 - 1/6) / (1 - 1/2)
    assert gain["to_all_models"] == pytest.approx(gain["gain"] * (1 / 2 - 1 / 6) / (1 / 2))
    report = {"scores": {"log_loss": gain["averaged"]}, "with_post": {validation.SUBMITTED: 0.3},
              "averaging": gain, "validation": got.how, "runs": ["r"] * 6}
    assert blend.estimate(comp, report)["value"] == pytest.approx(0.3 + gain["to_all_models"])
    del report["with_post"]  # nothing tuned: the plain score of the averaged predictions
    assert blend.estimate(comp, report)["value"] == pytest.approx(gain["averaged"] + gain["to_all_models"])


def test_one_draw_of_folds_estimates_without_averaging_and_says_so(tmp_path):
    ids, y, draws = _repeated(repeats=1)
    fold, p = draws[0]
    saved = _fake_runs(tmp_path, [([ids[i] for i in np.flatnonzero(fold == k)], y[fold == k], p[fold == k])
                                  for k in range(3)])
    got = blend._validation(saved, np.full(3, 1 / 3))
    assert got.how == "out-of-fold" and got.repeats == [] and len(got.own) == 3
    report = {"scores": {"log_loss": 0.4}, "validation": got.how, "runs": ["r"] * 3}
    said = blend.estimate(registry.get(REDUX), report)
    assert said["value"] == 0.4 and "--repeats 2" in said["how"]


def test_runs_whose_items_overlap_partly_are_not_taken_for_repeats(tmp_path):
    ids, y, _ = _repeated()
    p = np.full((30, 1), 0.5)
    saved = _fake_runs(tmp_path, [(ids[:20], y[:20], p[:20]), (ids[10:], y[10:], p[10:]), (ids[:10], y[:10], p[:10])])
    assert blend._validation(saved, np.full(3, 1 / 3)).how == "none (validation items overlap partly)"


def test_cv_with_repeats_trains_each_fold_once_per_seed(dogs_dir, tmp_path):
    result = api.cross_validate(REDUX, dogs_dir, folds=2, repeats=2, runs_dir=tmp_path, out=tmp_path / "cv.csv",
                                progress=False, pretrained=False, backbone="resnet18", size=32, batch_size=16,
                                freeze_epochs=1, epochs=0, seed=5)
    folder = Path(result["folder"])
    assert folder.name.endswith("cv2x2")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert names == ["repeat0-fold0", "repeat0-fold1", "repeat1-fold0", "repeat1-fold1"]
    seeds = [json.loads((folder / n / "config.json").read_text())["recipe"]["seed"] for n in names]
    assert seeds == [5, 5, 6, 6]
    splits = [pd.read_csv(folder / n / "split.csv", dtype={"id": str}) for n in names]
    held = [set(s.loc[s["fold"] == k, "id"]) for s, k in zip(splits, [0, 1, 0, 1])]
    assert held[0] != held[2], "the second repeat draws other folds"
    assert result["validation"] == "out-of-fold, 2 repeats" and result["n_valid"] == 48
    assert result["averaging"]["models"] == 4 and result["estimate"]["value"] == pytest.approx(
        result["with_post"][validation.SUBMITTED] + result["averaging"]["to_all_models"])
    api.validate(REDUX, tmp_path / "cv.csv", dogs_dir)


def test_repeats_is_a_cv_flag_and_must_be_at_least_one():
    from kaggletools.cli.app import parser
    from kaggletools.errors import OptionError
    from kaggletools.options import RunOptions

    assert parser().parse_args(["cv", REDUX, "--repeats", "3"]).repeats == 3
    with pytest.raises(SystemExit):  # `train` trains one split: it offers no --repeats
        parser().parse_args(["train", REDUX, "--repeats", "3"])
    with pytest.raises(OptionError, match="repeats"):
        RunOptions(repeats=0).check()
