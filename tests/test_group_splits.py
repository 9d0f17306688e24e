"""Group splits: a group column (a competition's `group_column`, or --group-by) keeps each group on
one side of every split, fold and honest half, for every task; split.csv records the groups and a
resumed run gets them back; a missing column is one line naming the columns there are; modules
written before groups (two-argument `post_variants`/`fit_post`) keep working. Also: the vendored
iterative stratification gives iterstrat's results; honest scores over several halvings (their
mean and spread) and the honest score of fit_post itself ("submitted")."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kaggletools.cli import flags
from kaggletools.competition import bases, tasks
from kaggletools.competition import tags as multilabel
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
        assert set(scores) == {"tuned", validation.SUBMITTED} and np.isfinite(scores["tuned"])
        assert scores[validation.SUBMITTED] == scores["tuned"]  # the default variant is fit_post itself
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
    tuned = validation.tuned(Tags(), y, np.clip(y * 0.6 + 0.2 * rng.random(y.shape), 0, 1), groups)
    assert set(tuned) == {*multilabel.VARIANTS, validation.SUBMITTED}  # the choice is scored once, as submitted
    assert len(tuned[validation.SUBMITTED]["thresholds"]) == 3


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


# -- honest scores over several halvings, and the score of what is submitted ----------------------------
def _noisy(n=120, seed=0):
    """Flowers' targets with informative but noisy probabilities."""
    y = Flowers().targets(_table(n))
    logits = 2.0 * y + np.random.default_rng(seed).normal(0, 1.2, y.shape)
    return y, np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


class Cut(Flowers):
    """Accuracy of 'class a' decided by a threshold `t`: three fixed variants; fit_post as given."""
    greater_is_better = True

    def metric(self, y_true, probs, post=None) -> float:
        return float(np.mean((probs[:, 0] > (post or {}).get("t", 0.5)) == (y_true[:, 0] > 0.5)))

    def post_variants(self, y_true, probs, groups=None) -> dict:
        return {f"t{t}": {"t": t} for t in (0.1, 0.3, 0.5)}


class AlwaysLow(Cut):
    def fit_post(self, y_true, probs) -> dict:
        return {"t": 0.1}


class BestInSample(Cut):
    def fit_post(self, y_true, probs) -> dict:
        return max(self.post_variants(y_true, probs).values(), key=lambda post: self.metric(y_true, probs, post))


def test_honest_scores_are_the_mean_of_several_halvings_with_their_spread():
    comp = Flowers()
    y, probs = _noisy()
    means, spread = validation.honest_scores(comp, y, probs, seed=3)
    single = [validation.cross_fitted(comp, y, probs, seed=3 + i) for i in range(validation.REPEATS)]
    assert validation.REPEATS > 1 and set(means) == set(spread) == {"tuned", validation.SUBMITTED}
    for name in means:
        values = [s[name] for s in single]
        assert means[name] == pytest.approx(np.mean(values), abs=1e-12)
        assert spread[name]["repeats"] == validation.REPEATS
        assert spread[name]["sd"] == pytest.approx(np.std(values, ddof=1), abs=1e-12) and spread[name]["sd"] > 0
        assert spread[name]["min"] == min(values) < max(values) == spread[name]["max"]
    assert validation.honest_scores(comp, y[:6], probs[:6]) == ({}, {})  # too few items: nothing, no error


def test_submitted_is_the_honest_score_of_fit_posts_own_choice_not_the_best_variant_afterwards():
    y, probs = _noisy(seed=1)
    means, _ = validation.honest_scores(AlwaysLow(), y, probs)
    variants = {k: v for k, v in means.items() if k != validation.SUBMITTED}
    assert set(variants) == {"t0.1", "t0.3", "t0.5"}
    assert means[validation.SUBMITTED] == pytest.approx(means["t0.1"], abs=1e-12)  # it always picks t0.1
    assert means[validation.SUBMITTED] < max(variants.values())  # ... which is not the best afterwards

    comp = BestInSample()  # picks on its tuning half: the two halves may pick differently
    in_a = validation.half(comp.task, y, comp.classes, 0)
    parts = [(in_a, ~in_a), (~in_a, in_a)]
    picks = [comp.fit_post(y[f], probs[f]) for f, _ in parts]
    expected = sum(s.sum() * comp.metric(y[s], probs[s], post) for (_, s), post in zip(parts, picks)) / len(y)
    scores = validation.cross_fitted(comp, y, probs, seed=0)
    assert picks[0] != picks[1]  # the case this checks: each half chose another threshold
    assert scores[validation.SUBMITTED] == pytest.approx(expected, abs=1e-12)
    assert scores[validation.SUBMITTED] < max(v for k, v in scores.items() if k != validation.SUBMITTED)


def test_every_halving_keeps_groups_apart_and_the_halvings_differ(monkeypatch):
    items = _table()
    groups = items["patient"].to_numpy()
    comp = GroupedFlowers()
    y, probs = _noisy()
    seen = []
    original = validation.half
    monkeypatch.setattr(validation, "half", lambda task, yy, classes, seed, groups=None: seen.append(
        (seed, original(task, yy, classes, seed, groups))) or seen[-1][1])
    means, spread = validation.honest_scores(comp, y, probs, seed=7, groups=groups)
    assert [seed for seed, _ in seen] == list(range(7, 7 + validation.REPEATS))
    assert all(_one_side(groups, mask) for _, mask in seen)
    assert len({mask.tobytes() for _, mask in seen}) > 1 and spread["tuned"]["repeats"] == validation.REPEATS


def test_fit_post_runs_once_per_tuning_half_when_a_variant_holds_it():
    calls = []

    class Counted(Flowers):
        def fit_post(self, y_true, probs) -> dict:
            calls.append(len(y_true))
            return {"floor": 0.01}

    y, probs = _noisy()
    scores = validation.cross_fitted(Counted(), y, probs, seed=0)  # default post_variants: {"tuned": fit_post}
    assert len(calls) == 2 and scores["tuned"] == scores[validation.SUBMITTED]
    assert validation.fit_post(Counted(), y, probs) == {"floor": 0.01} and len(calls) == 3  # no memo outside


def test_the_summary_and_the_report_page_show_the_spread_and_say_what_submitted_is():
    from kaggletools.runs import report as page

    comp = Flowers()
    spread = {"tuned": {"sd": 0.004, "min": 0.88, "max": 0.89, "repeats": 5},
              validation.SUBMITTED: {"sd": 0.005, "min": 0.87, "max": 0.89, "repeats": 5}}
    report = {"n_valid": 40, "tta": "flip", "plain": {"log_loss": 0.9, "error_rate": 0.2},
              "with_tta": {"log_loss": 0.85, "error_rate": 0.18}, "post": {"floor": 0.01},
              "with_post": {"plain": {"tuned": 0.9}, "tta": {"tuned": 0.8861, validation.SUBMITTED: 0.8801}},
              "with_post_spread": {"plain": {"tuned": {"sd": 0.0, "min": 0.9, "max": 0.9, "repeats": 1}},
                                   "tta": spread}}
    line = validation.summary(comp, report)
    assert "tuned 0.8861 ± 0.0040" in line and "submitted 0.8801 ± 0.0050" in line and "of 5 halvings" in line
    assert "honest estimate of the test score" in line
    html = page.scores_section(comp, report)
    assert "0.8861 ± 0.0040 (5 halvings)" in html and "0.9000 ± 0.0000 (1 halving)" in html
    assert "what the test set gets" in html
    old = {k: v for k, v in report.items() if k != "with_post_spread"}  # a report written before spreads
    assert "tuned 0.8861" in validation.summary(comp, old) and "±" not in validation.summary(comp, old)
    assert "<td class=\"n\">0.8861</td>" in page.scores_section(comp, old)


def test_the_sampling_spread_is_the_bootstrap_sd_of_the_validation_score_and_is_shown():
    from kaggletools.runs import report as page

    comp = Flowers()
    y, probs = _noisy()
    post = comp.fit_post(y, probs)
    spread = validation.sampling_spread(comp, y, probs, post, seed=0, n=50)
    rng = np.random.default_rng(0)
    by_hand = []
    for _ in range(50):
        pick = rng.integers(0, len(y), len(y))
        by_hand.append(comp.metric(y[pick], probs[pick], post))
    assert spread == {"sd": pytest.approx(np.std(by_hand, ddof=1), abs=1e-12), "resamples": 50, "n_items": len(y)}
    assert spread["sd"] > 0
    fewer = validation.sampling_spread(comp, y[:10], probs[:10], post, seed=0, n=50)
    assert fewer["sd"] > spread["sd"]  # fewer items: a wider spread
    report = {"n_valid": len(y), "tta": "flip", "plain": {"log_loss": 0.9, "error_rate": 0.2},
              "with_tta": {"log_loss": 0.85, "error_rate": 0.18}, "post": post,
              "with_post": {"plain": {}, "tta": {"tuned": 0.8}}, "sampling": spread}
    assert f"±{spread['sd']:.4f} (bootstrap of the {len(y)} items" in validation.summary(comp, report)
    assert f"± {spread['sd']:.4f} (sd over 50 bootstrap resamples" in page.scores_section(comp, report)
    assert validation.sampling_spread(comp, y[:1], probs[:1], post, n=1) == {}


def test_a_loose_estimate_points_to_cross_fitting_with_the_sd_it_would_have():
    from kaggletools.runs import report as page

    text = validation.sharper_estimate("flowers", {"sd": 0.02}, 100, 500)
    assert "100 of 500" in text and "±0.020" in text and "kaggletools cv flowers" in text
    assert f"±{0.02 * (100 / 500) ** 0.5:.3f}" in text  # sd shrinks with the square root of the items scored
    assert validation.sharper_estimate("flowers", {"sd": validation.SHARP / 2}, 100, 500) == ""  # sharp enough
    assert validation.sharper_estimate("flowers", {}, 100, 500) == ""  # nothing sampled
    assert validation.sharper_estimate("flowers", {"sd": 0.02}, 500, 500) == ""  # every item scored already
    assert validation.sharper_estimate("flowers", {"sd": 0.02}, 100, 500, folds=5) == ""  # a fold of a cv
    comp = Flowers()
    report = {"n_valid": 100, "tta": "flip", "plain": {"log_loss": 0.9, "error_rate": 0.2},
              "with_tta": {"log_loss": 0.85, "error_rate": 0.18}, "post": {},
              "with_post": {"plain": {}, "tta": {}}, "sharper": text}
    assert text in validation.summary(comp, report) and "kaggletools cv flowers" in page.scores_section(comp, report)
    del report["sharper"]
    assert "kaggletools cv" not in validation.summary(comp, report) + page.scores_section(comp, report)
