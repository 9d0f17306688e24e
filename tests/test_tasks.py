"""Tasks own what differs: targets (and the errors for targets that do not fit), the head's
activation and loss, stratification that keeps every class, the error rate and decoding."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kaggletools.data import split as stratify
from kaggletools.competition import tasks
from kaggletools.errors import CompetitionError

SPECIES = [f"species {i}" for i in range(12)]


def _seedlings(rng) -> np.ndarray:
    """Class ids like the issue's Plant Seedlings sample: 12 classes of 4 to 9 items."""
    return np.concatenate([np.full(int(rng.integers(4, 10)), c) for c in range(12)])


@pytest.mark.parametrize("seed", range(5))
def test_single_label_split_folds_and_sample_keep_all_twelve_classes(seed):
    labels = _seedlings(np.random.default_rng(seed))
    held, notes = stratify.single_split(labels, round(len(labels) * 0.25), seed, SPECIES)
    valid = np.zeros(len(labels), bool)
    valid[held] = True
    assert len(np.unique(labels[valid])) == 12 and len(np.unique(labels[~valid])) == 12 and notes == []
    fold, notes = stratify.single_folds(labels, 4, seed, SPECIES)
    assert all(len(np.unique(labels[fold == f])) == 12 for f in range(4)) and notes == []
    chosen, notes = stratify.single_choice(labels, 16, seed, SPECIES)
    assert len(chosen) == 16 and len(np.unique(labels[chosen])) == 12 and notes == []


def test_when_counts_do_not_allow_the_notes_say_so():
    labels = np.array([0] * 10 + [1] * 3 + [2])
    held, notes = stratify.single_split(labels, 3, 0, ["a", "b", "c"])
    assert set(labels[held]) == {0, 1} and any("'c' has 1 item: it stays in training" in n for n in notes)
    fold, notes = stratify.single_folds(labels, 4, 0, ["a", "b", "c"])
    assert any("'b' has 3 item(s), fewer than 4 folds: it is absent from 1 fold(s)" in n for n in notes)
    chosen, notes = stratify.single_choice(labels, 2, 0, ["a", "b", "c"])
    assert len(chosen) == 2 and "cannot hold all 3 classes" in notes[0]


def test_multilabel_split_keeps_rare_tags_on_both_sides():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 6)) < [0.9, 0.5, 0.3, 0.1, 0.05, 0.0]).astype(float)
    y[:2, 5] = 1  # a tag with two items
    held, _ = stratify.multi_split(y > 0.5, 12, 0, list("abcdef"))
    valid = np.zeros(60, bool)
    valid[held] = True
    assert valid.sum() == 12
    for tag in np.flatnonzero(y.sum(0) >= 2):
        assert y[valid, tag].any() and y[~valid, tag].any(), tag


def test_multiclass_targets_and_their_errors():
    task = tasks.MultiClass()
    items = pd.DataFrame({"id": ["a", "b", "c"], "label": ["rose", "tulip", "rose"]})
    y = task.targets(items, ["rose", "tulip"], "labels.csv")
    assert y.tolist() == [[1, 0], [0, 1], [1, 0]]
    with pytest.raises(CompetitionError, match=r"labels.csv: 1 item\(s\) have a label outside the classes "
                                               r"\('daisy'\), e.g. 'b'"):
        task.targets(items.assign(label=["rose", "daisy", "rose"]), ["rose", "tulip"], "labels.csv")
    with pytest.raises(CompetitionError, match="empty label, e.g. 'c'"):
        task.targets(items.assign(label=["rose", "tulip", ""]), ["rose", "tulip"], "labels.csv")
    onehot = pd.DataFrame({"id": ["a", "b"], "rose": [1, 1], "tulip": [0, 1]})
    with pytest.raises(CompetitionError, match="do not have exactly one class, e.g. 'b'.*single 1"):
        task.targets(onehot, ["rose", "tulip"], "x")
    with pytest.raises(CompetitionError, match="all zero"):
        task.check_probs(np.array([[0.5, 0.5], [0.0, 0.0]]))


def test_binary_and_multilabel_targets_must_be_zero_or_one():
    with pytest.raises(CompetitionError, match="'dog' label that is not 0 or 1"):
        tasks.Binary().targets(pd.DataFrame({"id": ["a"], "dog": [2]}), ["dog"], "train")
    with pytest.raises(CompetitionError, match="tag values other than 0 or 1"):
        tasks.MultiLabel().targets(pd.DataFrame({"id": ["a"], "x": [0.5], "y": [1]}), ["x", "y"], "train")


def test_each_task_brings_its_activation_loss_error_and_decoding():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    multi = tasks.MultiClass()
    assert torch.allclose(multi.activation(logits).sum(1), torch.ones(2))
    assert multi.loss(logits, y).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y.argmax(1)).item())
    smooth = multi.loss(logits, y, smoothing=0.1).item()
    assert smooth == pytest.approx(torch.nn.functional.cross_entropy(logits, y.argmax(1), label_smoothing=0.1).item())
    probs = multi.activation(logits).numpy()
    assert multi.error_rate(y.numpy(), probs) == 0.5 and multi.decode(probs).tolist() == [0, 1]
    tags = tasks.MultiLabel()
    assert torch.allclose(tags.activation(logits), logits.sigmoid())
    assert tags.loss(logits, y).item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(logits, y).item())
    assert tags.error_rate(y.numpy(), tags.activation(logits).numpy()) == pytest.approx(2 / 6)


def test_multilabel_thresholds_are_tuned_for_the_competitions_own_metric():
    """A MultiLabelTags competition scored by macro F1 tunes and chooses its thresholds for macro
    F1, not for the base's F2 (which, favouring recall, wants lower thresholds)."""
    from sklearn.metrics import f1_score

    from kaggletools.competition import tags as multilabel
    from kaggletools.competition.bases import MultiLabelTags

    y_check = np.array([[1, 0], [1, 1], [0, 1]])
    d_check = np.array([[1, 1], [0, 1], [0, 1]])

    class MacroF1(MultiLabelTags):
        slug, classes, metric_name = "macro-f1", ("a", "b", "c", "d"), "macro_f1"

        def score_decisions(self, y_true, decisions):
            y, d = np.asarray(y_true) > 0.5, np.asarray(decisions, bool)
            tp, fp, fn = (y & d).sum(0), (~y & d).sum(0), (y & ~d).sum(0)
            return float(np.mean(2 * tp / np.maximum(2 * tp + fp + fn, 1)))

        def items(self, data_dir, split):
            raise NotImplementedError

        def make_fixture(self, folder, n_train=64, n_test=32, seed=0):
            raise NotImplementedError

    assert MacroF1.score_decisions(None, y_check, d_check) == pytest.approx(
        f1_score(y_check, d_check, average="macro"))
    rng = np.random.default_rng(0)
    y = (rng.random((400, 4)) < 0.3).astype(np.float32)
    y[np.arange(400), rng.integers(0, 4, 400)] = 1  # a tag on every item, as in a real label file
    probs = np.clip(0.25 + 0.4 * y + rng.normal(0, 0.18, y.shape), 0, 1)
    comp = MacroF1()
    post = comp.fit_post(y, probs)
    assert "macro_f1" in post["note"] and "macro_f1_honest" in post
    own = multilabel.global_threshold(y, probs, comp.classes, score=comp.score_decisions)
    f2 = multilabel.global_threshold(y, probs, comp.classes)
    assert own > f2, (own, f2)
    variants = comp.post_variants(y, probs)
    assert variants["global"]["global_threshold"] == pytest.approx(own)
    assert comp.metric(y, probs, variants["global"]) > comp.metric(y, probs, {"thresholds": [f2] * 4})


def test_a_label_file_naming_a_column_twice_is_refused(tmp_path):
    from kaggletools.competition import layouts

    (tmp_path / "train").mkdir()
    (tmp_path / "train.csv").write_text("id,has_cactus,has_cactus\na.jpg,1,0\n")
    with pytest.raises(CompetitionError, match=r"names \['has_cactus'\] more than once"):
        layouts.labelled_by_csv(tmp_path, "train.csv", "train", "id", "has_cactus")
    (tmp_path / "tags.csv").write_text("\ufeffimage_name,tags,tags\nx,a b,c\n")
    with pytest.raises(CompetitionError, match=r"names \['tags'\] more than once"):
        layouts.read_labels(tmp_path / "tags.csv", ("a", "b", "c"), "image_name")


def test_an_interrupt_wrapped_by_a_library_is_still_an_interrupt():
    from kaggletools import signals
    from kaggletools.errors import Interrupted

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("Error calling __set_name__ ...") from e
    except RuntimeError as wrapped:
        assert isinstance(signals.interrupt_in(wrapped), KeyboardInterrupt)
    assert signals.interrupt_in(ValueError("x")) is None
    outer = RuntimeError("outer")
    outer.__context__ = Interrupted(15, "SIGTERM")
    assert signals.interrupt_in(outer).exit_code == 143
