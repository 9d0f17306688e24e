"""Submission files: validate (as Kaggle would: accept what it scores, refuse what it refuses),
read, and write atomically. Competition-specific value checks live in each competition's
`validate_rows`; this module knows no competition."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from kaggletools.errors import SubmissionError

__all__ = ["SubmissionError", "validate", "read", "write", "check_probabilities", "numbers"]


def validate(competition, df: pd.DataFrame, test_ids=None, sample_path: Path | None = None,
             name: str = "submission") -> None:
    """Raise SubmissionError (naming `name`, the row and the value) unless Kaggle would score `df`:
    the columns of the sample submission (or, without one, of the competition's format), in any
    order; every expected id exactly once (the test ids when given, else the sample's ids, else
    not checked, but never twice); values the competition accepts."""
    sample = _read_sample(sample_path)
    expected_columns = list(sample.columns) if sample is not None else competition.submission_columns()
    columns = [str(c) for c in df.columns]
    missing, extra = [c for c in expected_columns if c not in columns], [c for c in columns if c not in
                                                                         expected_columns]
    if missing or extra or len(set(columns)) != len(columns):
        where = f"{sample_path}" if sample is not None else f"{competition.slug}'s format"
        raise SubmissionError(f"{name}: columns {columns} differ from {where}: {expected_columns}"
                              + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else "")
                              + "; write exactly these columns")
    id_col = competition.id_column
    ids = df[id_col].astype(str).str.strip()
    empty = df[id_col].isna() | (ids == "")
    if empty.any():
        raise SubmissionError(f"{name}: row {_row(empty)} has an empty {id_col!r}; every row needs a test id")
    if test_ids is None and sample is not None:
        test_ids = sample[competition.id_column]
    if test_ids is not None:
        _check_ids(name, ids, pd.Index([str(i).strip() for i in test_ids]))
    elif ids.duplicated().any():  # without the test ids, a repeated id is still a file Kaggle refuses
        dup = ids.duplicated()
        raise SubmissionError(f"{name}: id {ids[dup].iloc[0]!r} at row {_row(dup)} appears more than once; every "
                              "test id must appear exactly once")
    try:
        competition.validate_rows(df)
    except (SubmissionError, ValueError, KeyError) as e:
        text = str(e).strip("'\"")
        raise SubmissionError(text if text.startswith(name) else f"{name}: {text}") from None


def _read_sample(path: Path | None) -> pd.DataFrame | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise SubmissionError(f"{path}: cannot read the sample submission ({e}); download it again") from None


def _row(mask) -> int:
    """The 1-based data row of the first True (the CSV line is that plus one for the header)."""
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def _check_ids(name: str, ids: pd.Series, expected: pd.Index) -> None:
    dup = ids.duplicated()
    missing = expected.difference(pd.Index(ids))
    unknown = ~ids.isin(expected)
    problems = []
    if dup.any():
        problems.append(f"{int(dup.sum())} duplicate id(s), first {ids[dup].iloc[0]!r} at row {_row(dup)}")
    if unknown.any():
        problems.append(f"{int(unknown.sum())} unknown id(s), first {ids[unknown].iloc[0]!r} at row {_row(unknown)}")
    if len(missing):
        problems.append(f"{len(missing)} missing id(s) e.g. {list(missing[:5])}")
    if problems:
        raise SubmissionError(f"{name}: every test id must appear exactly once: {'; '.join(problems)} (expected "
                              f"{len(expected)} rows, got {len(ids)}); predict on the full test set")


def numbers(values: pd.Series, column: str) -> pd.Series:
    """A column as floats; a value that is not a finite number raises naming its row."""
    parsed = pd.to_numeric(values, errors="coerce").astype(np.float64)
    bad = ~np.isfinite(parsed.to_numpy())
    if bad.any():
        row = _row(bad)
        raise SubmissionError(f"column {column!r} row {row}: {str(values.iloc[row - 1])!r} is not a number")
    return parsed


def check_probabilities(values: pd.Series, column: str) -> None:
    """Probabilities must be finite numbers in [0, 1]."""
    p = numbers(values, column)
    bad = (p < 0) | (p > 1)
    if bad.any():
        row = _row(bad)
        raise SubmissionError(f"column {column!r} row {row}: {str(values.iloc[row - 1])!r} is not a probability in "
                              "[0, 1]")


def read(path: Path) -> pd.DataFrame:
    """Read a submission keeping every value as text (so '007' stays '007')."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise SubmissionError(f"{path}: the file is empty; write a header and one row per test id") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise SubmissionError(f"{path}: cannot read as CSV ({str(e).strip()}); write a plain comma-separated "
                              "UTF-8 file") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


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
    except OSError as e:  # a full disk, a read-only folder: named by the file meant, not the temporary one
        Path(tmp).unlink(missing_ok=True)
        if e.errno is None or e.filename == str(path):
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
