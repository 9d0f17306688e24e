"""The contract: every registered competition goes through the same checks, on its own
generated fixture packed as Kaggle ships it: prepare, items, load, sample, split, train,
predict, submission validation (and rejection of broken submissions)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kaggletools import api, competition, data, submission
from kaggletools.competition import CompetitionError, Recipe

SLUGS = competition.names()


@pytest.fixture(scope="module", params=SLUGS)
def prepared(request, tmp_path_factory):
    comp = competition.get(request.param)
    folder = tmp_path_factory.mktemp("contract") / comp.slug
    solution = comp.make_fixture(folder, n_train=48, n_test=16, seed=0)
    api.prepare(comp, folder)
    return comp, folder, solution


def test_registry_lists_every_competition_with_its_identity():
    assert {"dogs-vs-cats-redux-kernels-edition", "dogs-vs-cats"} <= set(SLUGS)
    for slug in SLUGS:
        comp = competition.get(slug)
        assert comp.slug == slug and comp.title
        assert comp.task in ("binary", "multilabel")
        assert comp.kind in ("image", "array")
        assert len(comp.classes) >= 1 and (comp.task != "binary" or len(comp.classes) == 1)
        assert isinstance(comp.recipe, Recipe) and comp.files
        assert comp.metric_name and isinstance(comp.greater_is_better, bool)


def test_unknown_competition_names_the_valid_ones():
    with pytest.raises(CompetitionError, match="dogs-vs-cats-redux-kernels-edition"):
        competition.get("dogs-vs-kittens")


def test_prepare_is_idempotent(prepared):
    comp, folder, _ = prepared
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    api.prepare(comp, folder)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_items_targets_and_load(prepared):
    comp, folder, solution = prepared
    train, test = data.train_items(comp, folder), data.test_items(comp, folder)
    assert len(train) == 48 and len(test) == 16 == len(solution)
    assert {"id", "source"} <= set(train.columns) and {"id", "source"} <= set(test.columns)
    y = comp.targets(train)
    assert y.shape == (48, comp.n_outputs) and set(np.unique(y)) <= {0.0, 1.0}
    assert (y.sum(0) > 0).all() or comp.task == "multilabel"
    item = comp.load(train["source"].iloc[0], folder, 64)
    assert item.ndim == 3 and item.shape[2] == 3
    assert item.dtype == (np.uint8 if comp.kind == "image" else np.float32)


def test_sample_is_a_data_folder_the_loop_accepts(prepared, tmp_path):
    comp, folder, _ = prepared
    out = api.sample(comp.slug, folder, tmp_path / "sample", n_train=16, n_test=8, seed=3)
    train = data.train_items(comp, out)
    assert len(train) == 16 and len(comp.items(out, "test")) == 8
    assert (comp.targets(train).sum(0) > 0).sum() >= min(comp.n_outputs, 2) or comp.n_outputs == 1
    assert api.sample(comp.slug, folder, tmp_path / "sample", n_train=16, n_test=8, seed=3) == out  # no-op
    with pytest.raises(CompetitionError, match="only 48"):
        api.sample(comp.slug, folder, tmp_path / "too-big", n_train=49, n_test=0)
    assert not (tmp_path / "too-big").exists()


def test_split_is_deterministic_and_stratified(prepared):
    comp, folder, _ = prepared
    items = data.train_items(comp, folder)
    a, b = data.split(comp, items, 0.25, seed=7), data.split(comp, items, 0.25, seed=7)
    assert (a == b).all() and a.sum() == 12
    y = comp.targets(items)
    if comp.task == "binary":
        assert abs(y[a, 0].mean() - y[:, 0].mean()) <= 0.1
    folds = data.folds(comp, items, 4, seed=7)
    sizes = np.bincount(folds, minlength=4)
    assert sizes.sum() == 48 and sizes.min() >= 10 and sizes.max() <= 14  # iterative stratification: near-equal
    assert (folds == data.folds(comp, items, 4, seed=7)).all()


def test_train_predict_and_validated_submission(prepared, tmp_path):
    comp, folder, _ = prepared
    run = api.train(comp.slug, folder, runs_dir=tmp_path / "runs", backbone="resnet18", pretrained=False,
                    size=32, presize=40, batch_size=16, freeze_epochs=1, epochs=1, tta="flip", progress=False)
    for name in ("config.json", "versions.json", "split.csv", "metrics.csv", "model.pt", "report.json",
                 "valid_predictions.csv", "history.png"):
        assert run.file(name).is_file(), name
    assert len(pd.read_csv(run.file("metrics.csv"))) == 2
    report = run.load_json("report.json")
    assert comp.metric_name in report["plain"] and comp.metric_name in report["with_tta"]
    assert set(torch.load(run.file("model.pt"), weights_only=True)) == {"state_dict", "meta"}

    csv = api.predict(run.path, folder, out=tmp_path / "sub.csv", progress=False)
    df = submission.read(csv)
    test = data.test_items(comp, folder)
    assert len(df) == len(test)
    api.validate_file(comp.slug, csv, folder)
    with pytest.raises(submission.SubmissionError, match="already exists"):
        api.predict(run.path, folder, out=csv, progress=False)

    ids = test["id"]
    for broken, problem in ((df.iloc[1:], "missing"), (pd.concat([df, df.iloc[:1]]), "duplicate")):
        with pytest.raises(submission.SubmissionError, match=problem):
            submission.validate(comp, broken, ids)
    extra = df.copy()
    extra.loc[0, comp.id_column] = "not-a-test-id"
    with pytest.raises(submission.SubmissionError, match="unknown"):
        submission.validate(comp, extra, ids)
