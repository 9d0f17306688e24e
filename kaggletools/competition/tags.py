"""Shared pieces for multi-label competitions whose labels are space-separated tags
(`image_name,tags` -> `train_1,agriculture clear primary water`): tag rules (exactly one of a group, tags that stand
alone), per-class thresholds tuned for mean F-beta, and turning probabilities back into tags.

Planet is the first user; a new multi-label competition declares its classes and rules and
calls these instead of writing them again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kaggletools.score import metrics
from kaggletools.errors import CompetitionError



# -- tag rules and thresholds ------------------------------------------------------------------
@dataclass(frozen=True)
class TagRules:
    """Structure a competition's tags obey, applied when turning probabilities into tags.

    one_of: exactly one of these tags per item: the one with the highest probability divided by
        its threshold (Planet: the four weather tags).
    alone: tags that, when predicted, exclude every other tag (Planet: `cloudy`, since cloudy
        chips show no ground).
    """

    one_of: tuple[str, ...] = ()
    alone: tuple[str, ...] = ()

    def check(self, classes) -> None:
        unknown = set(self.one_of) | set(self.alone)
        unknown -= set(classes)
        if unknown:
            raise CompetitionError(f"tag rules name unknown tags {sorted(unknown)}; classes are {list(classes)}")


def decide(probs: np.ndarray, thresholds, classes, rules: TagRules = TagRules()) -> np.ndarray:
    """(n, k) booleans: probability above the class threshold (one number, or one per class),
    then the rules applied."""
    probs = np.asarray(probs, dtype=np.float64)
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (probs.shape[1],))
    pred = probs > t
    index = {c: i for i, c in enumerate(classes)}
    if rules.one_of:
        cols = np.array([index[c] for c in rules.one_of])
        choice = cols[np.argmax(probs[:, cols] / np.maximum(t[cols], 1e-6), axis=1)]
        pred[:, cols] = False
        pred[np.arange(len(pred)), choice] = True
    for tag in rules.alone:
        rows = pred[:, index[tag]].copy()
        pred[rows] = False
        pred[rows, index[tag]] = True
    return pred


def to_tags(pred: np.ndarray, classes) -> list[str]:
    """Space-separated tags of each row of a 0/1 matrix, in the order of `classes`."""
    names = np.asarray(classes, dtype=object)
    return [" ".join(names[row]) for row in np.asarray(pred, bool)]


def thresholds(post: dict | None, classes) -> np.ndarray:
    """Per-class thresholds from saved post-processing: 0.5 each when there is none. `post`
    may give them as a list in class order or as a {tag: threshold} mapping (a hand-written
    thresholds JSON). Anything that does not match the classes raises CompetitionError."""
    classes = list(classes)
    raw = (post or {}).get("thresholds")
    if raw is None:
        return np.full(len(classes), 0.5)
    saved = (post or {}).get("classes")
    if saved is not None and list(saved) != classes:
        raise CompetitionError(f"thresholds were tuned for classes {list(saved)}, not this competition's "
                               f"{classes}; train again or give thresholds for these classes")
    if isinstance(raw, dict):
        unknown, absent = set(raw) - set(classes), [c for c in classes if c not in raw]
        if unknown or absent:
            raise CompetitionError(f"thresholds name unknown tag(s) {sorted(unknown)} and lack {absent}; give one "
                                   f"threshold for each of {classes}")
        raw = [raw[c] for c in classes]
    try:
        t = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise CompetitionError(f"thresholds must be numbers, got {raw!r}") from None
    if t.shape != (len(classes),):
        raise CompetitionError(f"{t.size} threshold(s) given but there are {len(classes)} classes ({classes}); "
                               "give one threshold per class, in this order")
    if not np.all((t > 0) & (t < 1)):
        raise CompetitionError(f"thresholds must lie strictly between 0 and 1, got {t.tolist()}")
    return t


# Honest thresholds. Which thresholds to submit is decided on the validation items, so every
# score that backs the choice is measured on items that did not tune it: each variant is tuned on
# one stratified half and scored on the other, both ways (`cross_fitted`). The constants below were
# measured on out-of-fold predictions for the 693 real chips (benchmarks/README.md, Planet).
FIXED = {"fixed_0.5": 0.5, "fixed_0.2": 0.2}   # 0.5: the plain decision; 0.2: fast.ai's customary Planet threshold
VARIANTS = ("fixed_0.5", "fixed_0.2", "global", "per_tag")
PREFERENCE = ("fixed_0.2", "fixed_0.5", "global", "per_tag")  # ties go to the variant that fits less
MIN_POSITIVES = 10  # a tag with fewer positives among the tuning items keeps the global threshold
SHRINK = 100        # others move from the global threshold by n / (n + SHRINK) of their own optimum's offset
SPLITS = 3          # cross-fitting repeats (different halves) behind the choice


def global_threshold(y_true, probs, classes, rules: TagRules = TagRules(), beta: float = 2.0, score=None) -> float:
    """The one threshold for every tag maximising mean F-beta over items (or `score(y_true,
    decisions)`), rules applied."""
    classes = list(classes)
    return metrics.best_threshold(y_true, probs, beta=beta, decide=lambda p, t: decide(p, t, classes, rules),
                                  score=score)[0]


def tag_thresholds(y_true, probs, classes, rules: TagRules = TagRules(), beta: float = 2.0, start: float | None = None,
                   min_positives: int = MIN_POSITIVES, shrink: float = SHRINK, max_passes: int = 3,
                   score=None) -> np.ndarray:
    """Per-tag thresholds that do not chase a few positives: from the global threshold `start`,
    coordinate ascent of mean F-beta (rules applied) over the tags with at least `min_positives`
    positives only; the others keep the global threshold. Each searched tag's offset from the
    global threshold is then shrunk by n / (n + shrink), n its positives."""
    classes = list(classes)
    y, probs = np.asarray(y_true), np.asarray(probs, np.float64)

    def rule(p, t):
        return decide(p, t, classes, rules)

    g = global_threshold(y, probs, classes, rules, beta, score) if start is None else float(start)
    grid = np.asarray(metrics.THRESHOLD_GRID, np.float64)
    n_pos = (y > 0.5).sum(0)
    search = n_pos >= max(min_positives, 1)
    free = np.array([c not in rules.one_of and c not in rules.alone for c in classes])  # rules only veto these
    t, _ = metrics.best_class_thresholds(y, probs, grid, beta=beta, start=g, decide=rule, free=free,
                                         max_passes=max_passes, score=score, search=search)
    weight = np.where(search, n_pos / (n_pos + shrink) if shrink > 0 else 1.0, 0.0)
    return np.clip(g + weight * (t - g), grid[0], grid[-1])


def threshold_variants(y_true, probs, classes, rules: TagRules = TagRules(), beta: float = 2.0,
                       min_positives: int = MIN_POSITIVES, shrink: float = SHRINK, score=None) -> dict[str, dict]:
    """{variant: post-processing} tuned on (y_true, probs): 0.5 and 0.2 for every tag (nothing
    tuned), one tuned global threshold, per-tag thresholds (see `tag_thresholds`)."""
    classes = list(classes)

    def post(t, **more):
        t = np.broadcast_to(np.asarray(t, np.float64), (len(classes),))
        return {"thresholds": [round(float(v), 4) for v in t], "classes": classes, **more}

    out = {name: post(value) for name, value in FIXED.items()}
    if len(y_true) == 0:
        return out
    g = global_threshold(y_true, probs, classes, rules, beta, score)
    out["global"] = post(g, global_threshold=g)
    out["per_tag"] = post(tag_thresholds(y_true, probs, classes, rules, beta, g, min_positives, shrink, score=score),
                          global_threshold=g, min_positives=min_positives, shrink=shrink)
    return out


def cross_fitted(y_true, probs, fit, score, halves) -> dict[str, float]:
    """{variant: score} honestly: for each (a, b) of `halves` (index arrays of two disjoint halves),
    `fit(y, probs) -> {variant: post}` on a and `score(y, probs, post)` on b, then on b and a;
    pooled by size, averaged over the pairs. {} without halves."""
    totals: dict[str, list[float]] = {}
    for a, b in halves:
        parts = [(a, b), (b, a)]
        fitted = [fit(y_true[f], probs[f]) for f, _ in parts]
        n = sum(len(s) for _, s in parts)
        for name in fitted[0]:
            pooled = sum(len(s) * score(y_true[s], probs[s], chosen[name]) for (_, s), chosen in zip(parts, fitted))
            totals.setdefault(name, []).append(float(pooled / n))
    return {name: float(np.mean(v)) for name, v in totals.items()}


def choose_thresholds(y_true, probs, classes, rules: TagRules = TagRules(), beta: float = 2.0, halves=(),
                      min_positives: int = MIN_POSITIVES, shrink: float = SHRINK, score=None,
                      metric_name: str = "") -> dict:
    """The thresholds to submit: every variant scored honestly on `halves` of these items (see
    `cross_fitted`); the best one (ties to the one that fits less, see PREFERENCE) is tuned on all
    items. The metric: mean F-beta over items, or `score(y_true, decisions)` (higher is better)
    named `metric_name`, for tuning and choosing alike. Without halves (too few items to judge),
    0.2 for every tag. The post-processing dict says which variant it chose, with the honest score
    of each; no score measured on the items that tuned it."""
    classes = list(classes)
    y, probs = np.asarray(y_true), np.asarray(probs, np.float64)
    name = metric_name or f"f{beta:g}"

    def fit(yy, pp):
        return threshold_variants(yy, pp, classes, rules, beta, min_positives, shrink, score)

    def scored(yy, pp, post):
        return metrics.decided_score(yy, pp, post["thresholds"], beta, lambda p, t: decide(p, t, classes, rules), score)

    honest = cross_fitted(y, probs, fit, scored, list(halves))
    if honest:
        best = max(honest.values())
        chosen = next(v for v in PREFERENCE if v in honest and honest[v] >= best - 1e-12)
        how = (f"each tuned on one stratified half of the {len(y)} validation items and scored on the other, both "
               f"ways, mean of {len(halves)} splits")
        note = f"test thresholds: {chosen} (cross-fitted {name}, mean of {len(halves)} half splits: " + ", ".join(
            f"{v} {honest[v]:.4f}" for v in VARIANTS if v in honest) + ")"
    else:
        chosen, how = "fixed_0.2", f"too few validation items ({len(y)}) to compare variants honestly"
        note = f"test thresholds: {chosen} ({how})"
    post = fit(y, probs)[chosen]
    return {**post, "variant": chosen, f"{name}_honest": honest, "honest": how, "note": note}


def check_tags(tags: pd.Series, classes) -> None:
    """Submission values as Kaggle scores them: space-separated tags, any number per row (none
    included). Tags the competition does not know are scored as wrong guesses, not refused, so
    they only draw a warning naming the first row. (Tag rules such as Planet's one weather tag are
    how we decide our own predictions, not a condition for a file to be scored.)"""
    import warnings

    known = set(classes)
    rows = tags.fillna("").astype(str).str.split()
    unknown = rows.map(lambda row: [t for t in row if t not in known])
    has = unknown.map(bool).to_numpy()
    if has.any():
        first = int(np.flatnonzero(has)[0])
        names = sorted({t for row in unknown for t in row})
        warnings.warn(f"{int(has.sum())} row(s) hold tags the competition does not know, e.g. row {first + 1}: "
                      f"{unknown.iloc[first]}; Kaggle scores them as wrong (known tags: {', '.join(classes)})"
                      + (f"; all unknown: {names[:10]}" if len(names) > 1 else ""), stacklevel=2)
