"""Scoring a submission file against known answers (a fixture's hidden labels, or your own
held-out data), beside the constant baseline that knows only the class frequencies."""
from __future__ import annotations

import numpy as np
import pandas as pd

from kaggletools.errors import SubmissionError


def score(competition, submission: pd.DataFrame, answers: pd.DataFrame) -> float:
    """The competition's metric of `submission` against `answers` (a submission-shaped table of
    the true labels), matched on the id column."""
    key = competition.id_column
    left, right = submission.copy(), answers.copy()
    left[key], right[key] = left[key].astype(str), right[key].astype(str)
    missing = pd.Index(right[key]).difference(pd.Index(left[key]))
    if len(missing):
        raise SubmissionError(f"the submission lacks {len(missing)} answered id(s), e.g. {list(missing[:3])}")
    left = left.drop_duplicates(key).set_index(key).loc[right[key]].reset_index()
    probs = competition.read_submission(left)
    y = competition.read_submission(right.astype(str))
    return float(competition.metric(y, probs))


def baseline(competition, train_targets: np.ndarray, answers: pd.DataFrame) -> float:
    """The score of predicting the training class frequencies for every answered item, with the
    competition's post-processing tuned for them on the training targets (a multi-label
    threshold then predicts the frequent tags: a baseline worth beating)."""
    prior = competition.task.prior(train_targets)
    post = competition.fit_post(train_targets, np.tile(prior, (len(train_targets), 1)))
    probs = np.tile(prior, (len(answers), 1))
    table = competition.submission(list(answers[competition.id_column]), probs, post)
    return score(competition, table.astype(str), answers)


def better(competition, a: float, b: float) -> bool:
    """Whether score a beats score b for this competition's metric."""
    return a > b if competition.greater_is_better else a < b
