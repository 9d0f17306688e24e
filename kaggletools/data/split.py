"""Splits, folds and samples that keep every class: the algorithms behind the tasks' `split`,
`folds` and `choose`. Single-label items are stratified on one class id each; multi-label items
on their 0/1 tag matrix (iterative stratification, iterstrat). Each function returns its result
and a list of notes saying which classes could not be kept where, and why.

Why not sklearn's StratifiedShuffleSplit for a single-label split or sample: it allocates each
class round(n * share) items and can give a class with few items none at all (a 25% validation
split of 12 classes with 4-9 items each left classes out), and it refuses classes of one item.
The allocation below gives every class of two or more items at least one held-out item while
keeping one for training, whenever the split is large enough. Folds use sklearn's
StratifiedKFold, which already puts every class of at least k items in every fold.
"""
from __future__ import annotations

import warnings

import numpy as np


def _allocate(counts: np.ndarray, total: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Integers per class summing to `total`, proportional to `counts`, within [low, high]
    (largest remainders first)."""
    share = total * counts / max(counts.sum(), 1)
    alloc = np.clip(np.floor(share), low, high).astype(int)
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    while alloc.sum() < total:
        room = [c for c in order if alloc[c] < high[c]]
        if not room:
            break
        for c in room[: total - alloc.sum()]:
            alloc[c] += 1
    while alloc.sum() > total:
        spare = [c for c in np.argsort(-alloc, kind="stable") if alloc[c] > low[c]]
        if not spare:
            break
        alloc[spare[0]] -= 1
    return alloc


def _pick(labels: np.ndarray, alloc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    chosen = [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in enumerate(alloc) if k]
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], int)


# -- single label: one class id per item ---------------------------------------------------------
def single_split(labels: np.ndarray, n_valid: int, seed: int, names) -> tuple[np.ndarray, list[str]]:
    """Indices of `n_valid` held-out items: every class of two or more items gets at least one
    held-out item and keeps one for training, when n_valid allows."""
    counts = np.bincount(labels, minlength=len(names))
    eligible = counts >= 2
    notes = [f"class {names[c]!r} has 1 item: it stays in training" for c in np.flatnonzero(counts == 1)]
    low = (eligible & (n_valid >= eligible.sum())).astype(int)
    high = np.where(eligible, counts - 1, 0)
    if n_valid > high.sum():
        raise ValueError(f"cannot hold out {n_valid} of {len(labels)} items and keep every class in training")
    alloc = _allocate(counts, n_valid, low, high)
    missing = [names[c] for c in np.flatnonzero(eligible & (alloc == 0))]
    if missing:
        notes.append(f"a validation split of {n_valid} items cannot hold all {eligible.sum()} classes; "
                     f"absent: {', '.join(map(repr, missing[:10]))}" + (" ..." if len(missing) > 10 else ""))
    return _pick(labels, alloc, np.random.default_rng(seed)), notes


def single_folds(labels: np.ndarray, k: int, seed: int, names) -> tuple[np.ndarray, list[str]]:
    """Fold ids 0..k-1: every class of at least k items is in every fold (sklearn's StratifiedKFold)."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels, minlength=len(names))
    if k > len(labels):
        raise ValueError(f"cannot make {k} folds of {len(labels)} items")
    fold = np.empty(len(labels), int)
    with warnings.catch_warnings():  # the notes below say it better than sklearn's warning
        warnings.simplefilter("ignore", UserWarning)
        if counts.max() >= k:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(labels, labels)
        else:  # sklearn refuses when no class has k items: plain shuffled folds
            from sklearn.model_selection import KFold

            splitter = KFold(n_splits=k, shuffle=True, random_state=seed).split(labels)
        for f, (_, held) in enumerate(splitter):
            fold[held] = f
    notes = [f"class {names[c]!r} has {counts[c]} item(s), fewer than {k} folds: it is absent from "
             f"{k - len(np.unique(fold[labels == c]))} fold(s)" for c in np.flatnonzero((counts > 0) & (counts < k))]
    return fold, notes


def single_choice(labels: np.ndarray, n: int, seed: int, names) -> tuple[np.ndarray, list[str]]:
    """`n` items, stratified: one of every class first when n allows, the rest proportional."""
    counts = np.bincount(labels, minlength=len(names))
    present = counts > 0
    rng = np.random.default_rng(seed)
    notes = []
    if n >= present.sum():
        alloc = _allocate(counts, n, present.astype(int), counts)
    else:
        keep = rng.choice(np.flatnonzero(present), n, replace=False)
        alloc = np.zeros_like(counts)
        alloc[keep] = 1
        notes.append(f"a sample of {n} items cannot hold all {present.sum()} classes: it holds {n} of them, "
                     "one item each")
    return _pick(labels, alloc, rng), notes


# -- multi label: a 0/1 matrix per item ------------------------------------------------------------
def multi_split(y: np.ndarray, n_valid: int, seed: int, names) -> tuple[np.ndarray, list[str]]:
    """Iterative stratification (iterstrat), then every tag of two or more items swapped into the
    held-out part (and kept in training) when it missed it."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_valid, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(y)), y))
    group = np.zeros(len(y), int)
    group[held] = 1
    group = _fix_size(group, n_valid, np.random.default_rng(seed))
    notes = _cover(y, group, 2, names, np.random.default_rng(seed + 1))
    return np.flatnonzero(group == 1), notes


def multi_folds(y: np.ndarray, k: int, seed: int, names) -> tuple[np.ndarray, list[str]]:
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    fold = np.empty(len(y), int)
    for f, (_, held) in enumerate(MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
                                  .split(np.zeros(len(y)), y)):
        fold[held] = f
    return fold, _cover(y, fold, k, names, np.random.default_rng(seed + 1))


def multi_choice(y: np.ndarray, n: int, seed: int, names) -> tuple[np.ndarray, list[str]]:
    """One item per present tag first (rarest first), then the rest by iterative stratification."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    rng = np.random.default_rng(seed)
    must: list[int] = []
    for tag in np.argsort(y.sum(0), kind="stable"):
        if y[:, tag].sum() and not (must and y[must, tag].any()):
            must.append(int(rng.choice(np.flatnonzero(y[:, tag]))))
    notes = []
    if len(must) > n:
        notes.append(f"a sample of {n} items cannot hold every tag; {len(must)} items would be needed")
        return np.sort(np.array(must[:n], int)), notes
    rest = np.setdiff1d(np.arange(len(y)), must)
    k = n - len(must)
    if k in (0, len(rest)):
        extra = rest[:k] if k else rest[:0]
    else:
        splitter = MultilabelStratifiedShuffleSplit(1, train_size=k, test_size=len(rest) - k, random_state=seed)
        in_sample = np.zeros(len(rest), int)
        in_sample[next(splitter.split(y[rest], y[rest]))[0]] = 1
        extra = rest[_fix_size(in_sample, k, rng) == 1]  # iterstrat only approximates the size
    return np.sort(np.concatenate([must, extra]).astype(int)), notes


def _fix_size(group: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Move random items in or out of group 1 until it holds exactly `size` items."""
    group = group.copy()
    ones, zeros = np.flatnonzero(group == 1), np.flatnonzero(group == 0)
    if len(ones) > size:
        group[rng.choice(ones, len(ones) - size, replace=False)] = 0
    elif len(ones) < size:
        group[rng.choice(zeros, size - len(ones), replace=False)] = 1
    return group


def _cover(y: np.ndarray, group: np.ndarray, k: int, names, rng) -> list[str]:
    """Swap items between groups (in place) so every tag with at least `k` items is in every group.
    For a split (k=2, groups 0 and 1) that means held out and kept for training."""
    y = np.asarray(y) > 0.5
    notes = []
    n_groups = int(group.max()) + 1 if len(group) else 0
    for tag in np.argsort(y.sum(0), kind="stable"):
        if y[:, tag].sum() < k:
            if y[:, tag].any():
                notes.append(f"tag {names[tag]!r} has {int(y[:, tag].sum())} item(s): it cannot be in every "
                             f"{'part of the split' if k == 2 else 'fold'}")
            continue
        for g in range(n_groups):
            per_group = np.array([(y[group == h, tag]).sum() for h in range(n_groups)])
            if per_group[g]:
                continue
            donor = int(np.argmax(per_group))
            candidates = np.flatnonzero((group == donor) & y[:, tag])
            back = _safe_to_move(y, group, g, donor)
            if len(back) == 0:
                notes.append(f"tag {names[tag]!r} could not be placed in every part")
                continue
            group[rng.choice(candidates)] = g
            group[rng.choice(back)] = donor
    return notes


def _safe_to_move(y: np.ndarray, group: np.ndarray, source: int, target: int) -> np.ndarray:
    """Items of group `source` whose every tag occurs at least twice in it (moving one away
    empties no tag there), preferring items with few tags."""
    in_source = group == source
    counts = y[in_source].sum(0)
    ok = in_source & ~(y & (counts <= 1)).any(1)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return idx
    fewest = y[idx].sum(1).min()
    return idx[y[idx].sum(1) == fewest]
