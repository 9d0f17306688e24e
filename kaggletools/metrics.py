"""Metrics on (n, k) targets and probabilities, and post-processing tuned to them."""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

CLIP_GRID = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05)


def _column(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[:, 0] if a.ndim == 2 else a


def log_loss(y_true: np.ndarray, probs: np.ndarray, clip: float = 0.0) -> float:
    """Binary log loss of P(positive), probabilities clipped to [clip, 1 - clip] first."""
    p = np.clip(_column(probs), max(clip, 1e-15), 1 - max(clip, 1e-15))
    return float(skm.log_loss(_column(y_true), p, labels=[0, 1]))


def accuracy(y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    return float(skm.accuracy_score(_column(y_true) > 0.5, _column(probs) > threshold))


def error_rate(y_true: np.ndarray, probs: np.ndarray) -> float:
    return 1.0 - accuracy(y_true, probs)


def best_clip(y_true: np.ndarray, probs: np.ndarray, grid=CLIP_GRID) -> float:
    """The clipping bound from `grid` with the lowest log loss on validation predictions."""
    return float(min(grid, key=lambda c: log_loss(y_true, probs, c)))
