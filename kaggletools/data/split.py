"""Splits, folds and samples that keep every class: the algorithms behind the tasks' `split`,
`folds` and `choose`. Single-label items are stratified on one class id each; multi-label items
on their 0/1 tag matrix (iterative stratification, kaggletools.data.iterstrat). Each function
returns its result and a list of notes saying which classes could not be kept where, and why.
Grouped items (one driver's photos, one patient's scans) go to one side whole: `group_split` and
`group_folds` (scikit-learn's StratifiedGroupKFold) take a 1-D stratum per item and its group.

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

from kaggletools.data import iterstrat


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
    """Iterative stratification, then every tag of two or more items swapped into the held-out
    part (and kept in training) when it missed it."""
    _, held = iterstrat.shuffle_split(y, n_valid, seed)
    group = np.zeros(len(y), int)
    group[held] = 1
    group = _fix_size(group, n_valid, np.random.default_rng(seed))
    notes = _cover(y, group, 2, names, np.random.default_rng(seed + 1))
    return np.flatnonzero(group == 1), notes


def multi_folds(y: np.ndarray, k: int, seed: int, names) -> tuple[np.ndarray, list[str]]:
    fold = iterstrat.kfold(y, k, seed)
    return fold, _cover(y, fold, k, names, np.random.default_rng(seed + 1))


def multi_choice(y: np.ndarray, n: int, seed: int, names) -> tuple[np.ndarray, list[str]]:
    """One item per present tag first (rarest first), then the rest by iterative stratification."""
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
        in_sample = np.zeros(len(rest), int)
        in_sample[iterstrat.shuffle_split(y[rest], len(rest) - k, seed, n_train=k)[0]] = 1
        extra = rest[_fix_size(in_sample, k, rng) == 1]  # iterative stratification only approximates the size
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


# -- groups: each group on one side ------------------------------------------------------------------
def rarest_tag(y: np.ndarray) -> np.ndarray:
    """A 1-D stratum per multi-label item: its rarest tag (k for an item without tags), the proxy
    grouped splits stratify on."""
    y = np.asarray(y) > 0.5
    counts = y.sum(0)
    rank = np.where(y, counts[None, :], np.iinfo(np.int64).max)
    return np.where(y.any(1), rank.argmin(1), y.shape[1])


def group_folds(strata: np.ndarray, groups: np.ndarray, k: int, seed: int, names) -> tuple[np.ndarray, list[str]]:
    """Fold ids 0..k-1 with every group in one fold, stratified on `strata` as far as whole groups
    allow (scikit-learn's StratifiedGroupKFold)."""
    from sklearn.model_selection import StratifiedGroupKFold

    codes = _group_codes(groups)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    if k > n_groups:
        raise ValueError(f"cannot make {k} folds of {n_groups} group(s): each group stays in one fold")
    fold = np.empty(len(strata), int)
    with warnings.catch_warnings():  # the notes below say which classes miss folds
        warnings.simplefilter("ignore", UserWarning)
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for f, (_, held) in enumerate(splitter.split(np.zeros(len(strata)), strata, codes)):
            fold[held] = f
    counts = np.bincount(strata, minlength=len(names))
    notes = [f"class {names[c]!r} is absent from {k - len(np.unique(fold[strata == c]))} of {k} folds (its items "
             "lie in too few groups)" for c in np.flatnonzero(counts) if len(np.unique(fold[strata == c])) < k]
    return fold, notes


def group_split(strata: np.ndarray, groups: np.ndarray, n_valid: int, seed: int, names) -> tuple[np.ndarray, list[str]]:
    """Held-out indices of whole groups, about `n_valid` items: the fold of StratifiedGroupKFold
    (k = items / n_valid) whose size comes closest."""
    n_groups = len(np.unique(_group_codes(groups)))
    if n_groups < 2:
        raise ValueError("the items form one group: a grouped split needs at least two")
    k = int(min(max(2, round(len(strata) / max(n_valid, 1))), n_groups))
    fold, _ = group_folds(strata, groups, k, seed, names)
    best = int(np.argmin(np.abs(np.bincount(fold, minlength=k) - n_valid)))
    held = np.flatnonzero(fold == best)
    notes = [f"held out {len(held)} items (whole groups: {len(np.unique(np.asarray(groups)[held]))} of {n_groups}), "
             f"asked for {n_valid}"] if len(held) != n_valid else []
    missing = [names[c] for c in np.unique(strata) if not np.isin(np.flatnonzero(strata == c), held).any()
               and (strata == c).sum() >= 2]
    if missing:
        notes.append(f"class(es) {', '.join(map(repr, missing[:10]))} have no held-out item: their items lie in "
                     "groups kept for training")
    return held, notes


def _group_codes(groups: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(groups).astype(str), return_inverse=True)[1].ravel()
