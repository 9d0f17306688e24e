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


def train_items(competition, data_dir: Path) -> pd.DataFrame:
    """The labelled items, checked: at least one, ids unique, targets that fit the task."""
    items = competition.items(Path(data_dir), "train")
    if len(items) == 0:
        raise CompetitionError(f"{data_dir}: no training items found; download and `prepare` the data first "
                               f"(expected files: {', '.join(competition.files)})")
    _check_unique(items, data_dir, "train")
    items = items.reset_index(drop=True)
    competition.targets(items, items.attrs.get("source", str(data_dir)))  # raises for targets that do not fit
    return items


def test_items(competition, data_dir: Path) -> pd.DataFrame:
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
    """Which items are held out (`valid`), the fold of each item under k-fold, notes on classes
    that could not be kept in every part, and each item's group (`groups`, from the item column
    `group_column`) when groups keep to one side."""

    valid: np.ndarray
    fold: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    groups: np.ndarray | None = None
    group_column: str = ""

    def table(self, ids) -> pd.DataFrame:
        """split.csv: id, is_valid, fold (k-fold), and the group column (grouped splits)."""
        table = pd.DataFrame({"id": ids, "is_valid": self.valid})
        if self.fold is not None:
            table["fold"] = self.fold
        if self.groups is not None:
            table[self.group_column if self.group_column not in table else "group"] = self.groups
        return table


def group_column(competition, group_by: str = "") -> str:
    """The item column whose groups keep to one side: `group_by` (--group-by), else the
    competition's `group_column`; '' for none (also when group_by is 'none')."""
    chosen = (group_by or competition.group_column or "").strip()
    return "" if chosen.lower() == "none" else chosen


def groups(competition, items: pd.DataFrame, group_by: str = "") -> np.ndarray | None:
    """Each item's group as text (None without a group column); a missing column or an item
    without a group is a CompetitionError naming it."""
    column = group_column(competition, group_by)
    if not column:
        return None
    where = items.attrs.get("source", competition.slug)
    if column not in items.columns:
        raise CompetitionError(f"{where}: no group column {column!r} in the train items; their columns are "
                               f"{', '.join(map(str, items.columns))}: pass --group-by with one of them (or none)")
    values = items[column]
    empty = values.isna() | (values.astype(str).str.strip() == "")
    if empty.any():
        raise CompetitionError(f"{where}: {int(empty.sum())} item(s) have no {column!r}, e.g. "
                               f"{list(items['id'][empty][:3])}; give every item its group (or --group-by none)")
    return values.astype(str).to_numpy()


def _grouped(made: Split, groups_: np.ndarray | None, column: str) -> Split:
    if groups_ is not None:
        made.groups, made.group_column = groups_, column
    return made


def _with_groups(groups_: np.ndarray | None) -> dict:
    """The task's `groups` argument, given only when there are groups (tasks written before
    groups existed keep working)."""
    return {} if groups_ is None else {"groups": groups_}


def split(competition, items: pd.DataFrame, valid_frac: float = 0.2, seed: int = 42,
          group_by: str = "") -> Split:
    """A deterministic held-out split, stratified as the task says; valid_frac 0 holds out nothing.
    With a group column (see `group_column`) each group is held out whole or not at all."""
    if not 0 <= valid_frac < 1:
        raise CompetitionError(f"valid fraction must be in [0, 1), got {valid_frac}")
    found, column = groups(competition, items, group_by), group_column(competition, group_by)
    if valid_frac == 0:
        return _grouped(Split(np.zeros(len(items), bool), notes=["no validation split: every labelled item trains"]),
                        found, column)
    y = competition.targets(items)
    n_valid = max(1, round(len(items) * valid_frac))
    if n_valid >= len(items):
        raise CompetitionError(f"cannot hold out {n_valid} of {len(items)} items; lower --valid-frac")
    try:
        held, notes = competition.task.split(y, n_valid, seed, competition.classes, **_with_groups(found))
    except ValueError as e:
        raise CompetitionError(f"cannot split {len(items)} items into train and valid: {e}") from None
    mask = np.zeros(len(items), bool)
    mask[held] = True
    return _grouped(Split(mask, notes=notes), found, column)


def folds(competition, items: pd.DataFrame, n_folds: int = 5, seed: int = 42,
          group_by: str = "") -> Split:
    """k folds stratified as the task says; `fold` holds each item's fold number. With a group
    column each group lies in one fold."""
    if n_folds < 2:
        raise CompetitionError(f"k-fold needs at least 2 folds, got {n_folds}")
    found, column = groups(competition, items, group_by), group_column(competition, group_by)
    try:
        fold, notes = competition.task.folds(competition.targets(items), n_folds, seed, competition.classes,
                                             **_with_groups(found))
    except ValueError as e:
        raise CompetitionError(f"cannot make {n_folds} folds of {len(items)} items: {e}") from None
    return _grouped(Split(fold == 0, fold, notes), found, column)


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
    column, recorded = recorded_groups(table)
    return kept, _grouped(Split(valid, fold, notes), recorded, column)


def recorded_groups(table: pd.DataFrame) -> tuple[str, np.ndarray | None]:
    """The group column a split.csv recorded and each row's group ('', None: no groups)."""
    column = next((c for c in table.columns if c not in ("id", "is_valid", "fold")), "")
    return column, (table[column].astype(str).to_numpy() if column else None)


def make_split(competition, items: pd.DataFrame, valid_frac: float, seed: int, n_folds: int = 0,
               fold: int = 0, group_by: str = "") -> Split:
    """The split of a run: fold `fold` of `n_folds` held out, or a plain split; `group_by`: the
    group column (default: the competition's, see `group_column`)."""
    if n_folds:
        made = folds(competition, items, n_folds, seed, group_by)
        made.valid = made.fold == fold
        return made
    return split(competition, items, valid_frac, seed, group_by)


# -- samples -----------------------------------------------------------------------------------------
def choose(competition, items: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
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


def sample(competition, data_dir: Path, out_dir: Path | None = None, n_train: int = 200,
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


def _check_sample(competition, folder: Path, out_dir: Path, n_train: int, n_test: int) -> None:
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
