"""Kaggle's metrics by name (kaggletools.score.catalog), each checked against scikit-learn or a
published reference implementation on random inputs, with its direction and post-processing;
and a registered module that takes its metric from the catalog (bases.ByMetric)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from kaggletools.competition import bases, tasks
from kaggletools.errors import OptionError
from kaggletools.score import catalog

RNG = np.random.default_rng(2024)


def binary(n=200):
    y = (RNG.random((n, 1)) < 0.4).astype(float)
    return y, np.clip(0.3 * y + 0.7 * RNG.random((n, 1)), 0.01, 0.99)


def multiclass(n=300, k=5):
    y = np.eye(k)[RNG.integers(0, k, n)]
    p = RNG.random((n, k)) + 1.5 * y * RNG.random((n, 1))
    return y, p / p.sum(1, keepdims=True)


def multilabel(n=200, k=6):
    y = (RNG.random((n, k)) < RNG.uniform(0.1, 0.6, k)).astype(float)
    return y, np.clip(0.4 * y + 0.6 * RNG.random((n, k)), 0, 1)


# -- names -----------------------------------------------------------------------------------------
def test_every_name_and_alias_resolves_and_unknown_names_are_refused_with_the_closest():
    assert {"log_loss", "accuracy", "f1_micro", "f1_macro", "f2", "roc_auc", "mean_auc", "qwk", "map@5"} \
        <= set(catalog.names())
    for name in catalog.names():
        metric = catalog.get(name)
        assert metric.name == name and isinstance(metric.greater_is_better, bool)
        assert metric.tasks and set(metric.tasks) <= set(tasks.TASKS)
        for alias in metric.aliases:
            assert catalog.get(alias) is metric and catalog.get(alias.upper()) is metric
    assert catalog.get("kappa").name == "qwk" and catalog.get("map5").name == "map@5"
    assert catalog.get("categorization_accuracy").name == "accuracy"
    assert catalog.get("map@12").name == "map@12" and catalog.get("f0.5_samples").name == "f0.5_samples"
    assert not catalog.get("log_loss").greater_is_better and catalog.get("qwk").greater_is_better
    with pytest.raises(OptionError, match="unknown metric 'qwkk'.*did you mean.*qwk"):
        catalog.get("qwkk")


# -- against scikit-learn ----------------------------------------------------------------------------
def test_log_loss_is_sklearns_with_kaggles_clipping_and_row_normalisation():
    metric = catalog.get("log_loss")
    y, p = binary()
    assert metric.score(y, p) == pytest.approx(sk.log_loss(y[:, 0], p[:, 0]), rel=1e-9)
    assert metric.score(y, p, {"clip": 0.05}) == pytest.approx(sk.log_loss(y[:, 0], np.clip(p[:, 0], 0.05, 0.95)))
    y, p = multiclass()
    raw = p * RNG.uniform(0.5, 2.0, (len(p), 1))  # rows that do not sum to 1: Kaggle rescales them
    assert metric.score(y, raw) == pytest.approx(sk.log_loss(y.argmax(1), p, labels=range(5)), rel=1e-9)
    zero = p.copy()
    zero[0] = np.eye(5)[(y[0].argmax() + 1) % 5]  # a certain mistake costs -log(1e-15), not infinity
    assert metric.score(y, zero) == pytest.approx(
        (sk.log_loss(y[1:].argmax(1), p[1:], labels=range(5)) * (len(p) - 1) - np.log(1e-15)) / len(p), rel=1e-6)
    assert set(metric.fit_post(*binary())) == {"clip"} and set(metric.fit_post(*multiclass())) == {"floor"}


def test_accuracy_is_sklearns_for_each_task():
    metric = catalog.get("accuracy")
    y, p = binary()
    assert metric.score(y, p) == pytest.approx(sk.accuracy_score(y[:, 0], p[:, 0] > 0.5))
    y, p = multiclass()
    assert metric.score(y, p) == pytest.approx(sk.accuracy_score(y.argmax(1), p.argmax(1)))
    y, p = multilabel()
    assert metric.score(y, p) == pytest.approx(sk.accuracy_score(y, p > 0.5))
    assert metric.fit_post(y, p) == {}


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_f1_micro_and_macro_are_sklearns_and_tune_thresholds_for_tags(average):
    metric = catalog.get(f"f1_{average}")
    y, p = multiclass()
    assert metric.score(y, p) == pytest.approx(sk.f1_score(y.argmax(1), p.argmax(1), average=average))
    assert metric.fit_post(y, p) == {}  # one label per item: the argmax, nothing to tune
    y, p = multilabel()
    assert metric.score(y, p) == pytest.approx(sk.f1_score(y, p > 0.5, average=average, zero_division=0))
    post = metric.fit_post(y, p)
    t = np.array(post["thresholds"])
    assert t.shape == (6,) and metric.score(y, p, post) >= metric.score(y, p)
    assert metric.score(y, p, post) == pytest.approx(sk.f1_score(y, p > t, average=average, zero_division=0))


def test_binary_f1_is_sklearns_and_tunes_its_threshold():
    metric = catalog.get("f1")
    y, p = binary()
    assert metric.score(y, p) == pytest.approx(sk.f1_score(y[:, 0], p[:, 0] > 0.5))
    post = metric.fit_post(y, p)
    assert metric.score(y, p, post) == pytest.approx(sk.f1_score(y[:, 0], p[:, 0] > post["thresholds"][0]))


@pytest.mark.parametrize("name, beta", [("f2", 2.0), ("f1_samples", 1.0), ("f0.5_samples", 0.5)])
def test_f_beta_per_item_is_sklearns_samples_average(name, beta):
    metric = catalog.get(name)
    y, p = multilabel()
    expected = sk.fbeta_score(y, p > 0.5, beta=beta, average="samples", zero_division=1)
    assert metric.score(y, p) == pytest.approx(expected)
    post = metric.fit_post(y, p)
    t = np.array(post["thresholds"])
    assert metric.score(y, p, post) == pytest.approx(
        sk.fbeta_score(y, p > t, beta=beta, average="samples", zero_division=1))
    assert metric.score(y, p, post) > expected


def test_roc_auc_and_mean_column_auc_are_sklearns():
    y, p = binary()
    assert catalog.get("roc_auc").score(y, p) == pytest.approx(sk.roc_auc_score(y[:, 0], p[:, 0]))
    y, p = multilabel()
    assert catalog.get("mean_auc").score(y, p) == pytest.approx(sk.roc_auc_score(y, p, average="macro"))
    assert catalog.get("roc_auc").fit_post(*binary()) == {} and catalog.get("mean_auc").fit_post(y, p) == {}


def test_qwk_is_sklearns_quadratic_kappa_and_its_cut_points_decide_the_classes():
    metric = catalog.get("kappa")
    y, p = multiclass(400, 5)
    truth = y.argmax(1)
    assert metric.score(y, p) == pytest.approx(sk.cohen_kappa_score(truth, p.argmax(1), weights="quadratic"))
    cuts = [0.7, 1.6, 2.4, 3.3]
    ordinal = np.searchsorted(cuts, p @ np.arange(5), side="right")
    assert metric.score(y, p, {"cuts": cuts}) == pytest.approx(
        sk.cohen_kappa_score(truth, ordinal, weights="quadratic"))
    assert (metric.labels(p, {"cuts": cuts}) == ordinal).all() and (metric.labels(p) == p.argmax(1)).all()
    # ordinal probabilities spread over neighbours: the tuned cut-points beat the argmax on these items
    blur = np.exp(-0.5 * ((np.arange(5)[None, :] - (truth + RNG.normal(0, 0.8, len(truth)))[:, None]) / 1.2) ** 2)
    blur /= blur.sum(1, keepdims=True)
    post = metric.fit_post(y, blur)
    assert post and len(post["cuts"]) == 4 and list(post["cuts"]) == sorted(post["cuts"])
    assert metric.score(y, blur, post) > metric.score(y, blur)


def apk(actual, predicted, k=10):
    """Average precision at k, as the reference implementation ml_metrics (Ben Hamner, Kaggle;
    BSD 2-clause) computes it; Kaggle's MAP@k is its mean over items."""
    if len(predicted) > k:
        predicted = predicted[:k]
    score, num_hits = 0.0, 0.0
    for i, p in enumerate(predicted):
        if p in actual and p not in predicted[:i]:
            num_hits += 1.0
            score += num_hits / (i + 1.0)
    if not actual:
        return 0.0
    return score / min(len(actual), k)


@pytest.mark.parametrize("k", [5, 3])
def test_map_at_k_is_the_ml_metrics_formula(k):
    metric = catalog.get(f"map@{k}")
    for y, p in (multiclass(300, 8), multilabel(200, 9)):
        top = [list(np.argsort(-row)) for row in p]
        expected = np.mean([apk(list(np.flatnonzero(t)), row, k) for t, row in zip(y, top)])
        assert metric.score(y, p) == pytest.approx(expected)
    assert metric.fit_post(y, p) == {}


# -- a registered module on the catalog ------------------------------------------------------------
class Ordinal(bases.ByMetric, bases.MultiClassLabel):
    """A competition in the shape of APTOS: five ordinal grades, the grade's name submitted, qwk."""

    slug = "test-ordinal"
    classes = ("0", "1", "2", "3", "4")
    metric_name = "qwk"

    def items(self, data_dir: Path, split: str) -> pd.DataFrame:
        raise NotImplementedError

    def make_fixture(self, folder: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> pd.DataFrame:
        raise NotImplementedError


class MacroTags(bases.ByMetric, bases.MultiLabelTags):
    slug = "test-macro-tags"
    classes = ("a", "b", "c", "d")
    metric_name = "f1_macro"

    items, make_fixture = Ordinal.items, Ordinal.make_fixture


def test_a_module_declaring_a_catalog_metric_gets_its_score_direction_and_post_processing():
    comp = Ordinal()
    qwk = catalog.get("qwk")
    assert comp.greater_is_better is True
    y, p = multiclass(200, 5)
    assert comp.metric(y, p) == pytest.approx(qwk.score(y, p))
    post = comp.fit_post(y, p)
    assert post == qwk.fit_post(y, p)
    cuts = {"cuts": [0.6, 1.4, 2.5, 3.5]}
    written = comp.submission([f"i{n}" for n in range(len(p))], p, cuts)
    assert (written["label"].astype(int).to_numpy() == qwk.labels(p, cuts)).all()
    assert set(comp.post_variants(y, p)) <= {"tuned"}

    tags = MacroTags()
    y, p = multilabel(120, 4)
    post = tags.fit_post(y, p)
    decided = tags.decide(p, post)
    assert tags.metric(y, p, post) == pytest.approx(sk.f1_score(y, decided, average="macro", zero_division=0))


def test_the_tuned_log_loss_clip_goes_down_to_0_001_for_a_confident_model_and_up_for_confident_mistakes():
    from kaggletools.score import metrics

    y = np.array([[1.0]] * 50 + [[0.0]] * 50)
    right = np.where(y > 0.5, 0.9995, 0.0005)
    assert metrics.best_clip(y, right) == 0.001 == min(metrics.CLIP_GRID)
    wrong = right.copy()
    wrong[:3] = 0.0005  # three confident mistakes
    assert metrics.best_clip(y, wrong) > 0.005
