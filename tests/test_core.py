"""The shared layer on its own: images, cache, augmentation, TTA, models, runs, submissions,
and the bad inputs each with a clear error and nothing half-written."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from kaggletools import api
from kaggletools.data import cache
from kaggletools.competition import registry as competition
from kaggletools.data import items as data
from kaggletools.io import files
from kaggletools.io import images
from kaggletools.data import loaders
from kaggletools.model import network as models
from kaggletools.fit import tta as predict
from kaggletools.score import submission
from kaggletools.cli.app import main as cli
from kaggletools.errors import CompetitionError
from kaggletools.errors import RunError

REDUX = "dogs-vs-cats-redux-kernels-edition"


def jpeg(mode: str = "RGB", size=(60, 40), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else (color[0] if mode == "L" else (0, 255, 255, 0))).save(
        buf, "JPEG")
    return buf.getvalue()


# -- images -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_are_converted_to_rgb(tmp_path, mode):
    path = tmp_path / "x.jpg"
    path.write_bytes(jpeg(mode))
    assert images.read_rgb(path).shape == (40, 60, 3)


@pytest.mark.parametrize("payload,problem", [(b"", "empty"), (b"not a jpeg at all", "corrupt"),
                                             (jpeg(size=(300, 200))[:400], "corrupt")])
def test_bad_jpegs_name_the_file_and_the_fix(tmp_path, payload, problem):
    path = tmp_path / "cat.7.jpg"
    path.write_bytes(payload)
    with pytest.raises(images.ImageError, match=f"cat.7.jpg.*{problem}|cat.7.jpg.*(empty|truncated)") as e:
        images.read_rgb(path)
    assert "re-download" in str(e.value)


def test_reduced_size_decoding_keeps_at_least_the_side(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg(size=(1000, 800)))
    small = images.read_rgb(path, min_side=200)
    assert min(small.shape[:2]) >= 200 and small.shape[0] < 800
    assert images.square(small, 128).shape == (128, 128, 3)


def test_corrupt_training_image_stops_training_with_its_name(dogs_dir, tmp_path):
    bad = tmp_path / "data"
    files.link_sources(dogs_dir, bad, data.train_items(competition.get(REDUX), dogs_dir)["source"])
    (bad / "train" / "cat.0.jpg").unlink()
    (bad / "train" / "cat.0.jpg").write_bytes(b"\xff\xd8\xff garbage")
    rc = cli(["train", REDUX, "--data", str(bad), "--runs", str(tmp_path / "runs"), "--no-pretrained",
              "--backbone", "resnet18", "--size", "32", "--quiet"])
    assert rc == 1
    assert not list(cache.cache_root().glob("*partial*"))
    (folder,) = (tmp_path / "runs").glob("*/*")
    assert "cat.0.jpg" in (folder / "failed.json").read_text() and not (folder / "model.pt").exists()
    with pytest.raises(RunError, match="not a finished run.*failed"):
        api.predict(folder)


# -- cache --------------------------------------------------------------------------------------
def test_cache_decodes_once_and_rebuilds_when_a_source_changes(dogs_dir, tmp_path):
    comp = competition.get(REDUX)
    folder = tmp_path / "data"
    items = data.train_items(comp, dogs_dir)
    files.link_sources(dogs_dir, folder, items["source"])
    first = cache.load_items(comp, folder, items, 40, progress=False)
    assert first.shape == (len(items), 40, 40, 3) and first.dtype == np.uint8
    assert len(list(cache.cache_root().glob(f"{comp.slug}-40-*.npy"))) >= 1
    again = cache.load_items(comp, folder, items, 40, progress=False)
    assert again.filename == first.filename
    target = folder / items["source"].iloc[0]
    target.unlink()
    target.write_bytes(jpeg(size=(90, 90)))
    rebuilt = cache.load_items(comp, folder, items, 40, progress=False)
    assert rebuilt.filename != first.filename
    assert cache.load_items(comp, folder, items, 48, progress=False).shape[1] == 48


# -- augmentation and TTA -------------------------------------------------------------------------
def test_augment_is_one_warp_per_image_and_identity_without_randomness():
    x = torch.rand(4, 3, 40, 40)
    g = torch.Generator().manual_seed(0)
    out = loaders.augment(x, 32, g, min_scale=0.35, dihedral=True)
    assert out.shape == (4, 3, 32, 32)
    same = loaders.augment(x, 40, g, min_scale=1.0, flip=False)
    assert torch.allclose(same, x, atol=1e-5)


def test_relight_changes_each_image_by_one_brightness_and_contrast_within_the_bounds():
    """On the [0, 1] scale every image becomes c * (x - 0.5) + 0.5 + d, the same c and d in every
    channel, with c and d within --lighting's bounds, and about a quarter of the images keep each."""
    norm = loaders.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), scale=1.0)
    raw = torch.rand(400, 3, 8, 8)
    out = loaders.relight(norm(raw), norm, 0.2, torch.Generator().manual_seed(0))
    mean, std = torch.tensor(norm.mean).view(1, 3, 1, 1), torch.tensor(norm.std).view(1, 3, 1, 1)
    back = out * std + mean
    flat_x, flat_y = raw.flatten(2) - 0.5, back.flatten(2) - 0.5
    xc, yc = flat_x - flat_x.mean(2, keepdim=True), flat_y - flat_y.mean(2, keepdim=True)
    c = (xc * yc).sum(2) / (xc * xc).sum(2)                       # (images, channels) slopes
    d = (flat_y - c[..., None] * flat_x).mean(2)                  # intercepts
    assert torch.allclose(c, c[:, :1].expand_as(c), atol=1e-4) and torch.allclose(d, d[:, :1].expand_as(d), atol=1e-4)
    c, d = c[:, 0], d[:, 0]
    assert (c >= 0.8 - 1e-4).all() and (c <= 1.25 + 1e-4).all() and (d.abs() <= 0.1 + 1e-4).all()
    assert 0.15 < ((c - 1).abs() < 1e-5).float().mean() < 0.35   # contrast left alone with p 0.25
    assert 0.15 < (d.abs() < 1e-5).float().mean() < 0.35
    assert c.std() > 0.05 and d.std() > 0.02


def test_lighting_outside_0_to_1_is_refused_with_its_flag():
    from kaggletools.errors import OptionError
    from kaggletools.options import Recipe

    assert Recipe(lighting=0.2).check().lighting == 0.2
    with pytest.raises(OptionError, match="--lighting"):
        Recipe(lighting=1.0).check()


@pytest.mark.parametrize("level,n", [("none", 1), ("flip", 2), ("crops", 7), ("dihedral", 8)])
def test_tta_levels(level, n):
    views = predict.views(level)
    assert len(views) == n
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    outs = [v(x, 8) for v in views]
    assert all(o.shape == (2, 3, 8, 8) for o in outs)
    assert torch.equal(outs[0], x)
    if level == "dihedral":
        assert len({tuple(o[0, 0].flatten().tolist()) for o in outs}) == 8


def test_unknown_tta_level():
    with pytest.raises(ValueError, match="dihedral"):
        predict.views("rot45")


# -- models ----------------------------------------------------------------------------------------
def test_unknown_backbone_names_candidates():
    with pytest.raises(models.ModelError, match="resnet"):
        models.create("resnet35", 1, pretrained=False)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny"])
def test_any_torchvision_backbone_gets_a_new_head(name):
    net, info = models.create(name, 3, pretrained=False, n_extra=2)
    out = net(torch.rand(2, 3, 64, 64), torch.rand(2, 2))
    assert out.shape == (2, 3) and info.n_features > 0
    groups = models.param_groups(net, 1e-3, 100)
    assert [g["lr"] for g in groups] == pytest.approx([1e-5, 1e-4, 1e-3])


def test_offline_imagenet_weights_are_found_and_reported():
    net, info = models.create("mobilenet_v2", 1, pretrained=True)
    if info.weights is None:
        pytest.skip("no offline weights installed")
    assert info.weights_file in ("mobilenet_v2-b0353104.pth", "mobilenet_v2-7ebf99e0.pth")
    assert info.mean == pytest.approx((0.485, 0.456, 0.406))


# -- data ------------------------------------------------------------------------------------------
def test_empty_train_folder_is_a_clear_error(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(CompetitionError, match="no training images"):
        data.train_items(competition.get(REDUX), tmp_path)
    assert cli(["train", REDUX, "--data", str(tmp_path), "--quiet"]) == 1


def test_badly_named_training_file(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "horse.1.jpg").write_bytes(jpeg())
    with pytest.raises(CompetitionError, match="horse.1.jpg"):
        data.train_items(competition.get(REDUX), tmp_path)


def test_items_from_both_test_folder_names(dogs_dir):
    redux, original = competition.get(REDUX), competition.get("dogs-vs-cats")
    test = redux.items(dogs_dir, "test")
    assert list(test["id"]) == sorted(test["id"]) and test["source"].iloc[0].startswith("test/")
    assert len(original.items(dogs_dir, "test")) == len(test)  # falls back from test1/ to test/


def test_sample_larger_than_the_data_is_refused_from_the_cli(dogs_dir, tmp_path, capsys):
    rc = cli(["sample", REDUX, "--data", str(dogs_dir), "--train", "1000", "--out", str(tmp_path / "s")])
    assert rc == 1 and "only 48" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()



def test_a_sample_its_competition_cannot_read_is_refused_and_nothing_is_left(tmp_path):
    """A competition that reads its own label file (not through layouts.labelled_by_csv) and keeps
    the default sample_files: the sample would lack the label file, so sample says so."""
    from kaggletools.competition import layouts
    from kaggletools.competition.bases import BinaryAUC

    class OwnReader(BinaryAUC):
        slug, classes, label_column = "own-reader", ("has_x",), "has_x"

        def items(self, data_dir, split):
            if split == "test":
                return layouts.unlabelled(data_dir, "test", keep_suffix=True)
            labels = layouts.read_csv(Path(data_dir) / "train.csv", ("id", "has_x"))
            files = {Path(s).name: s for s in layouts.image_files(data_dir, "train").values()}
            return layouts.match_labels(labels, files, Path(data_dir) / "train.csv", Path(data_dir) / "train")

        def make_fixture(self, folder, n_train=64, n_test=32, seed=0):
            raise NotImplementedError

    folder = tmp_path / "data"
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (8, 8)).save(folder / split / f"{i}.jpg")
    pd.DataFrame({"id": [f"{i}.jpg" for i in range(8)], "has_x": [i % 2 for i in range(8)]}).to_csv(
        folder / "train.csv", index=False)
    with pytest.raises(CompetitionError, match=r"sample .*would not be a data folder.*label file not found"
                                               r".*override sample_files"):
        data.sample(OwnReader(), folder, tmp_path / "s", n_train=4, n_test=2)
    assert not (tmp_path / "s").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_one_image_folder_for_train_and_test_with_a_test_list(tmp_path):
    """layouts.labelled_by_csv(skip_unlabelled=True) and layouts.listed: train.csv and test.csv
    name the images of one shared folder; sample cuts both lists."""
    from kaggletools.competition import layouts
    from kaggletools.competition.bases import MultiClassLabel

    class Fruits(MultiClassLabel):
        slug, classes, id_column, label_column = "fruits", ("apple", "pear"), "image", "fruit"

        def items(self, data_dir, split):
            if split == "train":
                return layouts.labelled_by_csv(data_dir, "train.csv", "images", "image", "fruit",
                                               skip_unlabelled=True)
            return layouts.listed(data_dir, "test.csv", "images", "image")

        def make_fixture(self, folder, n_train=64, n_test=32, seed=0):
            raise NotImplementedError

    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    for i in range(12):
        Image.new("RGB", (8, 8)).save(folder / "images" / f"{i}.jpg")
    pd.DataFrame({"image": [f"{i}.jpg" for i in range(8)], "fruit": ["apple", "pear"] * 4}).to_csv(
        folder / "train.csv", index=False)
    pd.DataFrame({"image": [f"{i}.jpg" for i in (11, 9, 8, 10)]}).to_csv(folder / "test.csv", index=False)
    comp = Fruits()
    train, test = comp.items(folder, "train"), comp.items(folder, "test")
    assert list(train["source"]) == [f"images/{i}.jpg" for i in range(8)]
    assert list(train["label"][:2]) == ["apple", "pear"]
    assert list(test["id"]) == ["11.jpg", "9.jpg", "8.jpg", "10.jpg"] and test["source"].iloc[0] == "images/11.jpg"
    out = data.sample(comp, folder, tmp_path / "s", n_train=4, n_test=2)
    assert len(pd.read_csv(out / "train.csv")) == 4 and len(pd.read_csv(out / "test.csv")) == 2
    assert len(comp.items(out, "train")) == 4 and len(comp.items(out, "test")) == 2
    with pytest.raises(CompetitionError, match=r"holds 4 image\(s\) without a row in .*train.csv"):
        layouts.labelled_by_csv(folder, "train.csv", "images", "image", "fruit")
    pd.DataFrame({"image": ["11.jpg", "99.jpg"]}).to_csv(folder / "test.csv", index=False)
    with pytest.raises(CompetitionError, match=r"test.csv lists 1 image\(s\) not found in .*images.*99.jpg"):
        comp.items(folder, "test")

def test_sample_is_stratified_and_deterministic(dogs_dir, tmp_path):
    a = api.sample(REDUX, dogs_dir, tmp_path / "a", n_train=10, n_test=4, seed=1)
    b = api.sample(REDUX, dogs_dir, tmp_path / "b", n_train=10, n_test=4, seed=1)
    comp = competition.get(REDUX)
    ta, tb = data.train_items(comp, a), data.train_items(comp, b)
    assert list(ta["id"]) == list(tb["id"]) and ta["dog"].sum() == 5


# -- submissions -----------------------------------------------------------------------------------
def test_submission_checks_and_atomic_write(tmp_path):
    comp = competition.get(REDUX)
    ids = [1, 2, 3]
    df = comp.submission(ids, np.array([[0.2], [0.9], [0.0]]), {"clip": 0.01})
    assert df["label"].min() == pytest.approx(0.01)
    submission.validate(comp, df, ids)
    with pytest.raises(submission.SubmissionError, match="row 2: '1.5' is not a probability"):
        submission.validate(comp, df.assign(label=[0.1, 1.5, 0.2]), ids)
    with pytest.raises(submission.SubmissionError, match="row 2: 'nan' is not a number"):
        submission.validate(comp, df.assign(label=[0.1, np.nan, 0.2]), ids)
    sample = tmp_path / "sample_submission.csv"
    pd.DataFrame({"id": ids, "is_dog": 0.5}).to_csv(sample, index=False)
    with pytest.raises(submission.SubmissionError, match="columns"):
        submission.validate(comp, df, ids, sample)
    path = submission.write(df, tmp_path / "out.csv")
    with pytest.raises(submission.SubmissionError, match="already exists"):
        submission.write(df.assign(label=0.5), path)
    assert pd.read_csv(path)["label"].tolist() == df["label"].tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "sample_submission.csv"]


def test_cli_validate_reports_missing_ids(dogs_dir, tmp_path, capsys):
    test = competition.get(REDUX).items(dogs_dir, "test")
    csv = tmp_path / "s.csv"
    pd.DataFrame({"id": test["id"][1:], "label": 0.5}).to_csv(csv, index=False)
    assert cli(["validate", REDUX, str(csv), "--data", str(dogs_dir)]) == 1
    assert "missing" in capsys.readouterr().err


def test_unknown_competition_from_the_cli(capsys):
    assert cli(["train", "dogs-vs-kittens"]) == 1  # with --data, a folder is read as a competition of its own
    err = capsys.readouterr().err
    assert "closest: dogs-vs-cats" in err and "planet" not in err and len(err) < 300


def test_cli_lists_competitions(capsys):
    assert cli(["competitions"]) == 0
    assert REDUX in capsys.readouterr().out


def test_recipe_rejects_unknown_options():
    with pytest.raises(CompetitionError, match="unknown Recipe option.*'learning_rate'"):
        competition.get(REDUX).recipe.replace(learning_rate=1)


def test_predict_needs_a_finished_run_folder(tmp_path, capsys):
    with pytest.raises(RunError, match="not a run folder"):
        api.predict(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(RunError, match="not a finished run"):
        api.predict(tmp_path)
    assert cli(["predict", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_prepare_add_twice_is_a_no_op(tmp_path, capsys):
    comp = competition.get(REDUX)
    elsewhere = tmp_path / "elsewhere"
    comp.make_fixture(elsewhere, n_train=8, n_test=4, seed=0, side=48)
    archive = elsewhere / f"{REDUX}.zip"
    data_dir = tmp_path / "data"
    for _ in range(2):
        assert cli(["prepare", REDUX, "--data", str(data_dir), "--add", str(archive), "-q"]) == 0
    assert sorted(p.name for p in data_dir.iterdir() if not p.name.startswith(".")) == \
        sorted([archive.name, "sample_submission.csv", "test", "train"])
    other = tmp_path / "other" / archive.name
    other.parent.mkdir()
    other.write_bytes(b"PK\x05\x06" + bytes(18))  # another file of the same name
    assert cli(["prepare", REDUX, "--data", str(data_dir), "--add", str(other)]) == 1
    assert "already exists and is not" in capsys.readouterr().err


def test_a_file_name_that_is_not_utf8_is_named_before_anything_is_written(dogs_dir, tmp_path):
    import os
    import shutil

    data_dir = tmp_path / "data"
    shutil.copytree(dogs_dir, data_dir)
    first = sorted((data_dir / "train").glob("cat.*.jpg"))[0]
    os.link(first, os.path.join(os.fsencode(data_dir / "train"), b"cat.\xff.jpg"))
    with pytest.raises(CompetitionError, match=r"train/cat\..*\.jpg: the train file name is not valid UTF-8"):
        api.train("dogs-vs-cats-redux-kernels-edition", data_dir, runs_dir=tmp_path / "runs", backbone="resnet18",
                  pretrained=False, size=32, freeze_epochs=1, epochs=0, progress=False)
    assert not (tmp_path / "runs").exists()
