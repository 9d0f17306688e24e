"""Validation of a trained model: scores plain and with TTA, post-processing (a log-loss clip,
thresholds) tuned on the validation predictions, and honest scores for it.

Honest means scored on items that did not choose it: the validation items are split in two
stratified halves, the post-processing is tuned on one half and scored on the other, both ways,
and the two scores are pooled (weighted by size). The post-processing kept for the test set is
tuned on all validation items. A competition may offer several variants (`post_variants`, e.g.
Planet's fixed, global and per-tag thresholds); each is scored the same way, and so is `fit_post`
itself (SUBMITTED), which may choose among them: picking the best variant after the fact flatters
it, SUBMITTED is the honest estimate of what the test set gets. The report repeats the halving
REPEATS times (seeds seed, seed + 1, ...) and keeps each score's mean and its spread.
"""
from __future__ import annotations

import contextlib
import contextvars
import copy

import numpy as np
import pandas as pd

from kaggletools import progress

MIN_HALF = 4  # fewer validation items per half than this: no cross-fitted scores
REPEATS = 5   # halvings behind each reported honest score (their mean, and its spread)
PLAIN_REPEATS = 1  # for predictions without TTA, which tune nothing submitted (a Planet-like search costs
                   # about 0.5 s of CPU per halving on 140 items)
BOOTSTRAP = 200  # resamples of the validation items behind the sampling spread of its score
SHARP = 0.01  # a sampling sd from here up gets a pointer to cross-fitting (issue 22 asks for 0.01)
SUBMITTED = "submitted"  # the honest score of fit_post itself, the procedure whose choice is submitted


def half(task, y: np.ndarray, classes, seed: int, groups=None) -> np.ndarray | None:
    """A mask of one stratified half of the items (a random half when the task cannot stratify them);
    with `groups` (one per item) each group whole on one side, None when that cannot be done."""
    n = len(y)
    try:
        chosen, _ = task.split(y, n // 2, seed, classes, **({} if groups is None else {"groups": groups}))
    except ValueError:
        if groups is not None:
            return None
        chosen = np.random.default_rng(seed).permutation(n)[: n // 2]
    mask = np.zeros(n, bool)
    mask[chosen] = True
    return mask


def cross_fitted(competition, y: np.ndarray, probs: np.ndarray, seed: int = 0, groups=None) -> dict[str, float]:
    """{variant: metric}, each tuned on one half of the items and scored on the other, and SUBMITTED
    (fit_post tuned the same way) when there is something to tune; with `groups`, no group on
    both sides ({} when the items hold too few groups)."""
    n = len(y)
    if n < 2 * MIN_HALF:
        return {}
    in_a = half(competition.task, y, competition.classes, seed, groups)
    if in_a is None or not in_a.any() or in_a.all():
        return {}
    parts = [(in_a, ~in_a), (~in_a, in_a)]
    fitted = [tuned(competition, y[fit], probs[fit], None if groups is None else np.asarray(groups)[fit])
              for fit, _ in parts]
    scores = {}
    for name in [n for n in fitted[0] if n in fitted[1]]:
        total = sum(score.sum() * competition.metric(y[score], probs[score], chosen[name])
                    for (_, score), chosen in zip(parts, fitted))
        scores[name] = float(total / n)
    return scores


def honest_scores(competition, y, probs, seed: int = 0, groups=None, repeats: int = REPEATS) -> tuple[dict, dict]:
    """({variant: mean}, {variant: {"sd", "min", "max", "repeats"}}) of `cross_fitted` over
    `repeats` halvings (seeds seed, seed + 1, ...); a variant missing from one halving is left out."""
    runs = [s for s in (cross_fitted(competition, y, probs, seed + i, groups) for i in range(repeats)) if s]
    means, spread = {}, {}
    for name in [k for k in (runs[0] if runs else {}) if all(k in r for r in runs)]:
        v = np.array([r[name] for r in runs])
        means[name] = float(v.mean())
        spread[name] = {"sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "min": float(v.min()),
                        "max": float(v.max()), "repeats": len(v)}
    return means, spread


def sampling_spread(competition, y: np.ndarray, probs: np.ndarray, post: dict, seed: int = 0,
                    n: int = BOOTSTRAP) -> dict:
    """How far the validation score itself may sit from the score on other items of the same kind:
    the sd of the metric (with `post`) over `n` bootstrap resamples of the validation items. With a
    few hundred items this sampling spread (0.01-0.03) dwarfs the halvings' spread; {} when fewer
    than 2 resamples could be scored (e.g. a resample with one class only for an AUC)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        pick = rng.integers(0, len(y), len(y))
        try:
            value = float(competition.metric(y[pick], probs[pick], post))
        except ValueError:
            continue
        if np.isfinite(value):
            values.append(value)
    if len(values) < 2:
        return {}
    return {"sd": float(np.std(values, ddof=1)), "resamples": len(values), "n_items": int(len(y))}


def sharper_estimate(slug: str, sampling: dict, n_valid: int, n_labelled: int, folds: int = 0) -> str:
    """A pointer to cross-fitting when one split's estimate is loose (sampling sd SHARP or more):
    `cv` scores every labelled item out of fold, so its sampling sd is about sqrt(n_valid /
    n_labelled) of this one. '' when the estimate is sharp already, nothing was sampled, or the
    run is a fold of a cross-validation already (`folds`)."""
    if folds or not sampling or sampling["sd"] < SHARP or n_labelled <= n_valid:
        return ""
    return (f"one split scores {n_valid} of {n_labelled} labelled items, so the estimate may be "
            f"±{sampling['sd']:.3f} off; `kaggletools cv {slug} --repeats 2` scores all of them out of fold "
            f"(about ±{sampling['sd'] * (n_valid / n_labelled) ** 0.5:.3f}) and estimates the average of "
            "the models it submits")


def with_spread(mean: float, spread: dict | None) -> str:
    """'0.8861 ± 0.0040 (5 halvings)', or the mean alone without a spread (e.g. an older report)."""
    if not spread:
        return f"{mean:.4f}"
    n = spread.get("repeats", 1)
    return f"{mean:.4f} ± {spread.get('sd', 0.0):.4f} ({n} halving{'s' if n != 1 else ''})"


def tuned(competition, y, probs, groups=None) -> dict:
    """{variant: post} of `post_variants`, and fit_post's own as SUBMITTED ({} when neither tunes
    anything). fit_post runs once: a variant holding its choice (Planet's `chosen`) reuses it."""
    with _fit_once():
        variants = post_variants(competition, y, probs, groups)
        submitted = fit_post(competition, y, probs, groups)
    return {**variants, SUBMITTED: submitted} if variants or submitted else {}


def post_variants(competition, y, probs, groups=None) -> dict:
    """competition.post_variants(y, probs), given `groups` when there are some and it takes them
    (a module written before groups keeps its two-argument override)."""
    return competition.post_variants(y, probs, **_groups_for(competition.post_variants, groups))


def fit_post(competition, y, probs, groups=None) -> dict:
    """competition.fit_post(y, probs), given `groups` as `post_variants` is (inside `_fit_once`,
    computed once for the same competition and array objects)."""
    memo = _FITTED.get()
    for args, post in memo or ():
        if all(a is b for a, b in zip(args, (competition, y, probs, groups))):
            return copy.deepcopy(post)
    post = competition.fit_post(y, probs, **_groups_for(competition.fit_post, groups))
    if memo is not None:
        memo.append(((competition, y, probs, groups), post))  # holds the arrays: `is` cannot be fooled
    return post


_FITTED: contextvars.ContextVar[list | None] = contextvars.ContextVar("fitted_posts", default=None)


@contextlib.contextmanager
def _fit_once():
    token = _FITTED.set([])
    try:
        yield
    finally:
        _FITTED.reset(token)


def _groups_for(method, groups) -> dict:
    import inspect

    if groups is None:
        return {}
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return {}
    takes = any(p.name == "groups" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    return {"groups": groups} if takes else {}


def validate(learner, items: pd.DataFrame, run=None, post: dict | None = None, groups=None) -> dict:
    """Predictions on the validation items with and without TTA, post-processing tuned on the
    TTA ones (unless `post` is given, e.g. from another run), honest scores; saved in `run`.
    `groups`: each item's group (kaggletools.data.items.Split.groups) for grouped honest halves."""
    comp, d, r = learner.competition, learner.data, learner.recipe
    if len(d.valid_idx) == 0:
        return {"n_valid": 0, "post": post or {}, "tta": r.tta, "epochs": learner.history,
                "note": "no validation items: nothing was scored" + (" (post-processing from another run)"
                                                                     if post else "")}
    out = learner.predict(d.valid_idx, r.tta, desc="valid (TTA)")
    y = d.y[d.valid_idx]
    g = None if groups is None else np.asarray(groups)[d.valid_idx]
    chosen = post if post is not None else fit_post(comp, y, out.tta, g)
    tta = honest_scores(comp, y, out.tta, r.seed, g)  # what is tuned for the test set: REPEATS halvings
    plain = tta if np.array_equal(out.plain, out.tta) else honest_scores(comp, y, out.plain, r.seed, g, PLAIN_REPEATS)
    report = {"n_valid": int(len(d.valid_idx)), "tta": r.tta, "post": chosen,
              "post_source": "given" if post is not None else "tuned on all validation items",
              "plain": learner.scores(y, out.plain), "with_tta": learner.scores(y, out.tta),
              "with_post": {"plain": plain[0], "tta": tta[0]},  # means: {variant: float} as before
              "with_post_spread": {"plain": plain[1], "tta": tta[1]},
              "sampling": sampling_spread(comp, y, out.tta, chosen, r.seed),
              "epochs": learner.history}
    report["sharper"] = sharper_estimate(comp.slug, report["sampling"], len(d.valid_idx),
                                         len(d.train_idx) + len(d.valid_idx), learner.options.folds)
    if run is not None:
        run.save_table("valid_predictions.csv", prediction_table(comp, items["id"].to_numpy()[d.valid_idx], y,
                                                                 out.plain, out.tta))
    progress.write(summary(comp, report), learner.show)
    return report


def prediction_table(comp, ids, y, plain, tta) -> pd.DataFrame:
    """One row per item: its targets (`<class>`), plain and TTA probabilities."""
    columns = {"id": ids}
    for i, c in enumerate(output_names(comp)):
        columns.update({c: y[:, i], f"{c}_prob": plain[:, i], f"{c}_prob_tta": tta[:, i]})
    return pd.DataFrame(columns)


def read_prediction_table(comp, table: pd.DataFrame, which: str = "tta",
                          where: str = "valid_predictions.csv") -> tuple[np.ndarray, np.ndarray]:
    """(targets, probabilities) back from a prediction table; `which`: plain or tta. Read like our
    own output: every column present, every value a number in [0, 1] (`where`: the file, named
    in the error)."""
    names = output_names(comp)
    suffix = "_prob_tta" if which == "tta" else "_prob"
    probs = [f"{c}{suffix}" for c in names]
    return checked(table, names, where).astype(np.float32), checked(table, probs, where).astype(np.float32)


def checked(table: pd.DataFrame, columns: list[str], where: str) -> np.ndarray:
    """The `columns` of a prediction table as floats, each value a number in [0, 1]; otherwise a
    RunError naming the file, the column and the first bad row."""
    from kaggletools.errors import RunError

    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise RunError(f"{where} lacks the column(s) {missing}; the run folder was edited or damaged: predict or "
                       "train again")
    out = np.empty((len(table), len(columns)), np.float64)
    for j, column in enumerate(columns):
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values) | (values < 0) | (values > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            row = f" (id {table['id'].iloc[i]!r})" if "id" in table.columns else ""
            raise RunError(f"{where}: column {column!r} holds {table[column].iloc[i]!r} in row {i + 1}{row} and "
                           f"{int(bad.sum()) - 1} more outside [0, 1] or not a number; the file was edited or "
                           "damaged: predict or train again")
        out[:, j] = values
    return out


def output_names(comp) -> list[str]:
    return list(comp.classes)[: comp.n_outputs]


def summary(comp, report: dict) -> str:
    name = comp.metric_name
    line = (f"validation ({report['n_valid']} items) {name}: {report['plain'][name]:.4f} plain, "
            f"{report['with_tta'][name]:.4f} with TTA '{report['tta']}'; error {report['plain']['error_rate']:.2%} "
            f"plain, {report['with_tta']['error_rate']:.2%} with TTA")
    honest = report["with_post"]["tta"]
    spread = (report.get("with_post_spread") or {}).get("tta") or {}
    if honest:
        n = max([s.get("repeats", 1) for s in spread.values()], default=1)
        how = f", mean ± sd of {n} halving{'s' if n != 1 else ''}" if spread else ""
        line += (f"; with post-processing (tuned on one half, scored on the other{how}): "
                 + ", ".join(f"{k} {v:.4f}" + (f" ± {spread[k]['sd']:.4f}" if k in spread else "")
                             for k, v in honest.items()))
        if SUBMITTED in honest:
            line += f" ({SUBMITTED}: fit_post's own choice, the honest estimate of the test score)"
    sampling = report.get("sampling") or {}
    if sampling:
        line += (f"; sampling sd of the validation score ±{sampling['sd']:.4f} (bootstrap of the "
                 f"{sampling['n_items']} items: other items of the same kind may score that far off)")
    if isinstance(report.get("post"), dict) and report["post"].get("note"):
        line += f"; {report['post']['note']}"  # e.g. which thresholds the test set gets, and why
    if report.get("sharper"):
        line += f"; {report['sharper']}"
    return line
