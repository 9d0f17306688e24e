"""Tasks own what differs between binary, multi-class and multi-label competitions, so the
shared layer never asks which one it runs (in the spirit of fastai's target blocks, which carry
their loss, and scikit-learn's mixins, which carry `score`):

| | Binary | MultiClass | MultiLabel |
|---|---|---|---|
| item table | column `classes[0]`: 0/1 | column `label`: a class name | one 0/1 column per class |
| targets (n, k) | (n, 1) 0/1 | (n, k) one-hot | (n, k) 0/1 |
| head | 1 output, sigmoid | k outputs, softmax | k outputs, sigmoid each |
| loss | binary cross-entropy | cross-entropy | binary cross-entropy per class |
| strata | the label | the class | the tag matrix (iterative) |
| grouped strata | the label | the class | each item's rarest tag |
| error rate | p > 0.5 wrong | argmax wrong | wrong tag decisions at 0.5 |
| decode | 0/1 | class index | 0/1 per class (thresholds) |

Every loss takes `smoothing` (label smoothing; 0 = none). A competition sets `task = MultiClass()`
(or a task's name) and may subclass a task. torch is imported inside the methods that need it, so
listing competitions stays cheap.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from kaggletools.data import split as stratify
from kaggletools.errors import CompetitionError


class Task:
    """The interface; see the table above."""

    name = "task"

    def n_outputs(self, classes) -> int:
        return len(classes)

    def check_classes(self, classes) -> None:
        """Raise when a competition's declared classes cannot work with this task."""
        if not classes or any(not isinstance(c, str) or not c.strip() for c in classes):
            raise CompetitionError(f"classes must be non-empty names, got {list(classes)!r}")
        if len(set(classes)) != len(classes):
            raise CompetitionError(f"classes must be unique, got duplicates in {list(classes)!r}")

    def targets(self, items: pd.DataFrame, classes, where: str = "") -> np.ndarray:
        """(n, k) float32 targets from the item table, checked."""
        raise NotImplementedError

    def strata(self, y: np.ndarray) -> np.ndarray:
        """What splits, folds and samples stratify on."""
        raise NotImplementedError

    def split(self, y, n_valid: int, seed: int, classes, groups=None) -> tuple[np.ndarray, list[str]]:
        """Held-out indices and notes on classes that could not be kept everywhere; with `groups`
        (one value per item) every group is held out whole or not at all."""
        if groups is not None:
            return stratify.group_split(self.group_strata(y), groups, n_valid, seed, self._group_names(classes))
        return stratify.single_split(self.strata(y), n_valid, seed, self._strata_names(classes))

    def folds(self, y, k: int, seed: int, classes, groups=None) -> tuple[np.ndarray, list[str]]:
        if groups is not None:
            return stratify.group_folds(self.group_strata(y), groups, k, seed, self._group_names(classes))
        return stratify.single_folds(self.strata(y), k, seed, self._strata_names(classes))

    def group_strata(self, y) -> np.ndarray:
        """One stratum id per item for grouped splits (1-D, as StratifiedGroupKFold takes)."""
        return self.strata(y)

    def _group_names(self, classes):
        return self._strata_names(classes)

    def choose(self, y, n: int, seed: int, classes) -> tuple[np.ndarray, list[str]]:
        return stratify.single_choice(self.strata(y), n, seed, self._strata_names(classes))

    def _strata_names(self, classes):
        return list(classes)

    def names(self, classes, negative: str = "") -> list[str]:
        """One name per class people see (a confusion matrix's rows, `check`'s balance)."""
        return [str(c) for c in classes]

    def class_counts(self, y: np.ndarray) -> np.ndarray:
        """Items per class of `names`."""
        return self.counts(y)

    def counts(self, y: np.ndarray) -> np.ndarray:
        """Items per class (per output column)."""
        return (np.asarray(y) > 0.5).sum(0)

    def prior(self, y: np.ndarray) -> np.ndarray:
        """The constant prediction that knows only the class frequencies (the baseline to beat)."""
        return np.asarray(y, np.float64).mean(0)

    # -- the head --------------------------------------------------------------------------------
    def activation(self, logits):
        return logits.sigmoid()

    def loss(self, logits, y, smoothing: float = 0.0):
        import torch.nn.functional as F

        if smoothing:
            y = y * (1 - smoothing) + 0.5 * smoothing
        return F.binary_cross_entropy_with_logits(logits.float(), y)

    def valid_loss(self, y: np.ndarray, probs: np.ndarray) -> float:
        p = np.clip(np.asarray(probs, np.float64), 1e-7, 1 - 1e-7)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def error_rate(self, y: np.ndarray, probs: np.ndarray) -> float:
        return float(np.mean((np.asarray(probs) > 0.5) != (np.asarray(y) > 0.5)))

    def decode(self, probs: np.ndarray, thresholds=0.5) -> np.ndarray:
        return np.asarray(probs) > np.asarray(thresholds)

    def check_probs(self, probs: np.ndarray, where: str = "predictions") -> None:
        """Raise for probabilities that cannot be submitted: NaN, infinite, outside [0, 1]."""
        p = np.asarray(probs, np.float64)
        bad = ~np.isfinite(p).all(1) | (p < 0).any(1) | (p > 1).any(1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise CompetitionError(f"{where}: {int(bad.sum())} row(s) of probabilities are not numbers in [0, 1], "
                                   f"e.g. row {row}: {p[row][:6].tolist()}; the model diverged: lower --lr")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _column_values(items: pd.DataFrame, column: str, where: str) -> pd.Series:
    if column not in items.columns:
        raise CompetitionError(f"{where}: the item table has no {column!r} column (columns: {list(items.columns)})")
    return items[column]


def _bad(items: pd.DataFrame, mask, where: str, what: str, fix: str) -> CompetitionError:
    rows = items.loc[np.asarray(mask)]
    shown = ", ".join(f"{i!r}" for i in rows["id"].head(3)) if "id" in rows else str(list(rows.index[:3]))
    return CompetitionError(f"{where}: {int(np.sum(mask))} item(s) {what}, e.g. {shown}; {fix}")


class Binary(Task):
    """One class: the probability of the positive one (`classes[0]`), read from a 0/1 column named
    `classes[0]` (or `label`, as `kaggletools.competition.layouts.labelled_by_csv` names it)."""

    name = "binary"

    def check_classes(self, classes) -> None:
        super().check_classes(classes)
        if len(classes) != 1:
            raise CompetitionError(f"a binary task has one class, the positive one; got {list(classes)!r}: "
                                   "use MultiClass() for several exclusive classes")

    def targets(self, items, classes, where="") -> np.ndarray:
        column = classes[0] if classes[0] in items.columns or "label" not in items.columns else "label"
        values = pd.to_numeric(_column_values(items, column, where), errors="coerce")
        bad = ~values.isin([0, 1])
        if bad.any():
            raise _bad(items, bad, where, f"have a {classes[0]!r} label that is not 0 or 1",
                       f"label each item 0 or 1 (1 = {classes[0]})")
        return values.to_numpy(np.float32)[:, None]

    def strata(self, y):
        return (np.asarray(y)[:, 0] > 0.5).astype(int)

    def _strata_names(self, classes):
        return [f"not {classes[0]}", classes[0]]

    def names(self, classes, negative: str = "") -> list[str]:
        return [negative or f"not {classes[0]}", str(classes[0])]

    def class_counts(self, y: np.ndarray) -> np.ndarray:
        positive = int(self.counts(y)[0])
        return np.array([len(y) - positive, positive])


class MultiClass(Task):
    """Exactly one of k classes per item: softmax and cross-entropy. The item table holds the
    class name in `label` (or one 0/1 column per class with exactly one 1 per row)."""

    name = "multiclass"
    label_column = "label"

    def check_classes(self, classes) -> None:
        super().check_classes(classes)
        if len(classes) < 2:
            raise CompetitionError(f"a multi-class task needs at least two classes, got {list(classes)!r}")

    def targets(self, items, classes, where="") -> np.ndarray:
        classes = list(classes)
        if self.label_column not in items.columns and set(classes) <= set(items.columns):
            y = items[classes].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
            bad = ~np.isin(y, (0, 1)).all(1) | (np.nan_to_num(y).sum(1) != 1)
            if bad.any():
                raise _bad(items, bad, where, "do not have exactly one class",
                           "a multi-class item has one label: give each row a single 1")
            return y.astype(np.float32)
        labels = _column_values(items, self.label_column, where)
        empty = labels.isna() | (labels.astype(str).str.strip() == "")
        if empty.any():
            raise _bad(items, empty, where, "have an empty label", f"give every item one of {len(classes)} classes")
        index = {c: i for i, c in enumerate(classes)}
        codes = labels.astype(str).map(index)
        unknown = codes.isna()
        if unknown.any():
            names = sorted(set(labels[unknown].astype(str)))[:5]
            raise _bad(items, unknown, where, f"have a label outside the classes ({', '.join(map(repr, names))})",
                       f"fix the spelling; known classes: {', '.join(classes[:12])}" + (" ..." if len(classes) > 12
                                                                                        else ""))
        y = np.zeros((len(items), len(classes)), np.float32)
        y[np.arange(len(items)), codes.to_numpy(int)] = 1
        return y

    def strata(self, y):
        return np.asarray(y).argmax(1)

    def activation(self, logits):
        return logits.float().softmax(1)

    def loss(self, logits, y, smoothing: float = 0.0):
        import torch.nn.functional as F

        return F.cross_entropy(logits.float(), y.argmax(1), label_smoothing=smoothing)

    def valid_loss(self, y, probs) -> float:
        p = np.clip(np.asarray(probs, np.float64), 1e-15, 1)
        return float(-np.mean(np.log(p[np.arange(len(p)), np.asarray(y).argmax(1)])))

    def error_rate(self, y, probs) -> float:
        return float(np.mean(np.asarray(probs).argmax(1) != np.asarray(y).argmax(1)))

    def decode(self, probs, thresholds=None) -> np.ndarray:
        return np.asarray(probs).argmax(1)

    def check_probs(self, probs, where="predictions") -> None:
        super().check_probs(probs, where)
        p = np.asarray(probs, np.float64)
        zero = p.sum(1) <= 0
        if zero.any():
            raise CompetitionError(f"{where}: {int(zero.sum())} row(s) of probabilities are all zero, e.g. row "
                                   f"{int(np.flatnonzero(zero)[0])}; every row needs a positive probability")


class MultiLabel(Task):
    """Any number of k tags per item: one sigmoid and binary cross-entropy per tag; splits and
    folds by iterative stratification on the tag matrix."""

    name = "multilabel"

    def targets(self, items, classes, where="") -> np.ndarray:
        missing = [c for c in classes if c not in items.columns]
        if missing:
            raise CompetitionError(f"{where}: the item table lacks the tag column(s) {missing}")
        y = items[list(classes)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        bad = ~np.isin(y, (0, 1)).all(1)
        if bad.any():
            raise _bad(items, bad, where, "have tag values other than 0 or 1", "mark each tag 0 or 1")
        return y.astype(np.float32)

    def strata(self, y):
        return np.asarray(y) > 0.5

    def split(self, y, n_valid, seed, classes, groups=None):
        if groups is not None:
            return super().split(y, n_valid, seed, classes, groups)
        return stratify.multi_split(self.strata(y), n_valid, seed, list(classes))

    def folds(self, y, k, seed, classes, groups=None):
        if groups is not None:
            return super().folds(y, k, seed, classes, groups)
        return stratify.multi_folds(self.strata(y), k, seed, list(classes))

    def group_strata(self, y):
        """Each item's rarest tag: a 1-D proxy of the tag matrix for grouped splits."""
        return stratify.rarest_tag(self.strata(y))

    def _group_names(self, classes):
        return [*classes, "no tag"]

    def choose(self, y, n, seed, classes):
        return stratify.multi_choice(self.strata(y), n, seed, list(classes))


TASKS = {cls.name: cls for cls in (Binary, MultiClass, MultiLabel)}


def resolve(task) -> Task:
    """A Task from a Task, a Task subclass or a task's name; anything else names the valid ones."""
    if isinstance(task, Task):
        return task
    if isinstance(task, type) and issubclass(task, Task):
        return task()
    if isinstance(task, str) and task in TASKS:
        return TASKS[task]()
    raise CompetitionError(f"unknown task {task!r}; use one of kaggletools.competition.tasks.Binary(), MultiClass(), "
                           f"MultiLabel() (or their names: {', '.join(TASKS)})")
