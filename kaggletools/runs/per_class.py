"""Precision and recall per class (binary: both classes; multi-class: each class; multi-label:
each tag) of the validation decisions as submitted."""
from __future__ import annotations

import numpy as np

import kaggletools.competition.tasks as tasks


def rows(comp, y: np.ndarray, decided: np.ndarray) -> list[dict]:
    """One row per class: class, precision, recall, support (items that are it), predicted
    (items called it). `decided`: the (n, k) 0/1 decisions. Precision is None where nothing was
    called that class, recall None where no item is it."""
    y, decided = np.asarray(y) > 0.5, np.asarray(decided) > 0.5
    names = comp.class_names()
    if isinstance(comp.task, tasks.Binary):
        y, decided = np.c_[~y[:, 0], y[:, 0]], np.c_[~decided[:, 0], decided[:, 0]]
    out = []
    for i, name in enumerate(names):
        hit = int((y[:, i] & decided[:, i]).sum())
        support, predicted = int(y[:, i].sum()), int(decided[:, i].sum())
        out.append({"class": str(name), "precision": hit / predicted if predicted else None,
                    "recall": hit / support if support else None, "support": support, "predicted": predicted})
    return out
