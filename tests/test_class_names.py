"""A binary competition's negative class by the name people use: in every label, confusion matrix,
table and `check`."""
import numpy as np

from kaggletools.competition import registry as competition
from kaggletools.competition import tasks
from kaggletools.runs import gallery, interpret


def test_binary_competitions_declare_their_negative_class():
    assert competition.get("dogscats").class_names() == ["cat", "dog"]
    assert competition.get("dogs-vs-cats").class_names() == ["cat", "dog"]
    assert competition.get("iceberg").class_names() == ["ship", "is_iceberg"]
    assert competition.get("cactus").class_names() == ["no cactus", "has_cactus"]


def test_without_a_negative_name_it_is_not_the_positive_one():
    assert tasks.Binary().names(("dog",)) == ["not dog", "dog"]
    assert tasks.MultiClass().names(("a", "b", "c")) == ["a", "b", "c"]


def test_labels_and_confusion_matrix_use_the_names():
    comp = competition.get("dogscats")
    assert gallery.label_text(comp.task, comp.classes, [0.0], comp.negative_class) == "cat"
    assert gallery.label_text(comp.task, comp.classes, [1.0], comp.negative_class) == "dog"
    y, probs = np.array([[0.0], [0.0], [1.0]]), np.array([[0.9], [0.1], [0.8]])
    counts = interpret.confusion(comp, y, probs)
    pairs = interpret.most_confused(counts, interpret.class_names(comp))
    assert pairs == [{"actual": "cat", "predicted": "dog", "count": 1}]
    rows = interpret.top_loss_rows(comp, ["a", "b", "c"], y, probs, {}, n=1)
    assert rows[0]["actual"] == "cat" and rows[0]["predicted"] == "dog"


def test_class_counts_list_both_binary_classes():
    y = np.array([[1.0], [0.0], [0.0], [1.0], [1.0]])
    assert tasks.Binary().class_counts(y).tolist() == [2, 3]
    onehot = np.eye(3)[[0, 2, 2]]
    assert tasks.MultiClass().class_counts(onehot).tolist() == [1, 0, 2]
