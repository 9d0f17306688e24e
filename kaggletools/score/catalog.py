"""Kaggle's metrics by name: each with its direction, the tasks it fits and the post-processing
that suits it. A metric scores (n, k) targets (the task's encoding: binary (n, 1), one-hot, 0/1
tags) against (n, k) probabilities in class order, decided with `post` where it needs decisions.

    from kaggletools.score import catalog
    m = catalog.get("qwk")                 # or "kappa", "map@5", "log_loss", ...
    post = m.fit_post(y_valid, p_valid)    # cut-points, thresholds, a clip, or {}
    m.score(y_test, p_test, post)

Names follow scikit-learn's scorers where one exists (`log_loss`, `accuracy`, `f1_micro`,
`f1_macro`, `roc_auc`), Kaggle's words otherwise (`qwk`, `map@5`, `f2`). `names()` lists them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from kaggletools.errors import OptionError
from kaggletools.score import metrics

BINARY, MULTICLASS, MULTILABEL = "binary", "multiclass", "multilabel"


@dataclass(frozen=True)
class Metric:
    """One metric: `score(y_true, probs, post=None) -> float`, `fit_post(y_true, probs) -> dict`."""

    name: str
    aliases: tuple[str, ...]
    greater_is_better: bool
    tasks: tuple[str, ...]          # task names it fits (kaggletools.competition.tasks: Task.name)
    post_processing: str            # what fit_post tunes, in words ("" for nothing)
    description: str
    scorer: Callable = field(repr=False)
    fitter: Callable | None = field(default=None, repr=False)

    def score(self, y_true, probs, post: dict | None = None) -> float:
        y, p = _arrays(y_true, probs)
        return float(self.scorer(y, p, post or {}))

    def fit_post(self, y_true, probs) -> dict:
        """The post-processing tuned on these (validation) predictions; {} when there is none."""
        if self.fitter is None:
            return {}
        return self.fitter(*_arrays(y_true, probs))

    def labels(self, probs, post: dict | None = None) -> np.ndarray:
        """Single-label decisions as this metric makes them: class ids (qwk: the expected class at
        the cut-points; otherwise the argmax; binary (n, 1): P above the threshold, 0.5 by default)."""
        p = _arrays(probs, probs)[1]
        post = post or {}
        return _ordinal(p, post["cuts"]) if post.get("cuts") is not None else _decide(p, post, False)

    def better(self, a: float, b: float) -> bool:
        """Whether score `a` beats score `b`."""
        return a > b if self.greater_is_better else a < b


def _arrays(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y_true, np.float64), np.asarray(probs, np.float64)
    y, p = (y[:, None] if y.ndim == 1 else y), (p[:, None] if p.ndim == 1 else p)
    if y.shape != p.shape:
        raise ValueError(f"targets {y.shape} and probabilities {p.shape} must have the same (n, k) shape")
    return y, p


# -- decisions --------------------------------------------------------------------------------------
def _labels(y: np.ndarray) -> np.ndarray:
    """Class ids of (n, k) one-hot targets, or 0/1 of binary (n, 1) ones."""
    return (y[:, 0] > 0.5).astype(int) if y.shape[1] == 1 else y.argmax(1)


def _decide(p: np.ndarray, post: dict, multilabel: bool) -> np.ndarray:
    """Class ids (single label: argmax, or P > threshold for binary) or (n, k) 0/1 (multi-label)."""
    t = np.asarray(post.get("thresholds", 0.5), np.float64)
    if multilabel:
        return (p > t).astype(int)
    return (p[:, 0] > t.ravel()[0]).astype(int) if p.shape[1] == 1 else p.argmax(1)


def _is_multilabel(y: np.ndarray) -> bool:
    return y.shape[1] > 1 and not np.allclose(y.sum(1), 1)


def _thresholds(score: Callable, beta: float | None = None) -> Callable:
    """fit_post for a decision metric: for binary and multi-label targets, per-class thresholds
    tuned by coordinate ascent (kaggletools.score.metrics.best_class_thresholds, its fast F-beta
    search when `beta` is given); single-label multi-class takes the argmax and needs none."""
    def fit(y, p):
        if y.shape[1] > 1 and not _is_multilabel(y):
            return {}
        if beta is not None:
            t, _ = metrics.best_class_thresholds(y, p, beta=beta)
        else:
            t, _ = metrics.best_class_thresholds(y, p, score=lambda yy, d: score(yy, np.asarray(d, np.float64), {}))
        return {"thresholds": [round(float(v), 4) for v in t]}
    return fit


# -- the metrics --------------------------------------------------------------------------------------
def _log_loss(y, p, post):
    if y.shape[1] == 1:
        return metrics.log_loss(y, p, post.get("clip", 0.0))
    return metrics.multiclass_log_loss(y, p, post.get("floor", 0.0))


def _fit_log_loss(y, p):
    return {"clip": metrics.best_clip(y, p)} if y.shape[1] == 1 else {"floor": metrics.best_floor(y, p)}


def _accuracy(y, p, post):
    if _is_multilabel(y):  # exact match of every tag (scikit-learn's subset accuracy)
        return float(((y > 0.5) == _decide(p, post, True).astype(bool)).all(1).mean())
    return float(np.mean(_labels(y) == _decide(p, post, False)))


def _f1(average: str):
    def score(y, p, post):
        from sklearn.metrics import f1_score

        if _is_multilabel(y):
            return float(f1_score(y > 0.5, _decide(p, post, True), average=average, zero_division=0))
        labels = list(range(max(y.shape[1], 2)))
        return float(f1_score(_labels(y), _decide(p, post, False), labels=labels, average=average, zero_division=0))
    return score


def _f1_binary(y, p, post):
    from sklearn.metrics import f1_score

    return float(f1_score(_labels(y), _decide(p, post, False), zero_division=0))


def _fbeta_samples(beta: float):
    def score(y, p, post):
        return float(metrics.fbeta_per_sample(y, _decide(p, post, True), beta).mean())
    return score


def _roc_auc(y, p, post):
    return metrics.roc_auc(y, p)


def _mean_auc(y, p, post):
    """Mean over columns of each column's ROC AUC (columns holding one class only are left out)."""
    scores = [metrics.roc_auc(y[:, c], p[:, c]) for c in range(y.shape[1]) if len(np.unique(y[:, c] > 0.5)) == 2]
    return float(np.mean(scores)) if scores else 0.5


def _qwk(y, p, post):
    """Quadratic weighted kappa of ordinal classes (scikit-learn's cohen_kappa_score): the argmax,
    or with `cuts` the expected class (sum of k * P(k)) cut at the k - 1 cut-points."""
    from sklearn.metrics import cohen_kappa_score

    truth, pred = _labels(y), _ordinal(p, post.get("cuts"))
    if len(np.unique(np.concatenate([truth, pred]))) < 2:
        return float(np.all(truth == pred))  # kappa is undefined for one class: 1 when all agree
    return float(cohen_kappa_score(truth, pred, weights="quadratic", labels=list(range(y.shape[1]))))


def _ordinal(p: np.ndarray, cuts) -> np.ndarray:
    if cuts is None:
        return p.argmax(1)
    expected = p @ np.arange(p.shape[1])
    return np.searchsorted(np.asarray(cuts, np.float64), expected, side="right")


def _fit_qwk(y, p, passes: int = 3):
    """Cut-points by coordinate search from plain rounding (0.5, 1.5, ...), kept only when they
    beat the argmax on these items."""
    k = p.shape[1]
    cuts = np.arange(k - 1) + 0.5
    best = _qwk(y, p, {"cuts": cuts})
    for _ in range(passes):
        changed = False
        for i in range(k - 1):
            low = cuts[i - 1] if i else -0.5
            high = cuts[i + 1] if i + 1 < k - 1 else k - 0.5
            for value in np.linspace(low, high, 23)[1:-1]:
                trial = cuts.copy()
                trial[i] = value
                s = _qwk(y, p, {"cuts": trial})
                if s > best + 1e-12:
                    cuts, best, changed = trial, s, True
        if not changed:
            break
    return {"cuts": [round(float(c), 4) for c in cuts]} if best > _qwk(y, p, {}) else {}


def _map_at(k: int):
    def score(y, p, post):
        """Mean average precision at k (the ml_metrics/Kaggle formula): the k most probable classes
        of each item, in order; precision at each hit, summed, over min(true classes, k)."""
        top = np.argsort(-p, axis=1, kind="stable")[:, :k]
        truth = y > 0.5
        hits = np.take_along_axis(truth, top, 1)
        precision = np.cumsum(hits, 1) / np.arange(1, top.shape[1] + 1)
        n_true = np.minimum(truth.sum(1), k)
        return float(np.mean(np.where(n_true > 0, (precision * hits).sum(1) / np.maximum(n_true, 1), 0.0)))
    return score


ANY = (BINARY, MULTICLASS, MULTILABEL)
_METRICS = [
    Metric("log_loss", ("logloss", "binary_log_loss", "multiclass_log_loss", "mlogloss"), False, (BINARY, MULTICLASS),
           "clip (binary) / floor + row normalisation (multi-class)",
           "log loss as Kaggle scores it: rows rescaled to sum 1, clipped to [1e-15, 1 - 1e-15]",
           _log_loss, _fit_log_loss),
    Metric("accuracy", ("categorization_accuracy", "categorization-accuracy", "acc"), True, ANY, "",
           "share of items decided right (argmax; binary and tags at 0.5, every tag right)", _accuracy),
    Metric("f1", ("f1_binary",), True, (BINARY,), "threshold",
           "F1 of the positive class", _f1_binary, _thresholds(_f1_binary)),
    Metric("f1_micro", ("micro_f1",), True, (MULTICLASS, MULTILABEL), "thresholds (multi-label)",
           "F1 over all decisions pooled (single label: equals accuracy)", _f1("micro"), _thresholds(_f1("micro"))),
    Metric("f1_macro", ("macro_f1",), True, (MULTICLASS, MULTILABEL), "thresholds (multi-label)",
           "F1 of each class, averaged over classes", _f1("macro"), _thresholds(_f1("macro"))),
    Metric("f2", ("f2_samples", "mean_f2"), True, (MULTILABEL,), "thresholds",
           "F2 of each item's tags, averaged over items (fbeta_score average='samples')",
           _fbeta_samples(2.0), _thresholds(_fbeta_samples(2.0), 2.0)),
    Metric("f1_samples", ("mean_f1",), True, (MULTILABEL,), "thresholds",
           "F1 of each item's tags, averaged over items", _fbeta_samples(1.0), _thresholds(_fbeta_samples(1.0), 1.0)),
    Metric("roc_auc", ("auc",), True, (BINARY,), "", "area under the ROC curve of P(positive)", _roc_auc),
    Metric("mean_auc", ("mean_column_auc", "mean_columnwise_auc", "roc_auc_macro"), True, (MULTILABEL, MULTICLASS),
           "", "ROC AUC of each column, averaged over columns", _mean_auc),
    Metric("qwk", ("kappa", "quadratic_weighted_kappa", "cohen_kappa"), True, (MULTICLASS,),
           "cut-points on the expected class", "quadratic weighted kappa of ordinal classes (in class order)",
           _qwk, _fit_qwk),
    Metric("map@5", ("map5", "mapk@5"), True, (MULTICLASS, MULTILABEL), "",
           "mean average precision of the 5 most probable classes", _map_at(5)),
]
_BY_NAME = {key.lower(): m for m in _METRICS for key in (m.name, *m.aliases)}


def names() -> list[str]:
    """The catalog's metric names (aliases not included)."""
    return [m.name for m in _METRICS]


def get(name: str) -> Metric:
    """The metric called `name` or one of its aliases (case-insensitive); `map@K` and `fB_samples`
    for any K and B; anything else is refused with the closest names."""
    key = str(name).strip().lower()
    if key in _BY_NAME:
        return _BY_NAME[key]
    at = re.fullmatch(r"(?:map|mapk)@?(\d+)", key)
    if at and int(at.group(1)) >= 1:
        k = int(at.group(1))
        return Metric(f"map@{k}", (f"map{k}",), True, (MULTICLASS, MULTILABEL), "",
                      f"mean average precision of the {k} most probable classes", _map_at(k))
    beta = re.fullmatch(r"f(\d+(?:\.\d+)?)_samples", key)
    if beta and float(beta.group(1)) > 0:
        b = float(beta.group(1))
        return Metric(key, (), True, (MULTILABEL,), "thresholds", f"F{b:g} of each item's tags, averaged over items",
                      _fbeta_samples(b), _thresholds(_fbeta_samples(b), b))
    import difflib

    close = difflib.get_close_matches(key, list(_BY_NAME), 3)
    raise OptionError(f"unknown metric {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                      + f" Known: {', '.join(names())} (and map@K, fB_samples)")
