"""Item tables: checks, samples for quick experiments, train/valid splits and k folds."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from kaggletools.competition import Competition, CompetitionError

SAMPLE_MARKER = ".kaggletools-sample.json"


def train_items(competition: Competition, data_dir: Path) -> pd.DataFrame:
    """The labelled items, checked: at least two, ids unique, every class column present."""
    items = competition.items(Path(data_dir), "train")
    if len(items) == 0:
        raise CompetitionError(f"{data_dir}: no training items found; download and `prepare` the data first "
                               f"(expected files: {', '.join(competition.files)})")
    _check_unique(items, data_dir, "train")
    return items.reset_index(drop=True)


def test_items(competition: Competition, data_dir: Path) -> pd.DataFrame:
    items = competition.items(Path(data_dir), "test")
    if len(items) == 0:
        raise CompetitionError(f"{data_dir}: no test items found; download and `prepare` the data first")
    _check_unique(items, data_dir, "test")
    return items.reset_index(drop=True)


def _check_unique(items: pd.DataFrame, data_dir, split: str) -> None:
    dup = items["id"][items["id"].duplicated()]
    if len(dup):
        raise CompetitionError(f"{data_dir}: duplicate {split} id(s) {list(dup[:5])}; each item must appear once")


# -- splits ----------------------------------------------------------------------------------
def _strata(competition: Competition, items: pd.DataFrame) -> np.ndarray:
    return competition.targets(items)


def split(competition: Competition, items: pd.DataFrame, valid_frac: float = 0.2, seed: int = 42) -> np.ndarray:
    """A boolean 'is_valid' mask: stratified on the label (iteratively for multi-label), deterministic."""
    if not 0 < valid_frac < 1:
        raise CompetitionError(f"valid fraction must be between 0 and 1, got {valid_frac}")
    y = _strata(competition, items)
    n_valid = max(1, round(len(items) * valid_frac))
    if competition.task == "multilabel":
        from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit as Splitter
    else:
        Splitter, y = StratifiedShuffleSplit, y[:, 0]
    try:
        _, valid = next(Splitter(n_splits=1, test_size=n_valid, random_state=seed).split(np.zeros(len(y)), y))
    except ValueError as e:
        raise CompetitionError(f"cannot split {len(items)} items into train and valid: {e}") from None
    mask = np.zeros(len(items), bool)
    mask[valid] = True
    return mask


def folds(competition: Competition, items: pd.DataFrame, n_folds: int = 5, seed: int = 42) -> np.ndarray:
    """The fold number (0 .. n_folds-1) of each item, stratified like `split`."""
    y = _strata(competition, items)
    if competition.task == "multilabel":
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold as KFold
    else:
        KFold, y = StratifiedKFold, y[:, 0]
    fold = np.empty(len(items), int)
    splitter = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, valid) in enumerate(splitter.split(np.zeros(len(y)), y)):
        fold[valid] = k
    return fold


def valid_mask(competition: Competition, items: pd.DataFrame, valid_frac: float, seed: int,
               n_folds: int = 0, fold: int = 0, fold_of: np.ndarray | None = None) -> np.ndarray:
    """The validation mask for a plain split, or for fold `fold` of `n_folds` (`fold_of`: the
    folds when the caller already has them)."""
    if n_folds:
        if not 0 <= fold < n_folds:
            raise CompetitionError(f"fold must be in 0..{n_folds - 1}, got {fold}")
        return (folds(competition, items, n_folds, seed) if fold_of is None else fold_of) == fold
    return split(competition, items, valid_frac, seed)


# -- samples ---------------------------------------------------------------------------------
def choose(competition: Competition, items: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """`n` items, stratified by class; for multi-label, every tag present in `items` is kept."""
    if n > len(items):
        raise CompetitionError(f"asked for a sample of {n} items but the data has only {len(items)}; "
                               f"ask for at most {len(items)}")
    if n == len(items):
        return items
    if not set(competition.classes) <= set(items.columns):
        return items.sample(n=n, random_state=seed).sort_index()  # unlabelled (test) items
    y = competition.targets(items)
    if competition.task == "multilabel":
        return items.iloc[_multilabel_choice(y, n, seed)].sort_index()
    chosen, _ = next(StratifiedShuffleSplit(1, train_size=n, random_state=seed).split(y, y[:, 0]))
    return items.iloc[np.sort(chosen)]


def _multilabel_choice(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Rows for a multi-label sample: one row per present tag first (rarest first), then the rest
    by iterative stratification, so rare tags survive in small samples."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    rng = np.random.default_rng(seed)
    must: list[int] = []
    for tag in np.argsort(y.sum(0)):
        if y[:, tag].sum() and not (must and y[must, tag].any()):
            must.append(int(rng.choice(np.flatnonzero(y[:, tag]))))
    if len(must) >= n:
        return np.sort(np.array(must[:n]))
    rest = np.setdiff1d(np.arange(len(y)), must)
    k = n - len(must)
    if k == len(rest):
        extra = rest
    else:
        splitter = MultilabelStratifiedShuffleSplit(1, train_size=k, test_size=len(rest) - k, random_state=seed)
        extra = rest[next(splitter.split(y[rest], y[rest]))[0]]
        # iterstrat only approximates train_size: trim or top up at random to exactly k
        if len(extra) > k:
            extra = rng.choice(extra, k, replace=False)
        elif len(extra) < k:
            extra = np.concatenate([extra, rng.choice(np.setdiff1d(rest, extra), k - len(extra), replace=False)])
    return np.sort(np.concatenate([must, extra]).astype(int))


def sample(competition: Competition, data_dir: Path, out_dir: Path | None = None, n_train: int = 200,
           n_test: int = 100, seed: int = 0) -> Path:
    """A small, deterministic, class-stratified copy of the data (fast.ai's `sample/` folder).

    Files are hard-linked where possible. The result is a data folder that every other step
    accepts like the full data. Re-running with the same arguments is a no-op.
    """
    data_dir = Path(data_dir)
    out_dir = Path(out_dir) if out_dir else data_dir / f"sample-{n_train}"
    spec = {"source": str(data_dir.resolve()), "n_train": n_train, "n_test": n_test, "seed": seed}
    marker = out_dir / SAMPLE_MARKER
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return out_dir
    if out_dir.exists():
        raise CompetitionError(f"{out_dir} already exists and is not this sample; remove it or choose --out")
    train = choose(competition, train_items(competition, data_dir), n_train, seed)
    test = competition.items(data_dir, "test")
    test = choose(competition, test, n_test, seed) if n_test else test.iloc[:0]
    partial = out_dir.with_name(out_dir.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        competition.sample_files(data_dir, partial, train, test)
        (partial / SAMPLE_MARKER).write_text(json.dumps(spec))
        os.replace(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_dir


def link_sources(data_dir: Path, out_dir: Path, sources) -> None:
    """Hard-link (or copy, across file systems) each relative `source` from data_dir into out_dir."""
    for source in sources:
        src, dst = Path(data_dir) / source, Path(out_dir) / source
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def copy_if_exists(data_dir: Path, out_dir: Path, *names: str) -> None:
    """Copy small side files (sample submissions, label files) when present."""
    for name in names:
        if (Path(data_dir) / name).is_file():
            shutil.copy2(Path(data_dir) / name, Path(out_dir) / name)
