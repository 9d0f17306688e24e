"""Blends: the test probabilities of several finished runs of one competition averaged (with
weights), post-processing tuned on their validation predictions, a validated submission.

Validation predictions combine in one of two ways:
- runs that validated the same items (one split, several backbones): their predictions on the
  items they all share are averaged with the same weights;
- runs that validated disjoint items (the folds of a cross-validation): each item keeps the
  prediction of the run that held it out (out-of-fold).
Either way post-processing is tuned on the result and scored honestly (kaggletools.score.validation).
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
    ids_valid, y, probs, how, fold = _validation(saved, w)
    groups = _groups(saved, ids_valid) if len(y) else None
    post = validation.fit_post(comp, y, probs, groups) if len(y) else saved[0].meta.get("post", {})
    report = {"runs": [str(s.run.path) for s in saved], "weights": w.tolist(), "validation": how,
              "n_valid": int(len(y)), "post": post}
    if len(y):
        report["scores"] = {comp.metric_name: comp.metric(y, probs), "error_rate": comp.task.error_rate(y, probs)}
        report["with_post"], report["with_post_spread"] = validation.honest_scores(  # means; sd, min, max
            comp, y, probs, groups=groups)
        report["sampling"] = validation.sampling_spread(comp, y, probs, post)  # bootstrap sd over the items
        if fold is not None:
            report["folds"] = fold_spread(comp, y, probs, post, fold)
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
                          f"max {max(report['folds']['scores']):.4f})" if report.get("folds") else ""))
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
    fold: np.ndarray | None = None  # out-of-fold: the index of the run that held each item out


def fold_spread(comp, y: np.ndarray, probs: np.ndarray, post: dict, fold: np.ndarray) -> dict:
    """Each fold scored on its own held-out items (with `post`, as submitted), and their mean and
    sd: how far one split's estimate moves from another's. {} when fewer than two folds score
    (e.g. a fold with one class only for an AUC)."""
    scores = []
    for k in np.unique(fold):
        try:
            value = float(comp.metric(y[fold == k], probs[fold == k], post))
        except ValueError:
            return {}
        if not np.isfinite(value):
            return {}
        scores.append(value)
    if len(scores) < 2:
        return {}
    return {"scores": scores, "mean": float(np.mean(scores)), "sd": float(np.std(scores, ddof=1))}


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
    for s, t in zip(saved, tables):  # every run's file checked as a whole, named in any error
        validation.read_prediction_table(comp, t, "tta", str(s.run.file("valid_predictions.csv")))
        if t["id"].duplicated().any():
            raise RunError(f"{s.run.file('valid_predictions.csv')} lists a validation id twice "
                           f"({t['id'][t['id'].duplicated()].iloc[0]!r}); the run folder was edited or damaged")
    common = set.intersection(*(set(t["id"]) for t in tables))
    if common:
        keep = sorted(common)
        parts = [validation.read_prediction_table(comp, t.set_index("id").loc[keep].reset_index()) for t in tables]
        return Validation(keep, parts[0][0], np.tensordot(w, np.stack([p for _, p in parts]), 1), "shared")
    pooled = pd.concat(tables, ignore_index=True)
    if pooled["id"].duplicated().any():
        return Validation(*none, "none (validation items overlap partly)")
    y, p = validation.read_prediction_table(comp, pooled)
    fold = np.repeat(np.arange(len(tables)), [len(t) for t in tables])
    return Validation(list(pooled["id"]), y, p, "out-of-fold", fold)
