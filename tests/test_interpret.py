"""Interpretation, show-batch and report.html on tiny trained runs of generated fixtures: a binary
competition of radar arrays (iceberg: log loss, clip), a multi-class one (plant seedlings) and the
multi-label one (Planet: thresholds); report.html also rendered by a real headless Chromium."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kaggletools import api
from kaggletools.data import cache
import kaggletools.cli.app as cli
from kaggletools.competition import registry as competition
from kaggletools.data import items as data
from kaggletools.runs import gallery
from kaggletools.steps import show_batch
from kaggletools.runs import report as html_report
from kaggletools.runs import interpret
from kaggletools.runs import folder as runs
from kaggletools.competition import tasks
from kaggletools.score import validation

BINARY, MULTICLASS, MULTILABEL = ("statoil-iceberg-classifier-challenge", "plant-seedlings-classification",
                                  "planet-understanding-the-amazon-from-space")
TINY = {"backbone": "resnet18", "pretrained": False, "size": 32, "batch_size": 16, "freeze_epochs": 1, "epochs": 1,
        "progress": False}
CHROMIUM = Path("/usr/bin/chromium")
PNG = b"\x89PNG\r\n\x1a\n"


def _fixture(slug: str, root: Path) -> Path:
    folder = root / slug
    if not folder.is_dir():
        competition.get(slug).make_fixture(folder, n_train=64, n_test=8, seed=0)
        api.prepare(slug, folder, quiet=True)
    return folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("interpret-data")


@pytest.fixture(scope="module", params=[BINARY, MULTICLASS, MULTILABEL])
def trained(request, data_root, tmp_path_factory):
    slug = request.param
    folder = _fixture(slug, data_root)
    run = api.train(slug, folder, runs_dir=tmp_path_factory.mktemp("runs"), **TINY)
    return competition.get(slug), folder, run.path


def _valid_png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG, path
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def _predictions(comp, run_dir: Path):
    table = pd.read_csv(run_dir / "valid_predictions.csv", dtype={"id": str})
    y, p = validation.read_prediction_table(comp, table, "tta")
    return table["id"].tolist(), y.astype(np.float64), p.astype(np.float64)


def test_training_writes_the_plots_that_fit_the_task(trained):
    comp, _, run_dir = trained
    expected = {"interpret_probabilities.png", "interpret_top_losses.png"}
    if isinstance(comp.task, (tasks.Binary, tasks.MultiClass)):
        expected |= {"interpret_confusion.png"}
    if isinstance(comp.task, tasks.MultiLabel):
        expected |= {"interpret_thresholds.png"}
    assert {p.name for p in run_dir.glob("interpret_*.png")} == expected
    for name in expected:
        width, height = _valid_png(run_dir / name)
        assert width >= 300 and height >= 200, name
    summary = json.loads((run_dir / "interpret.json").read_text())
    assert {p["file"] for p in summary["plots"]} == expected and summary["notes"] == []
    ids, y, p = _predictions(comp, run_dir)
    assert summary["n_valid"] == len(ids) > 0
    confused = run_dir / "interpret_confused.csv"
    if isinstance(comp.task, tasks.MultiLabel):
        assert not confused.exists()
        return
    if isinstance(comp.task, tasks.Binary):
        wrong = int(((p[:, 0] > 0.5) != (y[:, 0] > 0.5)).sum())
    else:
        wrong = int((p.argmax(1) != y.argmax(1)).sum())
    pairs = pd.read_csv(confused)
    assert list(pairs.columns) == ["actual", "predicted", "count"]
    assert pairs["count"].sum() == wrong and (pairs["actual"] != pairs["predicted"]).all()
    assert list(pairs["count"]) == sorted(pairs["count"], reverse=True)


def test_top_losses_are_the_items_with_the_highest_loss(trained):
    comp, _, run_dir = trained
    ids, y, p = _predictions(comp, run_dir)
    q = np.clip(p, 1e-7, 1 - 1e-7)
    if isinstance(comp.task, tasks.MultiClass):
        loss = -np.log(np.clip(p[np.arange(len(p)), y.argmax(1)], 1e-15, 1))
    else:  # binary and multi-label: binary cross-entropy, averaged over the outputs
        loss = -(y * np.log(q) + (1 - y) * np.log(1 - q)).mean(1)
    rows = json.loads((run_dir / "interpret.json").read_text())["top_losses"]
    assert len(rows) == min(interpret.TOP_LOSSES, len(ids))
    assert np.allclose([r["loss"] for r in rows], np.sort(loss)[::-1][:len(rows)], rtol=1e-5)
    for r in rows:
        i = ids.index(r["id"])
        assert r["actual"] == gallery.label_text(comp.task, comp.classes, y[i], comp.negative_class)


def test_report_html_is_one_self_contained_file_with_the_run(trained):
    comp, _, run_dir = trained
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    recipe = json.loads((run_dir / "config.json").read_text())["recipe"]
    for field in ("backbone", "size", "batch_size", "tta", "lr", "min_scale"):
        assert f"<td>{field}</td><td" in text and f">{html_report.fmt(recipe[field])}</td>" in text, field
    assert "resnet18" in text and comp.metric_name in text and "frozen" in text and "torch" in text
    sources = re.findall(r'src="([^"]*)"', text)
    summary = json.loads((run_dir / "interpret.json").read_text())
    assert len(sources) == len(summary["plots"]) + 1  # and history.png
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG
    lowered = text.lower()
    for external in ("http://", "https://", "<link", "url(", "@import", "src='", "file:"):
        assert external not in lowered, external
    report = json.loads((run_dir / "report.json").read_text())
    assert html_report.fmt(report["with_tta"][comp.metric_name]) in text
    # the weights first, then the pictures: a report that fails never costs the model (issue 20)
    assert (run_dir / "report.html").stat().st_mtime_ns >= (run_dir / "model.pt").stat().st_mtime_ns


@pytest.mark.parametrize("trained", [MULTILABEL], indirect=True)
def test_threshold_curves_pass_through_the_tuned_score(trained):
    comp, _, run_dir = trained
    _, y, p = _predictions(comp, run_dir)
    post = json.loads((run_dir / "report.json").read_text())["post"]
    grid, scores = interpret.threshold_curves(comp, y, p, post)
    assert scores.shape == (len(comp.classes), len(grid))
    tuned = comp.metric(y, p, post)
    for c, t in enumerate(post["thresholds"]):
        assert scores[c, np.flatnonzero(np.isclose(grid, t))[0]] == pytest.approx(tuned)
    assert scores.min() < scores.max(), "moving a threshold changes the score somewhere"


def test_a_confusion_matrix_of_many_classes_shows_the_most_confused(tmp_path):
    comp = competition.get("dog-breed-identification")
    k = len(comp.classes)
    assert k > interpret.MAX_CLASSES
    actual = np.repeat(np.arange(k), 2)
    predicted = actual.copy()
    predicted[[10, 11, 50, 200]] = [99, 99, 7, 3]  # classes 5 -> 99 (twice), 25 -> 7, 100 -> 3
    y, probs = np.eye(k)[actual], np.eye(k)[predicted] * 0.9 + 0.1 / k
    counts = interpret.confusion(comp, y, probs)
    assert counts.sum() == len(actual) and np.trace(counts) == len(actual) - 4
    pairs = interpret.most_confused(counts, interpret.class_names(comp))
    assert pairs[0] == {"actual": comp.classes[5], "predicted": comp.classes[99], "count": 2} and len(pairs) == 3
    shown = interpret.shown_classes(counts)
    assert len(shown) == interpret.MAX_CLASSES and {3, 5, 7, 25, 99, 100} <= set(shown.tolist())
    _valid_png(interpret.confusion_plot(comp, counts, tmp_path / "c.png", len(actual)))


def test_a_run_without_validation_items_says_so_and_draws_nothing(data_root, tmp_path):
    folder = _fixture(MULTICLASS, data_root)
    run = api.train(MULTICLASS, folder, runs_dir=tmp_path / "runs", **{**TINY, "valid_frac": 0.0, "epochs": 0})
    assert not run.file("valid_predictions.csv").exists()
    assert not list(run.path.glob("interpret_*"))
    notes = json.loads(run.file("interpret.json").read_text())["notes"]
    assert len(notes) == 1 and "--valid-frac 0" in notes[0]
    text = run.file("report.html").read_text()
    assert "--valid-frac 0" in text and "Confusion matrix" not in text and "Top losses" not in text
    assert text.count("<img") == 1  # history.png only


def test_interpret_from_the_run_folder_alone(trained, tmp_path, capsys):
    comp, _, run_dir = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    made = {p.name for p in copy.glob("interpret*")} | {"report.html", "history.png"}
    for name in made:
        (copy / name).unlink()
    assert cli.main(["interpret", str(copy)]) == 0
    assert {p.name for p in copy.glob("interpret*")} | {"report.html", "history.png"} == made
    assert set(capsys.readouterr().out.split()) == {str(copy / n) for n in made - {"history.png"}}
    _valid_png(copy / "history.png")
    written = api.interpret(copy, data_dir=tmp_path / "moved-away", show=False)
    assert not (copy / "interpret_top_losses.png").exists(), "no stale top-loss picture"
    assert copy / "interpret_probabilities.png" in written and copy / "report.html" in written
    notes = json.loads((copy / "interpret.json").read_text())["notes"]
    assert any("no top-loss images" in n for n in notes)
    assert "no top-loss images" in (copy / "report.html").read_text()


def test_report_escapes_what_it_shows(trained, tmp_path):
    _, _, run_dir = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["split_notes"] = ['<script>alert("x")</script> & <b>bold</b>']
    config["options"]["post_from"] = '"><img src=x onerror=alert(1)>'
    (copy / "config.json").write_text(json.dumps(config))
    text = html_report.write(runs.Run(copy), competition.get(config["competition"])).read_text()
    assert "<script>alert" not in text and "<b>bold" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in text


def test_show_batch_gives_the_training_inputs_with_their_labels(data_root, tmp_path):
    comp = competition.get(MULTICLASS)
    folder = _fixture(MULTICLASS, data_root)
    plain = {"size": 32, "presize": 32, "min_scale": 1.0, "flip": False, "dihedral": False, "batch_size": 8}
    _, recipe, options = api.settings(MULTICLASS, {**plain, "progress": False})
    pixels, y = show_batch.augmented_batch(comp, folder, recipe, options, n=10)
    assert pixels.shape == (10, 32, 32, 3) and y.shape == (10, len(comp.classes))
    items = data.train_items(comp, folder)
    array = cache.load_items(comp, folder, items, 32, progress=False).astype(np.float32)
    targets = comp.targets(items)
    for image, label in zip(pixels, y):  # without augmentation each input is a cached item, de-normalised
        distance = np.abs(array - image).reshape(len(array), -1).max(1)
        match = int(distance.argmin())
        assert distance[match] < 0.01, "de-normalised back to the cache's 0-255 values"
        assert (targets[match] == label).all(), "each input with its own label"
    augmented, _ = show_batch.augmented_batch(comp, folder, recipe.replace(min_scale=0.35, flip=True), options, n=4)
    assert np.abs(augmented - pixels[:4]).max() > 10, "the recipe's augmentation is applied"
    out = api.show_batch(MULTICLASS, folder, size=32, batch_size=8, progress=False)
    assert out == Path(f"show_batch-{comp.slug}.png") and _valid_png(out)[0] >= 300
    assert not Path("runs").exists() and sorted(p.name for p in Path.cwd().iterdir()) == [out.name]


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (Debian: apt-get install -y chromium)")
def test_report_renders_in_a_headless_browser(trained, tmp_path):
    _, _, run_dir = trained
    page = (run_dir / "report.html").resolve().as_uri()
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run(base + ["--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, "Chromium rendered no page"
    counts = dict(re.findall(r'(data-images(?:-loaded)?)="(\d+)"', body.group(1)))
    expected = len(json.loads((run_dir / "interpret.json").read_text())["plots"]) + 1
    assert counts == {"data-images": str(expected), "data-images-loaded": str(expected)}, counts
    assert dom.count('src="data:image/png;base64,') == expected
    shot = tmp_path / "shot.png"
    subprocess.run(base + ["--window-size=1200,2400", f"--screenshot={shot}", page], capture_output=True,
                   timeout=120)
    with Image.open(shot) as im:
        grey = np.asarray(im.convert("L"), np.float32)
    assert grey.shape == (2400, 1200)
    assert grey.std() > 10 and (grey < 100).mean() > 0.005 and (grey > 240).mean() > 0.3, "not blank"
