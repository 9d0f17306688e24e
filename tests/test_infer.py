"""Competitions without a module: inferred from generated data folders laid out as Kaggle serves
them (one per layout and task), refused in one line naming the file and the settling flag when
ambiguous, run end to end and rebuilt from the run folder alone, and written as a module by
`kaggletools new` that passes the contract and the demo as a plugin."""
from __future__ import annotations

import inspect
import shutil
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kaggletools import api
from kaggletools.cli import app
from kaggletools.competition import fixtures, infer, inferred, module_writer
from kaggletools.errors import CompetitionError, OptionError
from kaggletools.options import Inference

SHAPES = ("cross", "ring", "disc")  # class names that are not alphabetical in the order written
REPO = Path(__file__).resolve().parents[1]


def _images(n: int, k: int, seed: int = 0, side: int = 32, fmt: str = "JPEG"):
    rng = np.random.default_rng(seed)
    labels = fixtures.balanced_labels(n, k, rng)
    ids = fixtures.hex_ids(n, rng, 10)
    return ids, labels, {i: fixtures.encode(fixtures.class_image(int(c), k, rng, side=side), fmt)
                         for i, c in zip(ids, labels)}


def _put(folder: Path, files: dict[str, bytes]) -> None:
    for name, payload in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(payload)


def class_folders(folder: Path, n=36, n_test=12, sample=True) -> Path:
    """train/<class>/<id>.png, test/<id>.png, sample_submission.csv `file,species`."""
    ids, labels, png = _images(n + n_test, 3, fmt="PNG")
    _put(folder, {f"train/{SHAPES[c]}/{i}.png": png[i] for i, c in zip(ids[:n], labels[:n])})
    _put(folder, {f"test/{i}.png": png[i] for i in ids[n:]})
    if sample:
        pd.DataFrame({"file": [f"{i}.png" for i in ids[n:]], "species": SHAPES[0]}).to_csv(
            folder / "sample_submission.csv", index=False)
    return folder


def binary_csv(folder: Path, n=40, n_test=12) -> Path:
    """train/<id>.jpg labelled by train.csv `id,has_ring` (ids without suffix), test/, sample `id,has_ring`."""
    ids, labels, jpeg = _images(n + n_test, 2)
    _put(folder, {f"train/{i}.jpg": jpeg[i] for i in ids[:n]} | {f"test/{i}.jpg": jpeg[i] for i in ids[n:]})
    pd.DataFrame({"id": ids[:n], "has_ring": labels[:n]}).to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"id": ids[n:], "has_ring": 0.5}).to_csv(folder / "sample_submission.csv", index=False)
    return folder


def tags_csv(folder: Path, n=40, n_test=12) -> Path:
    """train/<id>.jpg labelled by labels.csv `image_name,tags` (space-separated), sample `image_name,tags`."""
    rng = np.random.default_rng(1)
    rows = fixtures.random_tags(n + n_test, 4, rng)
    ids = fixtures.hex_ids(n + n_test, rng, 10)
    names = ("sky", "tree", "water", "road")
    _put(folder, {f"train/{i}.jpg": fixtures.encode(fixtures.tags_image(r, 4, rng, side=32))
                  for i, r in zip(ids[:n], rows)})
    _put(folder, {f"test/{i}.jpg": fixtures.encode(fixtures.tags_image(r, 4, rng, side=32))
                  for i, r in zip(ids[n:], rows[n:])})
    pd.DataFrame({"image_name": ids[:n], "tags": [" ".join(names[c] for c in r) for r in rows[:n]]}).to_csv(
        folder / "labels.csv", index=False)
    pd.DataFrame({"image_name": ids[n:], "tags": "sky"}).to_csv(folder / "sample_submission.csv", index=False)
    return folder


def column_per_class(folder: Path, n=36, n_test=12) -> Path:
    """images/<id>.jpg, train.csv `image_id` + one 0/1 column per class (ids with suffix), sample
    with one probability column per class in another order."""
    ids, labels, jpeg = _images(n + n_test, 3)
    _put(folder, {f"images/{i}.jpg": jpeg[i] for i in ids[:n]} | {f"test_images/{i}.jpg": jpeg[i] for i in ids[n:]})
    onehot = pd.DataFrame(np.eye(3, dtype=int)[labels[:n]], columns=list(SHAPES))
    onehot.insert(0, "image_id", [f"{i}.jpg" for i in ids[:n]])
    onehot.to_csv(folder / "train.csv", index=False)
    sample = pd.DataFrame({"image_id": [f"{i}.jpg" for i in ids[n:]], "ring": 1 / 3, "cross": 1 / 3, "disc": 1 / 3})
    sample.to_csv(folder / "sample_submission.csv", index=False)
    return folder


def zipped(folder: Path, slug: str, n=36, n_test=12) -> Path:
    """Kaggle's all-files download: <slug>.zip holding train.zip (train/<id>.jpg), test.zip,
    labels.csv.zip (`id,kind`) and sample_submission.csv."""
    ids, labels, jpeg = _images(n + n_test, 3)
    text = pd.DataFrame({"id": ids[:n], "kind": [SHAPES[c] for c in labels[:n]]}).to_csv(index=False)
    sample = pd.DataFrame({"id": ids[n:], "kind": SHAPES[0]}).to_csv(index=False)
    fixtures.write_zip(folder / f"{slug}.zip", {
        "train.zip": fixtures.zip_bytes({f"train/{i}.jpg": jpeg[i] for i in ids[:n]}),
        "test.zip": fixtures.zip_bytes({f"test/{i}.jpg": jpeg[i] for i in ids[n:]}),
        "labels.csv.zip": fixtures.zip_bytes({"labels.csv": text.encode()}),
        "sample_submission.csv": sample.encode()})
    return folder


def drivers(folder: Path, n=48, n_test=12) -> Path:
    """State Farm's layout: imgs/train/c<k>/img_<n>.jpg, imgs/test/, driver_imgs_list.csv
    `subject,classname,img`, sample `img,c0,c1,c2`."""
    ids, labels, jpeg = _images(n + n_test, 3)
    names = [f"img_{i}.jpg" for i in ids]
    _put(folder, {f"imgs/train/c{c}/{m}": jpeg[i] for i, m, c in zip(ids[:n], names, labels[:n])})
    _put(folder, {f"imgs/test/{m}": jpeg[i] for i, m in zip(ids[n:], names[n:])})
    pd.DataFrame({"subject": [f"p{j % 6:03d}" for j in range(n)], "classname": [f"c{c}" for c in labels[:n]],
                  "img": names[:n]}).to_csv(folder / "driver_imgs_list.csv", index=False)
    sample = pd.DataFrame({"img": names[n:], "c0": 1 / 3, "c1": 1 / 3, "c2": 1 / 3})
    sample.to_csv(folder / "sample_submission.csv", index=False)
    return folder


# -- one inferred fixture per layout and task --------------------------------------------------------
def test_class_folders_are_a_multiclass_competition_named_like_the_sample(tmp_path):
    spec = infer.infer("seedlings-like", class_folders(tmp_path / "d"))
    assert (spec.layout, spec.task, spec.classes, spec.format) == ("folders", "multiclass", tuple(sorted(SHAPES)),
                                                                   "label")
    assert (spec.submission_id, spec.submission_label, spec.metric_name) == ("file", "species", "accuracy")
    comp = inferred.build(spec)
    train, test = comp.items(tmp_path / "d", "train"), comp.items(tmp_path / "d", "test")
    assert len(train) == 36 and len(test) == 12 and test["id"].str.endswith(".png").all()
    assert comp.targets(train).sum() == 36 and (comp.targets(train).sum(0) >= 11).all()
    assert list(comp.submission(list(test["id"]), np.eye(3)[[0] * 12], {}).columns) == ["file", "species"]


def test_a_binary_csv_with_ids_without_suffix(tmp_path):
    spec = infer.infer("rings", binary_csv(tmp_path / "d"))
    assert (spec.layout, spec.task, spec.classes, spec.format) == ("csv", "binary", ("has_ring",), "binary")
    assert spec.metric_name == "log_loss" and spec.test_list == "sample_submission.csv" and not spec.keep_suffix
    comp = inferred.build(spec)
    assert comp.targets(comp.items(tmp_path / "d", "train")).shape == (40, 1)
    assert comp.submission_columns() == ["id", "has_ring"] and not comp.greater_is_better


def test_space_separated_tags_are_multilabel(tmp_path):
    spec = infer.infer("tagged", tags_csv(tmp_path / "d"))
    assert (spec.layout, spec.task, spec.format, spec.metric_name) == ("tags", "multilabel", "tags", "f2")
    assert set(spec.classes) == {"sky", "tree", "water", "road"} and spec.id_column == "image_name"
    comp = inferred.build(spec)
    y = comp.targets(comp.items(tmp_path / "d", "train"))
    assert y.shape == (40, 4) and (y.sum(1) >= 1).all() and (y.sum(1) > 1).any()


def test_one_column_per_class_takes_the_sample_submissions_class_order(tmp_path):
    spec = infer.infer("shapes", column_per_class(tmp_path / "d"))
    assert (spec.layout, spec.task, spec.format) == ("columns", "multiclass", "probs")
    assert spec.classes == ("ring", "cross", "disc") and (spec.train, spec.test) == ("images", "test_images")
    comp = inferred.build(spec)
    y = comp.targets(comp.items(tmp_path / "d", "train"))
    assert y.shape == (36, 3) and (y.sum(1) == 1).all()
    assert comp.submission_columns() == ["image_id", "ring", "cross", "disc"]
    assert comp.items(tmp_path / "d", "test")["id"].str.endswith(".jpg").all()


def test_nested_zips_are_unpacked_first(tmp_path):
    folder = zipped(tmp_path / "packed", "packed")
    spec = infer.infer("packed", folder)
    assert (spec.layout, spec.task, spec.labels, spec.test) == ("csv", "multiclass", "labels.csv", "test")
    assert len(inferred.build(spec).items(folder, "test")) == 12


def test_group_by_takes_a_column_of_another_csv_naming_the_images(tmp_path):
    folder = drivers(tmp_path / "d")
    spec = infer.infer("drivers", folder, group_by="subject")
    assert (spec.layout, spec.format, spec.train, spec.test) == ("folders", "probs", "imgs/train", "imgs/test")
    assert (spec.group_file, spec.group_id, spec.group_column) == ("driver_imgs_list.csv", "img", "subject")
    comp = inferred.build(spec)
    items = comp.items(folder, "train")
    assert items["subject"].nunique() == 6 and comp.group_column == "subject"
    from kaggletools.data import items as data

    if "group_by" not in inspect.signature(data.split).parameters:
        pytest.skip("grouped splits (data.items.split(group_by=...)) are not in this tree yet")
    made = data.split(comp, items, 0.25, 0, group_by="subject")
    valid = set(items["subject"][made.valid])
    assert valid and not valid & set(items["subject"][~made.valid])


def test_settling_flags_and_the_metric_by_name(tmp_path):
    folder = binary_csv(tmp_path / "d")
    pd.read_csv(folder / "train.csv").to_csv(folder / "copy.csv", index=False)
    spec = infer.infer("rings", folder, Inference(labels="copy.csv", metric="roc_auc"))
    assert spec.labels == "copy.csv" and spec.metric == "roc_auc"
    comp = inferred.build(spec)
    assert comp.metric_name == "roc_auc" and comp.greater_is_better
    assert comp.metric(np.array([[0.], [1.]]), np.array([[0.2], [0.9]])) == 1.0


# -- refusals: one line naming the file and the flag ---------------------------------------------------
@pytest.mark.parametrize("make, flag, named", [
    ("two_label_files", "--labels FILE", "train.csv"),
    ("two_label_columns", "--label-column", "train.csv"),
    ("no_label_file", "--labels FILE", "train"),
    ("two_train_folders", "--images DIR", "train_a"),
    ("no_sample_no_test", "--test DIR", "sample_submission"),
])
def test_an_ambiguous_folder_is_refused_naming_the_file_and_the_flag(tmp_path, make, flag, named):
    folder = binary_csv(tmp_path / "d")
    table = pd.read_csv(folder / "train.csv")
    if make == "two_label_files":
        table.to_csv(folder / "labels_v2.csv", index=False)
    elif make == "two_label_columns":
        table.assign(subject=["a", "b"] * 20).to_csv(folder / "train.csv", index=False)
        (folder / "sample_submission.csv").unlink()
    elif make == "no_label_file":
        (folder / "train.csv").unlink()
    elif make == "two_train_folders":
        (folder / "train").rename(folder / "train_a")
        (folder / "train_b").mkdir()
        first = sorted((folder / "train_a").iterdir())[0]
        (folder / "train_b" / first.name).write_bytes(first.read_bytes())
    else:
        (folder / "sample_submission.csv").unlink()
        for f in (folder / "test").iterdir():
            f.unlink()
        (folder / "test").rmdir()
    with pytest.raises(CompetitionError) as e:
        infer.infer("rings", folder, need_test=True)
    message = str(e.value)
    assert flag in message and named in message and "\n" not in message, message


def test_the_command_line_refuses_in_one_line_and_flags_only_fit_inferred_competitions(tmp_path, capsys):
    folder = binary_csv(tmp_path / "d")
    pd.read_csv(folder / "train.csv").to_csv(folder / "other.csv", index=False)
    assert app.main(["check", "rings", "--data", str(folder), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--labels FILE" in err and "other.csv" in err
    with pytest.raises(OptionError, match="has a module"):
        api.settings("plant-seedlings-classification", {"labels": "x.csv"}, folder)


# -- end to end, and the run folder alone --------------------------------------------------------------
QUICK = ["--backbone", "mobilenet_v2", "--no-pretrained", "--size", "32", "--batch-size", "16",
         "--freeze-epochs", "1", "--epochs", "1", "--tta", "none", "-q"]


def test_run_end_to_end_then_predict_from_the_run_folder_alone(tmp_path, capsys):
    from kaggletools.score import submission

    folder = column_per_class(tmp_path / "d")
    assert app.main(["run", "leaf-shapes", "--data", str(folder), "--out", str(tmp_path / "sub.csv"), *QUICK]) == 0
    out = capsys.readouterr().out
    table = submission.read(tmp_path / "sub.csv")
    assert list(table.columns) == ["image_id", "ring", "cross", "disc"] and len(table) == 12
    run_dir = next((tmp_path / "runs" / "leaf-shapes").iterdir())
    assert run_dir.name in out
    config = api.runs(runs_dir=tmp_path / "runs")
    assert config["metric"].tolist() == ["log_loss"]
    # predict rebuilds the competition from what the run recorded (no flag, no folder search)
    again = api.predict(run_dir, out=tmp_path / "again.csv", progress=False)
    rebuilt = inferred.for_run({"competition": "leaf-shapes", **_recorded(run_dir)})
    assert rebuilt.classes == ("ring", "cross", "disc") and rebuilt.id_column == "image_id"
    api.validate(rebuilt, again, folder)
    # a run stopped before its weights resumes with the competition its folder recorded

    from kaggletools.steps import train as training

    stopped = tmp_path / "runs" / "leaf-shapes" / "stopped"
    shutil.copytree(run_dir, stopped)
    (stopped / "model.pt").unlink()
    assert training.resume_settings(stopped).competition.submission_columns() == ["image_id", "ring", "cross",
                                                                                   "disc"]


def _recorded(run_dir: Path) -> dict:
    import json

    return {"inferred": json.loads((run_dir / "config.json").read_text())["inferred"]}


# -- kaggletools new: the module the inference found, as a plugin --------------------------------------
def test_new_writes_a_module_that_passes_the_contract_and_the_demo_as_a_plugin(tmp_path):
    folder = drivers(tmp_path / "data")
    module = tmp_path / "pkg" / "distracted_drivers.py"
    assert app.main(["new", "distracted-drivers", "--data", str(folder), "--group-by", "subject",
                     "--out", str(module), "-q"]) == 0
    text = module.read_text()
    assert "class DistractedDrivers(MultiClassLogLoss)" in text and "layouts.labelled_by_folder" in text
    assert 'group_column = "subject"' in text.replace("'", '"')
    info = tmp_path / "pkg" / "distracted_drivers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: distracted_drivers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[kaggletools.competitions]\ndrivers = distracted_drivers\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "pkg")}
    quick = ("from kaggletools.steps import demo; "
             "demo.main('distracted-drivers', 'demo', progress=False, n_train=120, n_test=40)")
    demo = subprocess.run([sys.executable, "-c", quick], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "validated" in demo.stdout and "NOT beaten" not in demo.stdout, demo.stdout
    contract = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               str(REPO / "tests" / "test_contract.py"), "-k", "distracted and not round_trip"],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
    assert contract.returncode == 0 and " passed" in contract.stdout, contract.stdout[-3000:]


def one_folder(folder: Path) -> Path:
    """Plant Pathology's layout: images/ holds both, train.csv labels some (one column per class),
    test.csv lists the others (ids alone: not a label file), the sample submission too."""
    folder = column_per_class(folder)
    for f in (folder / "test_images").iterdir():
        f.rename(folder / "images" / f.name)
    (folder / "test_images").rmdir()
    pd.read_csv(folder / "sample_submission.csv")[["image_id"]].to_csv(folder / "test.csv", index=False)
    return folder


def test_train_and_test_images_in_one_folder_with_a_test_list_beside(tmp_path):
    folder = one_folder(tmp_path / "d")
    spec = infer.infer("pathology-like", folder, need_test=True)
    assert (spec.labels, spec.train, spec.test, spec.shared) == ("train.csv", "images", "images", True)
    comp = inferred.build(spec)
    assert len(comp.items(folder, "train")) == 36 and len(comp.items(folder, "test")) == 12
    out = api.sample("pathology-like", folder, n_train=12, n_test=4)  # test.csv keeps the chosen test ids
    assert sorted(pd.read_csv(out / "test.csv")["image_id"]) == sorted(pd.read_csv(out / "sample_submission.csv")["image_id"])
    assert len(pd.read_csv(out / "test.csv")) == 4


MIRRORED = ("layout", "task", "format", "train", "test", "labels", "id_column", "label_column", "submission_id",
            "submission_label", "keep_suffix", "shared", "group_file", "group_id", "group_column", "sample")
CHECK_MIRROR = """
import importlib.util, json, sys
from pathlib import Path
from kaggletools.competition import infer, inferred, registry
from kaggletools.options import Inference
module, slug, fixture, group_by, fields = sys.argv[1:6]
spec = importlib.util.spec_from_file_location(Path(module).stem, module)
spec.loader.exec_module(importlib.util.module_from_spec(spec))
comp = registry.get(slug)
answers = comp.make_fixture(Path(fixture), 40, 12, 0)
comp.prepare(Path(fixture))
again = infer.infer(slug, Path(fixture), Inference(), group_by).to_dict()
print(json.dumps({"spec": {k: again[k] for k in fields.split(",")}, "train": len(comp.items(fixture, "train")),
                  "test": len(comp.items(fixture, "test")), "answers": list(answers.columns),
                  "columns": comp.submission_columns()}))
"""


@pytest.mark.parametrize("make, group_by, metric", [
    (class_folders, "", ""), (binary_csv, "", ""), (tags_csv, "", ""), (column_per_class, "", ""), (one_folder, "", ""),
    (drivers, "subject", ""), (binary_csv, "", "accuracy"), (class_folders, "", "map@2"), (tags_csv, "", "f1_macro")])
def test_new_writes_a_fixture_that_mirrors_the_real_layout(tmp_path, make, group_by, metric):
    """The module's generated download is inferred again as the same competition."""
    import json

    from kaggletools.steps import infer as inferring

    folder = make(tmp_path / "real")
    slug = f"mirror-{make.__name__.replace('_', '-')}"
    module = inferring.new(slug, folder, tmp_path / "module.py", group_by=group_by, show=False,
                           **({"metric": metric} if metric else {}))
    real = infer.infer(slug, folder, Inference(), group_by).to_dict()
    done = subprocess.run([sys.executable, "-c", CHECK_MIRROR, str(module), slug, str(tmp_path / "fixture"), group_by,
                           ",".join(MIRRORED)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["spec"] == {k: real[k] for k in MIRRORED}
    assert (found["train"], found["test"]) == (40, 12) and found["answers"] == found["columns"]


def test_a_metric_changes_what_the_submission_holds_where_it_must(tmp_path):
    hard = inferred.build(infer.infer("rings", binary_csv(tmp_path / "b"), Inference(metric="accuracy")))
    assert hard.submission(["a", "b"], np.array([[0.7], [0.2]]), {})["has_ring"].tolist() == [1, 0]
    top = inferred.build(infer.infer("shapes", class_folders(tmp_path / "c"), Inference(metric="map@2")))
    table = top.submission(["a"], np.array([[0.1, 0.6, 0.3]]), {})
    assert table["species"].tolist() == ["disc ring"] and top.metric_name == "map@2"
    assert top.read_submission(table).tolist() == [[0.0, 1.0, 0.5]]
    assert top.metric(np.array([[0., 0., 1.]]), top.read_submission(table)) == 0.5
    with pytest.raises(CompetitionError, match="--metric qwk scores multiclass"):
        inferred.build(infer.infer("rings", tmp_path / "b", Inference(metric="qwk")))


def test_state_farms_download_is_inferred_under_a_slug_without_a_module(tmp_path):
    """The README's example: State Farm's Kaggle-shaped download (its module's generator), read
    by the inference with --group-by subject as the module reads it."""
    from kaggletools.competition import registry

    module = registry.get("state-farm-distracted-driver-detection")
    folder = tmp_path / "state-farm"
    module.make_fixture(folder, n_train=60, n_test=20, seed=0)
    spec = infer.infer("distracted-drivers", folder, group_by="subject", need_test=True)
    assert (spec.layout, spec.format, spec.classes) == ("folders", "probs", module.classes)
    assert (spec.group_file, spec.group_column, spec.submission_id) == ("driver_imgs_list.csv", "subject", "img")
    comp = inferred.build(spec)
    ours, theirs = comp.items(folder, "train"), module.items(folder, "train")
    assert ours.set_index("id")["subject"].sort_index().equals(theirs.set_index("id")["subject"].sort_index())
    assert sorted(comp.items(folder, "test")["id"]) == sorted(module.items(folder, "test")["id"])


def test_check_reports_the_inference_and_the_groups_per_side(tmp_path, capsys):
    import json

    folder = drivers(tmp_path / "d")
    assert app.main(["check", "drivers", "--data", str(folder), "--group-by", "subject", "--backbone", "mobilenet_v2",
                     "--no-pretrained", "--size", "32", "--batch-size", "8", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inferred"]["group_column"] == "subject" and report["inferred"]["layout"] == "folders"
    assert report["groups"]["shared"] == 0 and report["groups"]["valid"] >= 1


def test_class_names_with_spaces_are_names_not_tags_and_nesting_is_looked_through(tmp_path):
    """Plant Seedlings' species in a CSV (`Common Chickweed`: names, fewer rows than words), and a
    train.zip that unpacked as train/train/<id>.png."""
    folder = tmp_path / "d"
    species = ("Common Chickweed", "Common wheat", "Fat Hen")
    ids, labels, png = _images(36, 3, fmt="PNG")
    _put(folder, {f"train/train/{i}.png": png[i] for i in ids})
    pd.DataFrame({"file": [f"{i}.png" for i in ids], "species": [species[c] for c in labels]}).to_csv(
        folder / "labels.csv", index=False)
    spec = infer.infer("spaced", folder)
    assert (spec.task, spec.layout, spec.classes, spec.train) == ("multiclass", "csv", species, "train/train")
    assert len(inferred.build(spec).items(folder, "train")) == 36


def test_numbered_images_do_not_make_a_label_column_look_like_ids(tmp_path):
    """Invasive Species Monitoring: train/1.jpg ... labelled by `name,invasive` (0/1)."""
    folder = tmp_path / "d"
    ids, labels, jpeg = _images(30, 2)
    _put(folder, {f"train/{n}.jpg": jpeg[i] for n, i in enumerate(ids)})
    pd.DataFrame({"name": range(30), "invasive": labels}).to_csv(folder / "train_labels.csv", index=False)
    spec = infer.infer("invasive", folder)
    assert (spec.id_column, spec.label_column, spec.task, spec.classes) == ("name", "invasive", "binary", ("invasive",))


def test_sample_columns_may_name_classes_no_training_image_has(tmp_path):
    """Dog Breeds on a partial download: the sample's 120 columns, labels of a few breeds."""
    folder = zipped(tmp_path / "d", "d")
    infer.infer("breeds", folder)  # unpacked
    sample = pd.read_csv(folder / "sample_submission.csv")
    sample.assign(square=0.25, cross=0.25, disc=0.25, ring=0.25).drop(columns="kind").to_csv(
        folder / "sample_submission.csv", index=False)
    spec = infer.infer("breeds", folder)
    assert spec.format == "probs" and spec.classes == ("square", "cross", "disc", "ring")
    comp = inferred.build(spec)
    assert comp.targets(comp.items(folder, "train")).shape == (36, 4)


def test_a_misspelt_slug_without_a_data_folder_still_names_the_closest(capsys):
    assert app.main(["check", "dogscat"]) == 1
    err = capsys.readouterr().err
    assert "dogscats" in err and "--data DIR" in err and err.count("\n") == 1


def test_the_settling_flags_settle(tmp_path):
    folder = class_folders(tmp_path / "d")
    assert infer.infer("s", folder, Inference(classes="ring, disc,cross")).classes == ("ring", "disc", "cross")
    with pytest.raises(CompetitionError, match="--classes ring,disc is not the set"):
        infer.infer("s", folder, Inference(classes="ring,disc"))
    (folder / "train").rename(folder / "train_a")
    shutil.copytree(folder / "train_a", folder / "train_b")
    spec = infer.infer("s", folder, Inference(images="train_b", test="test"))
    assert (spec.train, spec.test) == ("train_b", "test")
    binary = binary_csv(tmp_path / "b")
    assert infer.infer("b", binary, Inference(task="multiclass")).classes == ("0", "1")


def test_validate_infers_a_slug_without_a_module_from_its_data_folder(tmp_path, capsys):
    folder = binary_csv(tmp_path / "d")
    sample = pd.read_csv(folder / "sample_submission.csv")
    sample.to_csv(tmp_path / "good.csv", index=False)
    sample.iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    assert app.main(["validate", "rings", str(tmp_path / "good.csv"), "--data", str(folder)]) == 0
    assert app.main(["validate", "rings", str(tmp_path / "short.csv"), "--data", str(folder)]) == 1
    assert "short.csv" in capsys.readouterr().err


def test_sample_of_an_inferred_competition_is_a_data_folder_inferred_alike(tmp_path):
    folder = drivers(tmp_path / "d")
    out = api.sample("drivers", folder, n_train=24, n_test=6)
    assert out.parent == folder  # <data>/sample-24/, which the next inference on <data> leaves out
    spec = infer.infer("drivers", out, group_by="subject")
    assert (spec.layout, spec.group_file) == ("folders", "driver_imgs_list.csv")
    assert len(inferred.build(spec).items(out, "train")) == 24
    assert infer.infer("drivers", folder).train == "imgs/train"


def test_run_download_of_a_slug_without_a_module_downloads_before_inferring(tmp_path, monkeypatch):
    """`run SLUG --download` on the loopback stand-in Kaggle: the download comes first, then the
    inference reads it, then the loop."""
    from fake_kaggle import fake_kaggle

    made = binary_csv(tmp_path / "made")
    files = {name: (made / name).read_bytes() for name in ("train.csv", "sample_submission.csv")}
    for folder in ("train", "test"):
        files[f"{folder}.zip"] = fixtures.zip_bytes({f"{folder}/{p.name}": p.read_bytes()
                                                     for p in sorted((made / folder).iterdir())})
    with fake_kaggle(tmp_path, files, monkeypatch=monkeypatch, slug="ring-spotting"):
        result = api.run("ring-spotting", tmp_path / "data", download_data=True, backbone="mobilenet_v2",
                         pretrained=False, size=32, batch_size=16, freeze_epochs=1, epochs=0, tta="none",
                         progress=False, out=tmp_path / "sub.csv")
    assert Path(result["submission"]).is_file() and (tmp_path / "data" / "train.csv").is_file()
    assert pd.read_csv(tmp_path / "sub.csv").columns.tolist() == ["id", "has_ring"]


def test_group_by_a_column_of_the_label_file_itself(tmp_path):
    """SIIM-ISIC's layout: jpeg/train/<id>.jpg, train.csv `image_name,patient_id,sex,target`, the
    sample `image_name,target` saying which column is the label."""
    folder = tmp_path / "d"
    ids, labels, jpeg = _images(40, 2)
    _put(folder, {f"jpeg/train/{i}.jpg": jpeg[i] for i in ids[:32]} | {f"jpeg/test/{i}.jpg": jpeg[i] for i in ids[32:]})
    pd.DataFrame({"image_name": ids[:32], "patient_id": [f"IP_{j % 5}" for j in range(32)], "sex": "male",
                  "target": labels[:32]}).to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"image_name": ids[32:], "target": 0}).to_csv(folder / "sample_submission.csv", index=False)
    spec = infer.infer("melanoma", folder, group_by="patient_id", need_test=True)
    assert (spec.task, spec.label_column, spec.train, spec.test) == ("binary", "target", "jpeg/train", "jpeg/test")
    assert (spec.group_file, spec.group_column) == ("train.csv", "patient_id")
    assert inferred.build(spec).items(folder, "train")["patient_id"].nunique() == 5
    assert module_writer._files(spec) == ["jpeg.zip", "train.csv", "sample_submission.csv"]   # train.csv once


@pytest.mark.parametrize("edit", [{"format": "bogus"}, {"task": 3}, {"classes": [1, 2]}, {"slug": None, "layout": None}])
def test_an_edited_record_is_one_line_naming_the_field(edit):
    record = inferred.Spec("s", "folders", "multiclass", ("a", "b"), "train").to_dict() | edit
    with pytest.raises(CompetitionError, match="recorded inference"):
        inferred.for_run({"competition": "s", "inferred": {k: v for k, v in record.items() if v is not None}})
