"""Metrics on (n, k) targets and probabilities, and post-processing tuned to them."""
from __future__ import annotations

import numpy as np

# Down to 0.001: on 1,602 real Dogs vs. Cats out-of-fold predictions (mobilenet_v2, 3-fold cv), a
# bound tuned on 320 of them and scored on the other 1,282 gave log loss 0.0548 with this grid and
# 0.0575 with the former floor of 0.005 (200 draws; no clip at all: 0.0544). A strong model's many
# confident right answers pay for a wide clip more than its few confident mistakes do.
CLIP_GRID = (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05)


def _column(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[:, 0] if a.ndim == 2 else a


def log_loss(y_true: np.ndarray, probs: np.ndarray, clip: float = 0.0) -> float:
    """Binary log loss of P(positive), probabilities clipped to [clip, 1 - clip] first."""
    from sklearn.metrics import log_loss as sk_log_loss

    p = np.clip(_column(probs), max(clip, 1e-15), 1 - max(clip, 1e-15))
    return float(sk_log_loss(_column(y_true), p, labels=[0, 1]))


def accuracy(y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean((_column(y_true) > 0.5) == (_column(probs) > threshold)))


def error_rate(y_true: np.ndarray, probs: np.ndarray) -> float:
    return 1.0 - accuracy(y_true, probs)


def best_clip(y_true: np.ndarray, probs: np.ndarray, grid=CLIP_GRID) -> float:
    """The clipping bound from `grid` with the lowest log loss on validation predictions."""
    return float(min(grid, key=lambda c: log_loss(y_true, probs, c)))


# -- multi-class ------------------------------------------------------------------------------
MULTICLASS_CLIP_GRID = (1e-15, 1e-4, 1e-3, 3e-3, 1e-2)


def multiclass_log_loss(y_true: np.ndarray, probs: np.ndarray, floor: float = 0.0) -> float:
    """Multi-class log loss as Kaggle scores it: each row rescaled to sum to 1, then clipped to
    [1e-15, 1 - 1e-15]. `floor` first lifts every probability to at least `floor` (the tuned
    post-processing, like the binary clip); y_true is one-hot (n, k)."""
    p = np.asarray(probs, np.float64)
    if floor:
        p = np.maximum(p, floor)
    p = p / p.sum(1, keepdims=True)
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(np.log(p[np.arange(len(p)), np.asarray(y_true).argmax(1)])))


def best_floor(y_true: np.ndarray, probs: np.ndarray, grid=MULTICLASS_CLIP_GRID) -> float:
    """The probability floor from `grid` with the lowest multi-class log loss."""
    return float(min(grid, key=lambda f: multiclass_log_loss(y_true, probs, f)))


def micro_f1(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Micro-averaged F1 over classes of single-label predictions (argmax): equals accuracy."""
    from sklearn.metrics import f1_score

    return float(f1_score(np.asarray(y_true).argmax(1), np.asarray(probs).argmax(1), average="micro"))


def roc_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Area under the ROC curve of P(positive) (first column), as Kaggle scores binary AUC
    competitions; 0.5 when the answers hold one class only (AUC is undefined there)."""
    from sklearn.metrics import roc_auc_score

    y, p = _column(y_true), _column(probs)
    if len(np.unique(y > 0.5)) < 2:
        return 0.5
    return float(roc_auc_score(y > 0.5, p))


# -- multi-label: F-beta per sample and threshold search ------------------------------------
THRESHOLD_GRID = tuple(float(t) for t in np.round(np.arange(0.02, 0.96, 0.01), 2))


def fbeta_per_sample(y_true: np.ndarray, y_pred: np.ndarray, beta: float = 2.0,
                     zero_division: float = 1.0) -> np.ndarray:
    """F-beta of each row of (n, k) 0/1 targets and 0/1 predictions.

    A row with no true and no predicted tag scores `zero_division` (1: nothing to find, nothing
    claimed: a perfect answer); any other row without a true positive scores 0. This equals
    sklearn's `fbeta_score(..., average='samples', zero_division=zero_division)` row by row.
    """
    y = np.asarray(y_true) > 0.5
    p = np.asarray(y_pred) > 0.5
    if y.shape != p.shape or y.ndim != 2:
        raise ValueError(f"targets {y.shape} and predictions {p.shape} must be (n, k) arrays of the same shape")
    tp = (y & p).sum(1).astype(np.float64)
    fp = (~y & p).sum(1)
    fn = (y & ~p).sum(1)
    b2 = beta * beta
    denom = (1 + b2) * tp + b2 * fn + fp
    return np.where(denom > 0, (1 + b2) * tp / np.maximum(denom, 1), float(zero_division))


def f2_samples(y_true: np.ndarray, y_pred_binary: np.ndarray, zero_division: float = 1.0) -> float:
    """Planet's metric: F2 per image, averaged over images (sklearn's average='samples')."""
    return float(fbeta_per_sample(y_true, y_pred_binary, 2.0, zero_division).mean())


def binarize(probs: np.ndarray, thresholds) -> np.ndarray:
    """0/1 decisions: a probability above its class's threshold (a scalar or one per class)."""
    return np.asarray(probs) > np.asarray(thresholds, dtype=np.float64)


def _middle_of_best(scores: np.ndarray, grid: np.ndarray) -> tuple[float, float]:
    """The grid value in the middle of the values reaching the best score (robust to the broad
    plateaus that small validation sets give), and that score."""
    best = scores.max()
    ties = np.flatnonzero(scores >= best - 1e-12)
    return float(grid[ties[len(ties) // 2]]), float(best)


def best_threshold(y_true: np.ndarray, probs: np.ndarray, grid=THRESHOLD_GRID, *, beta: float = 2.0,
                   decide=None, score=None) -> tuple[float, float]:
    """One threshold for every class maximising mean F-beta over samples (or `score(y_true,
    decisions)`, higher is better): (threshold, score). `decide(probs, thresholds) -> 0/1 matrix`
    replaces plain thresholding (e.g. tag rules); its thresholds are (k,) or one row per item (n, k)."""
    k = np.asarray(probs).shape[1]
    grid = np.asarray(grid, dtype=np.float64)
    scores = np.array([decided_score(y_true, probs, np.full(k, t), beta, decide, score) for t in grid])
    return _middle_of_best(scores, grid)


def best_class_thresholds(y_true: np.ndarray, probs: np.ndarray, grid=THRESHOLD_GRID, *, beta: float = 2.0,
                          start=None, decide=None, free=None, max_passes: int = 3, score=None,
                          search=None) -> tuple[np.ndarray, float]:
    """Per-class thresholds by coordinate ascent: from `start` (default: the best global
    threshold), each class's threshold in turn moves to the grid value that maximises mean
    F-beta with the others fixed; repeat until a pass changes nothing. (thresholds, score);
    the score never falls below the starting one.

    With `decide`, `free` (k booleans) marks the classes whose threshold changes only their own
    column, which the rules may only switch off (e.g. ground tags under 'cloudy stands alone'):
    those are searched in one vectorised step instead of one `decide` call per grid value.
    `search` (k booleans): only these classes move; the others keep `start`.
    """
    y, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    grid = np.asarray(grid, dtype=np.float64)
    free = np.ones(k, bool) if decide is None else np.zeros(k, bool) if free is None else np.asarray(free, bool)
    if start is None:
        start = best_threshold(y, probs, grid, beta=beta, decide=decide, score=score)[0]
    t = np.broadcast_to(np.asarray(start, dtype=np.float64), (k,)).copy()
    current = decided_score(y, probs, t, beta, decide, score)
    for _ in range(max_passes):
        changed = False
        for c in np.flatnonzero(np.ones(k, bool) if search is None else np.asarray(search, bool)):
            scores = _class_scores(y, probs, t, c, grid, beta, decide, free[c], score)
            value, best = _middle_of_best(scores, grid)
            if best > current + 1e-12:
                t[c], current, changed = value, best, True
        if not changed:
            break
    return t, float(current)


def decided_score(y, probs, t, beta, decide, score=None) -> float:
    """Mean F-beta over items (or `score(y, decisions)`) of the decisions `decide(probs, t)`
    (plain thresholding by default)."""
    decisions = (decide or binarize)(probs, t)
    return float(score(y, decisions)) if score is not None else float(fbeta_per_sample(y, decisions, beta).mean())


def _class_scores(y, probs, t, c, grid, beta, decide, free: bool, score=None) -> np.ndarray:
    """Mean F-beta (or `score`) for every grid value of class c's threshold, the others fixed."""
    if not free or score is not None:  # coupled by rules, or another metric: decide for each grid value
        scores = []
        for value in grid:
            trial = t.copy()
            trial[c] = value
            scores.append(decided_score(y, probs, trial, beta, decide, score))
        return np.array(scores)
    # only column c changes: count the other columns once and vary c over the grid
    yb = y > 0.5
    if decide is None:
        pb, allowed = binarize(probs, t), np.ones(len(probs), bool)
    else:
        pb = np.asarray(decide(probs, t), bool)
        sure = probs.copy()
        sure[:, c] = 1.0
        allowed = np.asarray(decide(sure, t), bool)[:, c]  # rows where the rules let class c on
    rest = np.ones(probs.shape[1], bool)
    rest[c] = False
    tp0 = (yb[:, rest] & pb[:, rest]).sum(1)[:, None]
    fp0 = (~yb[:, rest] & pb[:, rest]).sum(1)[:, None]
    fn0 = (yb[:, rest] & ~pb[:, rest]).sum(1)[:, None]
    on = (probs[:, c][:, None] > grid[None, :]) & allowed[:, None]   # (n, G)
    yc = yb[:, c][:, None]
    tp, fp, fn = tp0 + (yc & on), fp0 + (~yc & on), fn0 + (yc & ~on)
    b2 = beta * beta
    denom = (1 + b2) * tp + b2 * fn + fp
    f = np.where(denom > 0, (1 + b2) * tp / np.maximum(denom, 1), 1.0)
    return f.mean(0)
