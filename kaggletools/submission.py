"""Build, validate and write submission files."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from kaggletools.competition import Competition


class SubmissionError(ValueError):
    """A submission that Kaggle would reject or misread; the message names the file and the fix."""


def validate(competition: Competition, df: pd.DataFrame, test_ids, sample_path: Path | None = None,
             name: str = "submission") -> None:
    """Check the columns (as the sample submission's when given), every test id exactly once,
    no empty values, and the competition's own value checks. Raise SubmissionError otherwise."""
    if sample_path is not None and Path(sample_path).is_file():
        sample = pd.read_csv(sample_path, nrows=5)
        if list(df.columns) != list(sample.columns):
            raise SubmissionError(f"{name}: columns {list(df.columns)} differ from {sample_path}'s "
                                  f"{list(sample.columns)}")
    id_col = competition.id_column
    if id_col not in df.columns:
        raise SubmissionError(f"{name}: no {id_col!r} column; columns are {list(df.columns)}")
    ids = df[id_col].astype(str)
    expected = pd.Index([str(i) for i in test_ids])
    dup = ids[ids.duplicated()].unique()
    missing = expected.difference(ids)
    extra = pd.Index(ids.unique()).difference(expected)
    problems = []
    if len(dup):
        problems.append(f"{len(dup)} duplicate id(s) e.g. {list(dup[:5])}")
    if len(missing):
        problems.append(f"{len(missing)} missing id(s) e.g. {list(missing[:5])}")
    if len(extra):
        problems.append(f"{len(extra)} unknown id(s) e.g. {list(extra[:5])}")
    if problems:
        raise SubmissionError(f"{name}: every test id must appear exactly once: {'; '.join(problems)} "
                              f"(expected {len(expected)} rows, got {len(df)}); predict on the full test set")
    empty = df.isna().any(axis=1)
    if empty.any():
        raise SubmissionError(f"{name}: {int(empty.sum())} row(s) with empty values, e.g. id "
                              f"{df.loc[empty, id_col].iloc[0]}; check the predictions for NaN")
    try:
        competition.validate_rows(df)
    except SubmissionError:
        raise
    except ValueError as e:
        raise SubmissionError(f"{name}: {e}") from None


def check_probabilities(values: pd.Series, column: str) -> None:
    """Probabilities must be numbers in [0, 1]."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any() or not np.all((numbers >= 0) & (numbers <= 1)):
        bad = values[numbers.isna() | (numbers < 0) | (numbers > 1)].iloc[0]
        raise SubmissionError(f"column {column!r} must hold probabilities in [0, 1]; found {bad!r}")


def write(df: pd.DataFrame, path: Path, overwrite: bool = False) -> Path:
    """Write atomically (a temporary file renamed into place); refuse to replace a file unless told."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise SubmissionError(f"{path} already exists; choose another name or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            df.to_csv(f, index=False)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if someone created the file meanwhile: never clobber
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: Path) -> pd.DataFrame:
    """Read a submission keeping ids as text (so '007' stays '007')."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise SubmissionError(f"{path}: cannot read as CSV ({e})") from None
