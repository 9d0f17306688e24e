"""Blends: the test probabilities of several finished runs of one competition averaged (with
weights), post-processing tuned on their validation predictions, a validated submission.

Validation predictions combine in one of three ways:
- runs that validated the same items (one split, several backbones): their predictions on the
  items they all share are averaged with the same weights;
- runs that validated disjoint items (the folds of a cross-validation): each item keeps the
  prediction of the run that held it out (out-of-fold);
- folds drawn R times (`cv --repeats R`): each item's R out-of-fold predictions are averaged, and
  the report measures what that averaging gains (`averaging_gain`) to estimate the submission,
  which averages every run.
Each way post-processing is tuned on the result and scored honestly (kaggletools.score.validation).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from kaggletools import progress
from kaggletools.data import items as data
from kaggletools.steps import predict as inference
from kaggletools.runs import folder as runs
from kaggletools.score import validation
from kaggletools.errors import RunError
import kaggletools.competition.inferred as inferred


def blend(run_dirs: list[Path], *, weights: list[float] | None = None, data_dir: Path | None = None,
          folder: Path | None = None, out: Path | None = None, overwrite: bool = False, show: bool = True) -> dict:
    """Write `folder` (a run-like folder: blend.json, report.json, test and validation predictions)
    and the submission `out`; return the report."""
    saved = [inference.SavedRun.load(r) for r in run_dirs]
    comp = saved[0].competition
    others = {s.competition.slug for s in saved} - {comp.slug}
    if others:
        raise RunError(f"runs of different competitions cannot be blended: {comp.slug} and {sorted(others)}")
    w = np.ones(len(saved)) if weights is None else np.asarray(weights, np.float64)
    if len(w) != len(saved) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise RunError(f"give one finite, non-negative weight per run ({len(saved)} runs), not all zero; "
                       f"got {weights}")
    w = w / w.sum()
    data_dir = Path(data_dir or saved[0].data_dir)
    if out:
        inference.refuse_existing(Path(out), overwrite)

    has_test = _has_test_items(comp, data_dir)
    if has_test:
        ids, test = _test_probabilities(saved, data_dir, show)
        mean = np.tensordot(w, np.stack(test), 1)
    ids_valid, y, probs, how, own, repeats = _validation(saved, w)
    groups = _groups(saved, ids_valid) if len(y) else None
    post = validation.fit_post(comp, y, probs, groups) if len(y) else saved[0].meta.get("post", {})
    report = {"runs": [str(s.run.path) for s in saved], "weights": w.tolist(), "validation": how,
              "n_valid": int(len(y)), "post": post}
    if len(y):
        report["scores"] = {comp.metric_name: comp.metric(y, probs), "error_rate": comp.task.error_rate(y, probs)}
        report["with_post"], report["with_post_spread"] = validation.honest_scores(  # means; sd, min, max
            comp, y, probs, groups=groups)
        report["sampling"] = validation.sampling_spread(comp, y, probs, post)  # bootstrap sd over the items
        if own:
            report["folds"] = fold_spread(comp, y, post, own)
        if repeats:
            report["averaging"] = averaging_gain(comp, y, repeats, probs, post, len(saved))
        report["estimate"] = estimate(comp, report)
    made = folder is None or not Path(folder).exists()
    folder = Path(folder) if folder else runs.Run.create(Path("runs") / comp.slug, "blend").path
    folder.mkdir(parents=True, exist_ok=True)  # only now: a refused blend leaves no folder
    run = runs.Run(folder)
    out = Path(out) if out else Path("submissions") / f"{comp.slug}-{folder.name}.csv"
    try:
        inference.refuse_existing(out, overwrite)
        run.save_json("config.json", {"competition": comp.slug, **inferred.record(comp), "data_dir": str(data_dir.resolve()), "blend": report})
        if has_test:
            run.save_table("test_predictions.csv", inference.probability_table(comp, ids, mean))
        if len(y):
            run.save_table("valid_predictions.csv", validation.prediction_table(comp, ids_valid, y, probs, probs))
        report["submission"] = str(inference.write_submission(comp, ids, mean, post, data_dir, out, overwrite)) \
            if has_test else None
        if not has_test:
            report["note"] = f"{data_dir}: no test items, so no submission (validation scores only)"
        run.save_json("report.json", report)
    except BaseException:
        if made:  # refused while written (an invalid submission, a full disk): the blend leaves nothing
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if show and len(y):
        progress.write(f"blend of {len(saved)} runs, {how} validation on {len(y)} items: {comp.metric_name} "
                       f"{report['scores'][comp.metric_name]:.4f}; with post-processing (cross-fitted, mean ± sd "
                       "over halvings; submitted: the honest estimate of the test score) " + ", ".join(
                           f"{k} {validation.with_spread(v, report['with_post_spread'].get(k))}"
                           for k, v in report["with_post"].items())
                       + (f"; sampling sd ±{report['sampling']['sd']:.4f} over the {len(y)} items"
                          if report.get("sampling") else "")
                       + (f"; folds, each on its own items: {report['folds']['mean']:.4f} ± "
                          f"{report['folds']['sd']:.4f} (min {min(report['folds']['scores']):.4f}, "
                          f"max {max(report['folds']['scores']):.4f})" if report.get("folds") else "")
                       + f"; estimate of the submission's {comp.metric_name}: {report['estimate']['value']:.4f} "
                         f"({report['estimate']['how']})")
    return {"folder": str(folder), **report}


def _has_test_items(comp, data_dir: Path) -> bool:
    """False only when the data folder holds no test items at all (e.g. a partial download of the
    training images): the blend then scores its validation predictions and writes no submission."""
    from kaggletools.errors import CompetitionError

    try:
        return len(comp.items(data_dir, "test")) > 0
    except CompetitionError:
        return True  # let the test step raise its own error


def _test_probabilities(saved, data_dir: Path, show: bool) -> tuple[list, list[np.ndarray]]:
    """Each run's test probabilities, in one id order; runs must cover the same test ids."""
    tables = []
    for s in saved:
        file = s.run.file("test_predictions.csv")
        if file.is_file() and Path(s.data_dir).resolve() == data_dir.resolve():
            tables.append(s.run.load_table("test_predictions.csv", ("id",), dtype={"id": str}))
        else:
            items, probs = inference.test_probabilities(s, data_dir, show=show)
            tables.append(inference.probability_table(s.competition, items["id"].astype(str), probs))
    expected = set(data.test_items(saved[0].competition, data_dir)["id"].astype(str))
    for s, t in zip(saved, tables):
        if t["id"].astype(str).duplicated().any():
            raise RunError(f"{s.run.file('test_predictions.csv')} lists a test id twice; the run folder was edited "
                           f"or damaged: predict again with `kaggletools predict {s.run.path}`")
        got = set(t["id"].astype(str))
        if got != expected:
            odd = sorted(got - expected)[:3] or sorted(expected - got)[:3]
            raise RunError(f"{s.run.file('test_predictions.csv')} does not list the test items of {data_dir} "
                           f"({len(got - expected)} unknown, {len(expected - got)} missing, e.g. {odd}); predict "
                           f"again with `kaggletools predict {s.run.path}`")
    ids = tables[0]["id"].astype(str)  # every table lists exactly the data folder's test items (above)
    comp = saved[0].competition
    out = []
    for s, t in zip(saved, tables):
        file = s.run.file("test_predictions.csv")
        with runs.damaged(file):
            in_order = t.set_index(t["id"].astype(str)).loc[ids].reset_index(drop=True)
            out.append(inference.read_probability_table(comp, in_order, str(file)))
    return list(ids), out


class Validation(NamedTuple):
    ids: list
    y: np.ndarray
    probs: np.ndarray
    how: str
    own: list = []      # out-of-fold: (positions in ids, probabilities there) of each run
    repeats: list = []  # R > 1 repeats of the folds: each repeat's out-of-fold probabilities, in ids order


def fold_spread(comp, y: np.ndarray, post: dict, own: list) -> dict:
    """Each fold scored on its own held-out items (with `post`, as submitted), and their mean and
    sd: how far one split's estimate moves from another's. {} when fewer than two folds score
    (e.g. a fold with one class only for an AUC)."""
    scores = []
    for at, probs in own:
        try:
            value = float(comp.metric(y[at], probs, post))
        except ValueError:
            return {}
        if not np.isfinite(value):
            return {}
        scores.append(value)
    if len(scores) < 2:
        return {}
    return {"scores": scores, "mean": float(np.mean(scores)), "sd": float(np.std(scores, ddof=1))}


def averaging_gain(comp, y: np.ndarray, repeats: list, averaged: np.ndarray, post: dict, n_models: int) -> dict:
    """What averaging models gains, measured out of fold: each item is scored by one model per
    repeat, so the mean score of one repeat's predictions (`one_model`) and the score of their
    average over the R repeats (`averaged`) are both honest. A variance-like gain grows as
    1 - 1/M with M models averaged, so the R-model gain extrapolates to the `n_models` the
    submission averages: `to_all_models` is what to add to the R-model score."""
    r = len(repeats)
    one = float(np.mean([comp.metric(y, p, post) for p in repeats]))
    avg = float(comp.metric(y, averaged, post))
    gain = avg - one
    return {"repeats": r, "models": n_models, "one_model": one, "averaged": avg, "gain": gain,
            "to_all_models": gain * (1 / r - 1 / n_models) / (1 - 1 / r)}


def estimate(comp, report: dict) -> dict:
    """The blend's estimate of what its submission scores: the honest score of what it submits
    (validation.SUBMITTED when post-processing is tuned, else the plain metric), plus for folds
    drawn R > 1 times the gain of averaging all the models, extrapolated (`averaging_gain`)."""
    base = (report.get("with_post") or {}).get(validation.SUBMITTED, report["scores"][comp.metric_name])
    averaging = report.get("averaging") or {}
    if averaging:
        how = (f"{base:.4f} scored out of fold by the average of {averaging['repeats']} models per item, "
               f"{averaging['to_all_models']:+.4f} for averaging all {averaging['models']} (one model per item: "
               f"{averaging['one_model']:.4f})")
    elif report["validation"] == "out-of-fold":
        how = ("each item scored by the one fold model that did not train on it; the submission averages "
               f"{len(report['runs'])} models, which usually scores better: `--repeats 2` measures by how much")
    else:
        how = "the blend's predictions on the validation items the runs share"
    return {"value": base + averaging.get("to_all_models", 0.0), "how": how}


def _groups(saved, ids) -> np.ndarray | None:
    """Each validation item's group as the runs' split.csv recorded it, for honest halves that keep
    groups apart (None when the runs were not split by group)."""
    found: dict[str, str] = {}
    for s in saved:
        if not s.run.file("split.csv").is_file():
            return None
        table = s.run.load_table("split.csv", ("id",), dtype={"id": str})
        groups = data.recorded_groups(table)[1]
        if groups is None:
            return None
        found.update(zip(table["id"], groups))
    values = [found.get(str(i)) for i in ids]
    return None if any(v is None for v in values) else np.asarray(values)


def _validation(saved, w: np.ndarray) -> Validation:
    """The blend's validation items, targets and probabilities, and how they combine (the docstring above)."""
    comp = saved[0].competition
    none = ([], np.zeros((0, comp.n_outputs)), np.zeros((0, comp.n_outputs)))
    tables = [s.run.load_table("valid_predictions.csv", ("id",), dtype={"id": str})
              for s in saved if s.run.file("valid_predictions.csv").is_file()]
    if len(tables) != len(saved):
        return Validation(*none, "none (a run has no validation items)")
    parsed = []  # (targets, probabilities) of each run, read once
    for s, t in zip(saved, tables):  # every run's file checked as a whole, named in any error
        parsed.append(validation.read_prediction_table(comp, t, "tta", str(s.run.file("valid_predictions.csv"))))
        if t["id"].duplicated().any():
            raise RunError(f"{s.run.file('valid_predictions.csv')} lists a validation id twice "
                           f"({t['id'][t['id'].duplicated()].iloc[0]!r}); the run folder was edited or damaged")
    common = set.intersection(*(set(t["id"]) for t in tables))
    if common:
        keep = sorted(common)
        parts = [validation.read_prediction_table(comp, t.set_index("id").loc[keep].reset_index()) for t in tables]
        return Validation(keep, parts[0][0], np.tensordot(w, np.stack([p for _, p in parts]), 1), "shared")
    repeats = _repeat_groups(tables)
    if repeats is None:
        return Validation(*none, "none (validation items overlap partly)")
    ids = list(pd.concat([tables[i] for i in repeats[0]], ignore_index=True)["id"])
    position = pd.Series(np.arange(len(ids)), index=ids)
    y, own, per_repeat, weight = None, [], [], []
    for group in repeats:
        probs, wsum = np.zeros((len(ids), comp.n_outputs)), np.zeros((len(ids), 1))
        for i in group:
            yi, pi = parsed[i]
            at = position.loc[tables[i]["id"]].to_numpy()
            if y is None:
                y = np.zeros((len(ids), yi.shape[1]), yi.dtype)
            y[at], probs[at], wsum[at] = yi, pi, w[i]
            own.append((at, pi))
        per_repeat.append(probs)
        weight.append(wsum)
    if len(repeats) == 1:
        return Validation(ids, y, per_repeat[0], "out-of-fold", own)
    weight = np.asarray(weight)
    weight[:, weight.sum(0)[:, 0] == 0] = 1.0  # an item whose runs all weigh 0: their plain mean
    averaged = np.sum([p * wr for p, wr in zip(per_repeat, weight)], 0) / weight.sum(0)
    return Validation(ids, y, averaged, f"out-of-fold, {len(repeats)} repeats", own, per_repeat)


def _repeat_groups(tables: list[pd.DataFrame]) -> list[list[int]] | None:
    """The runs (indices) in repeats: each repeat's runs hold out disjoint items that together
    cover the same items as every other repeat's (a cv's folds, drawn once or R times). None when
    the runs' validation items do not fall into such groups."""
    groups: list[list[int]] = []
    covered: list[set] = []
    for i, t in enumerate(tables):
        ids = set(t["id"])
        for group, seen in zip(groups, covered):
            if not seen & ids:
                group.append(i)
                seen |= ids
                break
        else:
            groups.append([i])
            covered.append(set(ids))
    return groups if all(seen == covered[0] for seen in covered) else None
