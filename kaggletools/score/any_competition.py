"""Checking a submission for a competition that has no module here (any slug on Kaggle): the
columns and ids of its sample submission when the data folder has one; else only that the file is
a readable CSV whose first column repeats no id. Nothing about the values is known."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from kaggletools.score import submission

SAMPLE = re.compile(r"submission.*\.csv$", re.IGNORECASE)  # sample_submission.csv, gender_submission.csv (Titanic)


def sample_of(data_dir: Path | None) -> Path | None:
    """The sample submission lying in `data_dir`: sample_submission*.csv or sampleSubmission*.csv, else
    another *submission*.csv (Titanic's is gender_submission.csv)."""
    if data_dir is None or not Path(data_dir).is_dir():
        return None
    found = sorted((not p.name.lower().startswith("sample"), p.name, p) for p in Path(data_dir).iterdir()
                   if p.is_file() and SAMPLE.search(p.name))
    return found[0][2] if found else None


class _Format:
    """What `submission.validate` asks of a competition, known only from the file or the sample."""

    def __init__(self, slug: str, columns: list[str]):
        self.slug, self.columns = slug, columns
        self.id_column = columns[0]

    def submission_columns(self) -> list[str]:
        return list(self.columns)

    def validate_rows(self, df: pd.DataFrame) -> None:
        pass


def validate(slug: str, csv: Path, data_dir: Path | None = None) -> Path | None:
    """Raise SubmissionError unless `csv` fits the sample submission of `data_dir` (its columns, each
    of its ids once); without one, unless its first column repeats no id. Returns the sample used."""
    df = submission.read(Path(csv))
    sample = sample_of(data_dir)
    columns = list(pd.read_csv(sample, nrows=0, encoding="utf-8-sig").columns) if sample else list(df.columns)
    if not columns:
        raise submission.SubmissionError(f"{csv}: no columns; write the sample submission's header")
    submission.validate(_Format(slug, [str(c).strip() for c in columns]), df, None, sample, name=str(csv))
    return sample
