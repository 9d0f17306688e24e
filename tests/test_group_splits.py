"""Group splits: a group column (a competition's `group_column`, or --group-by) keeps each group on
one side of every split, fold and honest half, for every task; split.csv records the groups and a
resumed run gets them back; a missing column is one line naming the columns there are; modules
written before groups (two-argument `post_variants`/`fit_post`) keep working. Also: the vendored
iterative stratification gives iterstrat's results."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kaggletools.cli import flags
from kaggletools.competition import bases, tasks
from kaggletools.data import items as data
from kaggletools.data import iterstrat
from kaggletools.data import split as stratify
from kaggletools.errors import CompetitionError
from kaggletools.options import Recipe
from kaggletools.score import validation


def _table(n=120, n_groups=15, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"i{k}" for k in range(n)], "source": [f"x/{k}.jpg" for k in range(n)],
                         "label": rng.choice(list("abcd"), n), "site": [f"s{k % n_groups}" for k in range(n)],
                         "patient": [f"p{k // 8}" for k in range(n)]})


class Flowers(bases.MultiClassLogLoss):
    slug = "test-flowers"
    classes = ("a", "b", "c", "d")

    def items(self, data_dir: Path, split: str) -> pd.DataFrame:
        return _table()

    def make_fixture(self, folder: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> pd.DataFrame:
        raise NotImplementedError


class GroupedFlowers(Flowers):
    group_column = "patient"


class OldStyle(GroupedFlowers):
    """A module written before groups: two-argument overrides."""

    def fit_post(self, y_true, probs) -> dict:
        return {"floor": 0.01}

    def post_variants(self, y_true, probs) -> dict:
        return {"tuned": self.fit_post(y_true, probs)}


def _one_side(groups, mask) -> bool:
    mask = np.asarray(mask, bool)
    return mask.any() and not mask.all() and not set(groups[mask]) & set(groups[~mask])


def test_the_competitions_group_column_or_group_by_keeps_groups_whole_and_split_csv_records_them():
    items = _table()
    made = data.make_split(GroupedFlowers(), items, 0.25, seed=1)
    assert made.group_column == "patient" and _one_side(items["patient"].to_numpy(), made.valid)
    assert 15 <= made.valid.sum() <= 45
    table = made.table(items["id"])
    assert list(table.columns) == ["id", "is_valid", "patient"] and (table["patient"] == items["patient"]).all()
    by_site = data.make_split(GroupedFlowers(), items, 0.25, seed=1, n_folds=5, fold=2, group_by="site")
    sites = items["site"].to_numpy()
    assert by_site.group_column == "site" and all(_one_side(sites, by_site.fold == f) for f in range(5))
    assert (by_site.valid == (by_site.fold == 2)).all()
    plain = data.make_split(GroupedFlowers(), items, 0.25, seed=1, group_by="none")
    assert plain.groups is None and plain.valid.sum() == 30 and "patient" not in plain.table(items["id"])
    assert data.make_split(Flowers(), items, 0.25, seed=1).groups is None  # no column declared: no groups


def test_a_resumed_run_gets_its_recorded_groups_back():
    items = _table()
    made = data.split(GroupedFlowers(), items, 0.25, seed=3)
    kept, again = data.recorded_split(items, made.table(items["id"]).astype(str), "split.csv")
    assert again.group_column == "patient" and (again.groups == made.groups).all()
    assert (again.valid == made.valid).all()


def test_a_missing_group_column_is_one_line_naming_it_and_the_columns_there_are():
    items = _table()
    with pytest.raises(CompetitionError) as e:
        data.split(Flowers(), items, 0.2, group_by="driver")
    message = str(e.value)
    assert "\n" not in message and "'driver'" in message and "id, source, label, site, patient" in message
    blank = items.assign(patient=items["patient"].where(items.index != 4, ""))
    with pytest.raises(CompetitionError, match=r"1 item\(s\) have no 'patient', e.g. \['i4'\]"):
        data.folds(GroupedFlowers(), blank, 4)
    with pytest.raises(CompetitionError, match="one group"):
        data.split(GroupedFlowers(), items.assign(patient="p0"), 0.2)


@pytest.mark.parametrize("task", [tasks.Binary(), tasks.MultiClass(), tasks.MultiLabel()], ids=lambda t: t.name)
def test_every_task_splits_and_folds_by_group(task):
    rng = np.random.default_rng(5)
    n = 150
    groups = np.array([f"g{k // 6}" for k in range(n)])
    if task.name == "binary":
        y, classes = (rng.random((n, 1)) < 0.3).astype(np.float32), ["yes"]
    elif task.name == "multiclass":
        y, classes = np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)], list("abcde")
    else:
        y, classes = (rng.random((n, 6)) < [0.6, 0.3, 0.2, 0.1, 0.05, 0.02]).astype(np.float32), list("abcdef")
    held, _ = task.split(y, 30, 0, classes, groups=groups)
    mask = np.zeros(n, bool)
    mask[held] = True
    assert _one_side(groups, mask) and 18 <= mask.sum() <= 42
    fold, _ = task.folds(y, 5, 0, classes, groups=groups)
    assert all(_one_side(groups, fold == f) for f in range(5))
    assert _one_side(groups, validation.half(task, y, classes, 2, groups))
    with pytest.raises(ValueError, match="cannot make 30 folds of 25 group"):
        task.folds(y, 30, 0, classes, groups=groups)


def test_the_rarest_tag_is_the_multilabel_proxy_stratum():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0]])
    assert stratify.rarest_tag(y).tolist() == [1, 0, 3, 2, 0]


def test_honest_halves_keep_groups_apart_and_old_two_argument_modules_still_work():
    items = _table()
    groups = items["patient"].to_numpy()
    for comp in (GroupedFlowers(), OldStyle()):
        y = comp.targets(items)
        probs = 0.5 * y + 0.125
        scores = validation.cross_fitted(comp, y, probs, seed=0, groups=groups)
        assert set(scores) == {"tuned"} and np.isfinite(scores["tuned"])
        assert validation.fit_post(comp, y, probs, groups) == comp.fit_post(y, probs)
    one = np.full(len(items), "p0")
    assert validation.cross_fitted(GroupedFlowers(), y, probs, groups=one) == {}  # one group: no honest halves


def test_multilabel_tags_tune_their_thresholds_on_halves_that_keep_groups_apart():
    class Tags(bases.MultiLabelTags):
        slug, classes = "test-tags", ("a", "b", "c")
        items, make_fixture = Flowers.items, Flowers.make_fixture

    rng = np.random.default_rng(0)
    y = (rng.random((80, 3)) < 0.4).astype(np.float32)
    groups = np.array([f"g{k // 5}" for k in range(80)])
    halves = Tags()._halves(y, groups)
    assert len(halves) == 3 and all(not set(groups[a]) & set(groups[b]) for a, b in halves)
    variants = Tags().post_variants(y, np.clip(y * 0.6 + 0.2 * rng.random(y.shape), 0, 1), groups)
    assert "chosen" in variants and len(variants["chosen"]["thresholds"]) == 3


def test_group_by_is_a_recipe_field_and_a_flag():
    assert Recipe().group_by == "" and Recipe().replace(group_by="subject").group_by == "subject"
    parser = argparse.ArgumentParser()
    names = flags.recipe_and_options(parser, Recipe())
    assert flags.values(parser.parse_args(["--group-by", "subject"]), names)["group_by"] == "subject"


def test_check_counts_groups_per_side():
    check = pytest.importorskip("kaggletools.steps.check")
    items = _table()
    made = data.split(GroupedFlowers(), items, 0.25, seed=0)
    seen = check._groups(made)
    assert seen["column"] == "patient" and seen["shared"] == 0
    assert seen["train"] + seen["valid"] == 15 and seen["valid"] >= 1


def test_vendored_iterative_stratification_gives_iterstrats_results():
    """Fold ids and a held-out part recorded from iterative-stratification 0.1.9
    (MultilabelStratifiedKFold(4, shuffle=True, random_state=3), MultilabelStratifiedShuffleSplit(
    1, test_size=10, random_state=3)) on this matrix."""
    y = (np.random.default_rng(7).random((40, 5)) < [0.05, 0.1, 0.3, 0.5, 0.7]).astype(int)
    assert iterstrat.kfold(y, 4, 3).tolist() == [2, 2, 1, 2, 3, 0, 3, 0, 2, 0, 2, 0, 3, 0, 1, 1, 0, 2, 3, 1, 2, 1,
                                                  2, 1, 0, 2, 0, 3, 0, 1, 1, 1, 3, 0, 0, 0, 3, 2, 3, 3]
    assert iterstrat.shuffle_split(y, 10, 3)[1].tolist() == [1, 5, 7, 12, 21, 23, 24, 31, 35, 36]
    with pytest.raises(ValueError, match="cannot make 41 folds"):
        iterstrat.kfold(y, 41, 0)


def test_cross_validation_by_driver_keeps_drivers_apart_in_folds_and_in_the_blends_honest_halves(tmp_path,
                                                                                                monkeypatch):
    from kaggletools import api
    from kaggletools.competition import registry
    from kaggletools.steps import blend

    comp = registry.get("state-farm")
    folder = tmp_path / "data"
    comp.make_fixture(folder, n_train=72, n_test=8, seed=1)
    api.prepare(comp, folder, quiet=True)
    seen = []
    original = blend._groups
    monkeypatch.setattr(blend, "_groups", lambda saved, ids: seen.append(original(saved, ids)) or seen[-1])
    result = api.cross_validate(comp.slug, folder, folds=3, runs_dir=tmp_path / "runs", out=tmp_path / "cv.csv",
                                progress=False, pretrained=False, backbone="resnet18", size=32, batch_size=16,
                                freeze_epochs=1, epochs=0)
    splits = [pd.read_csv(Path(r) / "split.csv", dtype=str) for r in result["runs"]]
    held = [set(s.loc[s["is_valid"] == "True", "subject"]) for s in splits]
    assert all(not a & b for i, a in enumerate(held) for b in held[i + 1:]), "a driver held out by two folds"
    assert all(not set(s.loc[s["is_valid"] == "False", "subject"]) & h for s, h in zip(splits, held))
    assert result["validation"] == "out-of-fold" and len(seen) == 1 and seen[0] is not None
    assert len(seen[0]) == 72 and set(seen[0]) == set().union(*held)
