"""report.html as a fastai user reads it: the kept epoch's score (no "best score -"), top losses
once, the size the run trained at, precision and recall per class."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from kaggletools.competition import registry as competition
from kaggletools.runs import folder as runs
from kaggletools.runs import per_class
from kaggletools.runs import report as html_report

REDUX = "dogs-vs-cats-redux-kernels-edition"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


@pytest.fixture
def run(tmp_path):
    path = tmp_path / "20261206-1200-mobilenet_v2"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({
        "competition": REDUX, "recipe": {"backbone": "mobilenet_v2", "size": 128},
        "backbone": {"name": "mobilenet_v2", "input_size": [3, 224, 224], "n_features": 1280}}))
    (path / "report.json").write_text(json.dumps({"plain": {"log_loss": 0.07}, "with_tta": {"log_loss": 0.06},
                                                  "n_valid": 400, "tta": "flip", "post": {"clip": 0.01},
                                                  "kept": {"epoch": 2}, "seconds": 60.0}))
    pd.DataFrame([{"epoch": 1, "phase": "frozen", "train_loss": 0.3, "valid_loss": 0.1, "log_loss": 0.1},
                  {"epoch": 2, "phase": "unfrozen", "train_loss": 0.2, "valid_loss": 0.07, "log_loss": 0.0712}]
                 ).to_csv(path / "metrics.csv", index=False)
    (path / "interpret_top_losses.png").write_bytes(PNG)
    (path / runs.INTERPRETATION).write_text(json.dumps({
        "n_valid": 400, "probabilities": "with TTA 'flip'", "notes": [], "confused": [],
        "plots": [{"name": "top_losses", "title": "Top losses", "file": "interpret_top_losses.png", "caption": "c"}],
        "top_losses": [{"id": "cat.1", "actual": "cat", "predicted": "dog", "probability": "P(dog) 0.97",
                        "loss": 3.5, "wrong": True}],
        "per_class": [{"class": "cat", "precision": 0.98, "recall": 0.97, "support": 200, "predicted": 198},
                      {"class": "dog", "precision": 0.97, "recall": 0.98, "support": 200, "predicted": 202}]}))
    return runs.Run(path)


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html))


def test_report_says_the_kept_epochs_score_not_a_dash(run):
    text = " ".join(_text(html_report.render(run, competition.get(REDUX))).split())
    assert "best score" not in text
    assert "validation log_loss at that epoch 0.0712" in text


def test_top_losses_appear_once_with_their_table(run):
    html = html_report.render(run, competition.get(REDUX))
    assert html.count(">Top losses<") == 1 and html.count("cat.1") == 1


def test_the_trained_input_size_is_shown(run):
    text = " ".join(_text(html_report.render(run, competition.get(REDUX))).split())
    assert "3×128×128" in text and "3,224,224" not in text and "224, 224" not in text


def test_precision_and_recall_per_class_in_the_report(run):
    text = " ".join(_text(html_report.render(run, competition.get(REDUX))).split())
    assert "Precision and recall per class" in text and "cat 0.98 0.97 200 198" in text


def test_per_class_binary_lists_both_classes_by_name():
    y = np.array([[1.0], [1.0], [0.0], [0.0]])
    decided = np.array([[1.0], [0.0], [0.0], [1.0]])
    rows = per_class.rows(competition.get(REDUX), y, decided)
    assert [r["class"] for r in rows] == ["cat", "dog"]
    assert rows[1] == {"class": "dog", "precision": 0.5, "recall": 0.5, "support": 2, "predicted": 2}


def test_per_class_multiclass_and_multilabel():
    seedlings = competition.get("plant-seedlings")
    k = len(seedlings.classes)
    y = np.eye(k)[[0, 0, 1]]
    decided = np.eye(k)[[0, 1, 1]]
    rows = per_class.rows(seedlings, y, decided)
    assert rows[0]["precision"] == 1.0 and rows[0]["recall"] == 0.5
    assert rows[1]["precision"] == 0.5 and rows[1]["recall"] == 1.0
    assert rows[2]["precision"] is None and rows[2]["recall"] is None  # never seen, never called
    planet = competition.get("planet")
    tags = len(planet.classes)
    y = np.zeros((2, tags))
    y[:, 0] = 1
    y[0, 1] = 1
    decided = np.zeros((2, tags))
    decided[0, 0] = decided[0, 1] = decided[1, 1] = 1
    rows = per_class.rows(planet, y, decided)
    assert rows[0]["recall"] == 0.5 and rows[0]["precision"] == 1.0
    assert rows[1]["recall"] == 1.0 and rows[1]["precision"] == 0.5 and len(rows) == tags
