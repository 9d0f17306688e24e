"""Reusable competition bases: a competition module subclasses one, declares its data and is done.

- `BinaryLogLoss`: P(positive) in one column, log loss, the clip tuned on validation.
- `BinaryAUC`: P(positive) in one column, unclipped, area under the ROC curve.
- `BinaryProbability`: P(positive) in one column; bring your own metric.
- `MultiClassLogLoss`: one probability column per class, multi-class log loss as Kaggle scores it.
- `MultiClassLabel`: one column holding the predicted class's name, micro-F1 (= accuracy).
- `MultiLabelTags`: the predicted tags, space-separated, in one column; mean F-beta over items
  with thresholds chosen honestly (0.5, 0.2, one tuned global or per-tag).
- `ByMetric`: put before one of the above and declare `metric_name` from kaggletools.score.catalog
  (`qwk`, `map@5`, `f1_macro`, ...): metric, direction and post-processing come from the catalog.
Each implements the metric, the post-processing, the submission both ways and its value checks;
the subclass declares slug, classes, files, `items` and `make_fixture`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from kaggletools.score import catalog, metrics
import kaggletools.competition.layouts as layouts
import kaggletools.competition.tags as multilabel
import kaggletools.competition.tasks as tasks
from kaggletools.score import validation
from kaggletools.competition.interface import Competition
from kaggletools.score.submission import SubmissionError, check_probabilities, numbers


class BinaryProbability(Competition):
    """Binary, P(positive class) in `label_column` as written (no post-processing); declare
    `metric`, `metric_name` and `greater_is_better`, or use BinaryLogLoss / BinaryAUC."""

    task = tasks.Binary()
    label_column: str = "label"

    def submission(self, ids, probs, post) -> pd.DataFrame:
        return pd.DataFrame({self.id_column: list(ids), self.label_column: np.asarray(probs)[:, 0]})

    def read_submission(self, df) -> np.ndarray:
        return numbers(df[self.label_column], self.label_column).to_numpy(np.float64)[:, None]

    def validate_rows(self, df) -> None:
        check_probabilities(df[self.label_column], self.label_column)


class BinaryLogLoss(BinaryProbability):
    """Binary, scored by log loss on P(positive class): the submission holds clipped
    probabilities in `label_column`, the clip tuned on validation predictions."""

    metric_name = "log_loss"
    greater_is_better = False

    def metric(self, y_true, probs, post=None) -> float:
        return metrics.log_loss(y_true, probs, (post or {}).get("clip", 0.0))

    def fit_post(self, y_true, probs) -> dict:
        return {"clip": metrics.best_clip(y_true, probs)}

    def submission(self, ids, probs, post) -> pd.DataFrame:
        clip = post.get("clip", 0.005)
        return super().submission(ids, np.clip(np.asarray(probs)[:, :1], clip, 1 - clip), post)


class BinaryAUC(BinaryProbability):
    """Binary, scored by the area under the ROC curve of P(positive class): only the order of
    the probabilities counts, so they are written unclipped."""

    metric_name = "roc_auc"
    greater_is_better = True

    def metric(self, y_true, probs, post=None) -> float:
        return metrics.roc_auc(y_true, probs)


class MultiClassLogLoss(Competition):
    """One probability column per class (in `classes` order, the sample submission's), scored by
    multi-class log loss: Kaggle rescales each row to sum 1 and clips to [1e-15, 1 - 1e-15]. The
    post-processing is a probability floor tuned on validation (a confident mistake costs less)."""

    task = tasks.MultiClass()
    metric_name = "log_loss"
    greater_is_better = False

    def metric(self, y_true, probs, post=None) -> float:
        return metrics.multiclass_log_loss(y_true, probs, (post or {}).get("floor", 0.0))

    def fit_post(self, y_true, probs) -> dict:
        return {"floor": metrics.best_floor(y_true, probs)}

    def submission(self, ids, probs, post) -> pd.DataFrame:
        p = np.maximum(np.asarray(probs, np.float64), post.get("floor", 0.0))
        p = p / p.sum(1, keepdims=True)
        table = pd.DataFrame(p, columns=list(self.classes))
        table.insert(0, self.id_column, list(ids))
        return table

    def read_submission(self, df) -> np.ndarray:
        return np.stack([numbers(df[c], c).to_numpy(np.float64) for c in self.classes], 1)

    def validate_rows(self, df) -> None:
        p = self.read_submission(df)
        negative = (p < 0).any(1)
        if negative.any():
            row = int(np.flatnonzero(negative)[0])
            raise SubmissionError(f"row {row + 1} (id {df[self.id_column].iloc[row]}) has a negative probability; "
                                  "probabilities must be >= 0")
        zero = p.sum(1) <= 0
        if zero.any():
            row = int(np.flatnonzero(zero)[0])
            raise SubmissionError(f"row {row + 1} (id {df[self.id_column].iloc[row]}) has all probabilities zero; "
                                  "Kaggle rescales each row to sum 1, so a row needs a positive value")


class MultiClassLabel(Competition):
    """The predicted class's name in `label_column`, scored by micro-averaged F1 (for one label
    per item: accuracy)."""

    task = tasks.MultiClass()
    metric_name = "micro_f1"
    greater_is_better = True
    label_column: str = "label"

    def metric(self, y_true, probs, post=None) -> float:
        return metrics.micro_f1(y_true, probs)

    def decide_labels(self, probs, post) -> np.ndarray:
        """The class index written for each item (the argmax; ByMetric: as its metric decides)."""
        return self.task.decode(probs)

    def submission(self, ids, probs, post) -> pd.DataFrame:
        names = np.asarray(self.classes, dtype=object)[self.decide_labels(probs, post or {})]
        return pd.DataFrame({self.id_column: list(ids), self.label_column: names})

    def read_submission(self, df) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        y = np.zeros((len(df), len(self.classes)))
        codes = df[self.label_column].astype(str).map(index)
        y[np.flatnonzero(codes.notna()), codes.dropna().astype(int)] = 1
        return y

    def validate_rows(self, df) -> None:
        values = df[self.label_column].astype(str)
        unknown = ~values.isin(self.classes)
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise SubmissionError(f"row {row + 1} (id {df[self.id_column].iloc[row]}): {values.iloc[row]!r} is not a "
                                  f"class; write one of {', '.join(self.classes)} exactly")


class MultiLabelTags(Competition):
    """Multi-label: the predicted tags, space-separated in `label_column` (as Planet's
    `image_name,tags`), scored by F-beta per item averaged over items (`beta`; set `metric_name`
    with it), or by your own `score_decisions(y_true, decisions)` (e.g. macro F1). The thresholds
    the submission uses are 0.5, 0.2, one tuned global threshold or per-tag thresholds (rare tags
    shrunk toward the global one), tuned for that metric, whichever scores best on validation
    items that did not tune it (kaggletools.competition.tags.choose_thresholds); the report scores each
    variant and the choice itself that way. `rules` (multilabel.TagRules): tags of which exactly
    one is predicted per item, tags that stand alone."""

    task = tasks.MultiLabel()
    metric_name = "f2"
    greater_is_better = True
    label_column: str = "tags"
    beta: float = 2.0
    rules: multilabel.TagRules = multilabel.TagRules()

    def decide(self, probs: np.ndarray, post: dict | None) -> np.ndarray:
        """(n, k) booleans: each tag's probability against its threshold, then the rules."""
        return multilabel.decide(probs, multilabel.thresholds(post, self.classes), self.classes, self.rules)

    def score_decisions(self, y_true: np.ndarray, decisions: np.ndarray) -> float:
        """The metric of (n, k) 0/1 decisions: F-beta per item, averaged. Override for another."""
        return float(metrics.fbeta_per_sample(y_true, decisions, self.beta).mean())

    def metric(self, y_true, probs, post=None) -> float:
        return self.score_decisions(np.asarray(y_true), self.decide(probs, post))

    def fit_post(self, y_true, probs, groups=None) -> dict:
        y, probs = np.asarray(y_true), np.asarray(probs)
        return multilabel.choose_thresholds(y, probs, self.classes, self.rules, self.beta, self._halves(y, groups),
                                            score=self._own_score(), metric_name=self.metric_name)

    def post_variants(self, y_true, probs, groups=None) -> dict:
        """Each threshold variant. The whole choice among them (fit_post, itself cross-fitted inside
        the tuning half, on halves that keep each of `groups` whole) is scored as
        validation.SUBMITTED beside them."""
        y, probs = np.asarray(y_true), np.asarray(probs)
        return multilabel.threshold_variants(y, probs, self.classes, self.rules, self.beta, score=self._own_score())

    def _own_score(self):
        """score_decisions when a subclass redefines it (F-beta has a faster search of its own)."""
        return None if type(self).score_decisions is MultiLabelTags.score_decisions else self.score_decisions

    def _halves(self, y: np.ndarray, groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
        """multilabel.SPLITS pairs of disjoint stratified halves of the items (none below 2 x 4
        items); with `groups`, each group whole in one half (none when there are too few groups)."""
        if len(y) < 8:
            return []
        masks = [validation.half(self.task, y, self.classes, seed, groups) for seed in range(multilabel.SPLITS)]
        return [(np.flatnonzero(m), np.flatnonzero(~m)) for m in masks if m is not None and m.any() and not m.all()]

    def check_post(self, post: dict) -> None:
        multilabel.thresholds(post, self.classes)

    def submission(self, ids, probs, post) -> pd.DataFrame:
        probs = np.asarray(probs)
        if probs.shape != (len(ids), len(self.classes)):
            raise SubmissionError(f"expected probabilities of shape ({len(ids)}, {len(self.classes)}), "
                                  f"got {probs.shape}")
        return pd.DataFrame({self.id_column: list(ids),
                             self.label_column: multilabel.to_tags(self.decide(probs, post), self.classes)})

    def read_submission(self, df) -> np.ndarray:
        return layouts.tags_matrix(df[self.label_column], self.classes)[0]

    def validate_rows(self, df) -> None:
        multilabel.check_tags(df[self.label_column], self.classes)


class ByMetric:
    """A metric of kaggletools.score.catalog by name. Put it before a submission base and declare
    `metric_name`, e.g. `class Aptos(ByMetric, MultiClassLabel): metric_name = "qwk"`: the metric,
    its direction and its post-processing (cut-points, thresholds, a clip or floor) come from the
    catalog; MultiClassLabel writes the classes as the metric decides them (qwk: the cut-points),
    MultiLabelTags keeps its threshold search and rules and scores decisions with the metric."""

    metric_name: str = ""

    @property
    def catalog_metric(self) -> catalog.Metric:
        return catalog.get(self.metric_name)

    @property
    def greater_is_better(self) -> bool:
        return self.catalog_metric.greater_is_better

    def _tags(self) -> bool:
        return isinstance(self, MultiLabelTags)

    def metric(self, y_true, probs, post=None) -> float:
        if self._tags():  # thresholds and rules decide, the metric scores the decisions
            return super().metric(y_true, probs, post)
        return self.catalog_metric.score(y_true, probs, post)

    def score_decisions(self, y_true, decisions) -> float:
        return self.catalog_metric.score(y_true, np.asarray(decisions, np.float64))

    def fit_post(self, y_true, probs, groups=None) -> dict:
        if self._tags():
            return super().fit_post(y_true, probs, groups)
        return self.catalog_metric.fit_post(y_true, probs)

    def decide_labels(self, probs, post) -> np.ndarray:
        return self.catalog_metric.labels(probs, post)
