"""Item tables: checks, train/valid splits and k folds, samples for quick experiments. What to
stratify on, and how, belongs to the competition's task (kaggletools.competition.tasks)."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kaggletools.errors import CompetitionError

SAMPLE_MARKER = ".kaggletools-sample.json"


def train_items(competition: "Competition", data_dir: Path) -> pd.DataFrame:
    """The labelled items, checked: at least one, ids unique, targets that fit the task."""
    items = competition.items(Path(data_dir), "train")
    if len(items) == 0:
        raise CompetitionError(f"{data_dir}: no training items found; download and `prepare` the data first "
                               f"(expected files: {', '.join(competition.files)})")
    _check_unique(items, data_dir, "train")
    items = items.reset_index(drop=True)
    competition.targets(items, items.attrs.get("source", str(data_dir)))  # raises for targets that do not fit
    return items


def test_items(competition: "Competition", data_dir: Path) -> pd.DataFrame:
    items = competition.items(Path(data_dir), "test")
    if len(items) == 0:
        raise CompetitionError(f"{data_dir}: no test items found; download and `prepare` the data first")
    _check_unique(items, data_dir, "test")
    return items.reset_index(drop=True)


def _check_unique(items: pd.DataFrame, data_dir, split: str) -> None:
    dup = items["id"][items["id"].duplicated()]
    if len(dup):
        raise CompetitionError(f"{data_dir}: duplicate {split} id(s) {list(dup[:5])}; each item must appear once")
    for column in ("source", "id"):  # names that are not UTF-8 cannot go into a CSV (split, submission)
        for value in items[column].astype(str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                raise CompetitionError(f"{Path(data_dir) / shown}: the {split} file name is not valid UTF-8; rename "
                                       "it (Kaggle's files have UTF-8 names)") from None


# -- splits ----------------------------------------------------------------------------------------
@dataclass
class Split:
    """Which items are held out (`valid`), the fold of each item under k-fold, and notes on
    classes that could not be kept in every part."""

    valid: np.ndarray
    fold: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def table(self, ids) -> pd.DataFrame:
        return pd.DataFrame({"id": ids, "is_valid": self.valid, **({"fold": self.fold} if self.fold is not None
                                                                     else {})})


def split(competition: "Competition", items: pd.DataFrame, valid_frac: float = 0.2, seed: int = 42) -> Split:
    """A deterministic held-out split, stratified as the task says; valid_frac 0 holds out nothing."""
    if not 0 <= valid_frac < 1:
        raise CompetitionError(f"valid fraction must be in [0, 1), got {valid_frac}")
    if valid_frac == 0:
        return Split(np.zeros(len(items), bool), notes=["no validation split: every labelled item trains"])
    y = competition.targets(items)
    n_valid = max(1, round(len(items) * valid_frac))
    if n_valid >= len(items):
        raise CompetitionError(f"cannot hold out {n_valid} of {len(items)} items; lower --valid-frac")
    try:
        held, notes = competition.task.split(y, n_valid, seed, competition.classes)
    except ValueError as e:
        raise CompetitionError(f"cannot split {len(items)} items into train and valid: {e}") from None
    mask = np.zeros(len(items), bool)
    mask[held] = True
    return Split(mask, notes=notes)


def folds(competition: "Competition", items: pd.DataFrame, n_folds: int = 5, seed: int = 42) -> Split:
    """k folds stratified as the task says; `fold` holds each item's fold number."""
    if n_folds < 2:
        raise CompetitionError(f"k-fold needs at least 2 folds, got {n_folds}")
    try:
        fold, notes = competition.task.folds(competition.targets(items), n_folds, seed, competition.classes)
    except ValueError as e:
        raise CompetitionError(f"cannot make {n_folds} folds of {len(items)} items: {e}") from None
    return Split(fold == 0, fold, notes)


def recorded_split(items: pd.DataFrame, table: pd.DataFrame, where: str) -> tuple[pd.DataFrame, Split]:
    """The items and split a run recorded (its split.csv as `table`), for resuming it: the same
    items in the same order, or a CompetitionError when the data folder no longer holds them."""
    ids = table["id"].astype(str)
    present = items.assign(_key=items["id"].astype(str)).set_index("_key")
    missing = ids[~ids.isin(present.index)]
    if len(missing):
        raise CompetitionError(f"{where} names {len(missing)} item(s) the data folder no longer holds, e.g. "
                               f"{list(missing[:3])}; resume with the data the run started with")
    kept = present.loc[ids].reset_index(drop=True)
    kept.attrs = items.attrs
    valid = table["is_valid"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
    fold = table["fold"].to_numpy() if "fold" in table else None
    added = len(items) - len(kept)
    notes = [f"resumed on the {len(kept)} items the run started with"
             + (f"; {added} item(s) added to the data folder since then are left out" if added else "")]
    return kept, Split(valid, fold, notes)


def make_split(competition: "Competition", items: pd.DataFrame, valid_frac: float, seed: int, n_folds: int = 0,
               fold: int = 0) -> Split:
    """The split of a run: fold `fold` of `n_folds` held out, or a plain split."""
    if n_folds:
        made = folds(competition, items, n_folds, seed)
        made.valid = made.fold == fold
        return made
    return split(competition, items, valid_frac, seed)


# -- samples -----------------------------------------------------------------------------------------
def choose(competition: "Competition", items: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """`n` items, stratified as the task says (every class kept when n allows); unlabelled items
    at random."""
    if n > len(items):
        raise CompetitionError(f"asked for a sample of {n} items but the data has only {len(items)}; "
                               f"ask for at most {len(items)}")
    if n == len(items):
        return items
    try:
        y = competition.targets(items)
    except CompetitionError:  # test items carry no labels
        return items.sample(n=n, random_state=seed).sort_index()
    chosen, notes = competition.task.choose(y, n, seed, competition.classes)
    table = items.iloc[np.sort(chosen)]
    table.attrs["notes"] = notes
    return table


def sample(competition: "Competition", data_dir: Path, out_dir: Path | None = None, n_train: int = 200,
           n_test: int = 100, seed: int = 0) -> Path:
    """A small, deterministic, class-stratified copy of the data (fast.ai's `sample/` folder).

    Files are hard-linked where possible. The result is a data folder that every other step
    accepts like the full data. Re-running with the same arguments is a no-op.
    """
    data_dir = Path(data_dir)
    out_dir = Path(out_dir) if out_dir else data_dir / f"sample-{n_train}"
    spec = {"source": str(data_dir.resolve()), "n_train": n_train, "n_test": n_test, "seed": seed}
    marker = out_dir / SAMPLE_MARKER
    if marker.exists() and {k: v for k, v in json.loads(marker.read_text()).items() if k in spec} == spec:
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
        _check_sample(competition, partial, out_dir, len(train), len(test))
        (partial / SAMPLE_MARKER).write_text(json.dumps({**spec, "notes": train.attrs.get("notes", [])}))
        os.replace(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_dir


def _check_sample(competition: "Competition", folder: Path, out_dir: Path, n_train: int, n_test: int) -> None:
    """A sample is a data folder only if the competition's `items` finds the chosen items there."""
    why = None
    try:
        for split, chosen in (("train", n_train), ("test", n_test)):
            found = len(competition.items(folder, split)) if chosen or split == "train" else 0
            if found != chosen:
                why = f"its items() finds {found} {split} items there, not the {chosen} chosen"
                break
    except CompetitionError as e:
        why = str(e).replace(str(folder), str(out_dir))
    if why:
        raise CompetitionError(
            f"{competition.slug}: the sample {out_dir} would not be a data folder: {why}. The competition's "
            "sample_files must write what its items() reads (the default cuts only the CSVs items() read through "
            "kaggletools.competition.layouts; override sample_files otherwise)")
