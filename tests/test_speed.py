"""The speed features keep their promises: the decode-once cache rebuilds when the side changes,
JPEGs are decoded at reduced size when the target is at most half the source, the fast
normalisation computes the same numbers, the CPU defaults follow what benchmarks/cpu_precision.py
measured, `train_bn` lets only the frozen body's batch-norm statistics move, and precompute is
reachable from the command line."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from kaggletools import cache, competition, data, device, images, loaders, models
from kaggletools.cli import main as cli

REDUX = "dogs-vs-cats-redux-kernels-edition"


def _jpeg(path, size) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, "JPEG")


def test_cache_rebuilds_when_the_side_changes(dogs_dir):
    comp = competition.get(REDUX)
    items = data.train_items(comp, dogs_dir).iloc[:4]
    a = cache.load_items(comp, dogs_dir, items, 32, progress=False)
    b = cache.load_items(comp, dogs_dir, items, 40, progress=False)
    assert a.shape[1:3] == (32, 32) and b.shape[1:3] == (40, 40) and a.filename != b.filename
    assert cache.load_items(comp, dogs_dir, items, 32, progress=False).filename == a.filename


@pytest.mark.parametrize("side,reduced", [(100, True), (150, True), (151, False), (300, False)])
def test_reduced_size_jpeg_decoding_when_the_target_is_at_most_half(tmp_path, monkeypatch, side, reduced):
    path = tmp_path / "x.jpg"
    _jpeg(path, (400, 300))
    drafts = []
    original = JpegImageFile.draft
    monkeypatch.setattr(JpegImageFile, "draft", lambda self, *a: drafts.append(a) or original(self, *a))
    out = images.read_rgb(path, min_side=side)
    assert bool(drafts) == reduced
    assert min(out.shape[:2]) >= side and (out.shape[0] < 300) == reduced


def test_fast_normalize_matches_the_formula():
    x = torch.randint(0, 256, (2, 40, 40, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    norm = loaders.Normalize(models.IMAGENET_MEAN, models.IMAGENET_STD)
    mean, std = torch.tensor(norm.mean).view(1, -1, 1, 1), torch.tensor(norm.std).view(1, -1, 1, 1)
    assert torch.allclose(norm(x), (x.float() / 255 - mean) / std, atol=1e-5)
    f = torch.randn(2, 2, 8, 8)
    before = f.clone()
    loaders.Normalize((0.5, 1.0), (2.0, 3.0), scale=1.0)(f)
    assert torch.equal(f, before), "float input must not be changed in place"


def test_cpu_defaults_follow_the_measurements(monkeypatch):
    cpu = torch.device("cpu")
    assert device.default_channels_last(cpu) and device.default_channels_last(torch.device("cuda"))
    assert not device.default_channels_last(torch.device("mps"))
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    with device.Precision.for_device(cpu).autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    with device.Precision.for_device(cpu).autocast():
        assert not torch.is_autocast_enabled("cpu")
    with device.Precision.for_device(cpu, "bf16").autocast():
        assert torch.is_autocast_enabled("cpu")
    with device.Precision.for_device(cpu, "off").autocast():
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("train_bn", [False, True])
def test_train_bn_moves_only_the_frozen_bodys_batchnorm_statistics(dogs_dir, train_bn):
    from kaggletools.experiment import Experiment
    from kaggletools.options import RunOptions

    comp = competition.get(REDUX)
    r = comp.recipe.replace(backbone="resnet18", pretrained=False, size=32, batch_size=16, valid_frac=0.25,
                            freeze_epochs=1, epochs=0)
    learner, _ = Experiment.from_folder(comp, dogs_dir, r, RunOptions(train_bn=train_bn, progress=False)).learner(
        torch.device("cpu"))
    body = learner.model.body
    stats = {k: v.clone() for k, v in body.state_dict().items() if "running" in k}
    weights = {k: v.clone() for k, v in body.state_dict().items() if "running" not in k and "num_batches" not in k}
    learner.fit()  # the frozen phase alone
    moved = any(not torch.equal(v, body.state_dict()[k]) for k, v in stats.items())
    assert moved == train_bn
    assert all(torch.equal(v, body.state_dict()[k]) for k, v in weights.items()), "frozen weights changed"


def test_precompute_from_the_command_line(dogs_dir, tmp_path, capsys):
    rc = cli(["train", REDUX, "--data", str(dogs_dir), "--runs", str(tmp_path), "--backbone", "resnet18",
              "--no-pretrained", "--size", "32", "--precompute", "3", "--epochs", "0", "--quiet"])
    assert rc == 0
    folder = next((tmp_path / REDUX).iterdir())
    assert list(pd.read_csv(folder / "metrics.csv")["phase"]) == ["precomputed"] * 3
    assert str(folder) in capsys.readouterr().out
