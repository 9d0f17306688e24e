"""The speed features keep their promises: the decode-once cache rebuilds when the side changes,
JPEGs are decoded at reduced size when the target is at most half the source, the fast
normalisation computes the same numbers, the CPU defaults follow what benchmarks/cpu_precision.py
measured, `train_bn` lets only the frozen body's batch-norm statistics move, precompute is
reachable from the command line, and the device JPEG decoder (nvjpeg on CUDA, run here with
torchvision's CPU decoder through the same code) fills the same cache as PIL, with nearly the
same pixels, and leaves to PIL what only PIL handles (EXIF orientation, CMYK, PNG, truncated files)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from kaggletools.data import cache
from kaggletools.competition import registry as competition
from kaggletools.data import items as data
from kaggletools.model import device
from kaggletools.io import images
from kaggletools.data import loaders
from kaggletools.model import network as models
from kaggletools.cli.app import main as cli

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
    from kaggletools.fit.assemble import Experiment
    from kaggletools.options import RunOptions

    comp = competition.get(REDUX)
    r = comp.recipe.replace(backbone="resnet18", pretrained=False, size=32, batch_size=16, valid_frac=0.25,
                            freeze_epochs=1, epochs=0, train_bn=train_bn)
    learner, _ = Experiment.from_folder(comp, dogs_dir, r, RunOptions(progress=False)).learner(
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


@pytest.mark.parametrize("train_bn", [True, False])
def test_precompute_with_a_train_bn_recipe_says_the_statistics_stay(train_bn, capsys):
    from kaggletools.options import Recipe, RunOptions
    from kaggletools.steps.train import check_options

    check_options(Recipe(backbone="resnet18", train_bn=train_bn), RunOptions(precompute=2))
    printed = capsys.readouterr()
    said = "--precompute replaces the frozen phase, so the recipe's train_bn does nothing" in printed.out + printed.err
    assert said == train_bn


# -- the GPU's JPEG decoder path, run on the CPU ---------------------------------------------------
def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth gradient with noise and a sharp-edged square: photo-like enough for JPEG."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, w)[None, :, None] + np.linspace(0, 100, h)[:, None, None] * np.array([1, -1, 0.5])
    img = np.clip(x + rng.normal(0, 15, (h, w, 3)), 0, 255).astype(np.uint8)
    img[h // 4:h // 2, w // 4:w // 2] = (200, 30, 90)
    return Image.fromarray(img)


@pytest.fixture
def jpegs(tmp_path):
    """Plain RGB JPEGs of several shapes, a greyscale one, and the ones the PIL path must take."""
    from kaggletools.competitions.dogs_vs_cats import synthetic_pet

    folder = tmp_path / "jpegs"
    folder.mkdir()
    plain = []
    for i, (w, h) in enumerate([(500, 375), (375, 500), (640, 480), (300, 300), (1200, 900)]):
        _photo(w, h, i).save(folder / f"p{i}.jpg", quality=90)
        plain.append(f"p{i}.jpg")
    synthetic_pet(1, np.random.default_rng(0), side=375).save(folder / "pet.jpg", quality=88)
    _photo(400, 300).convert("L").save(folder / "grey.jpg", quality=90)
    plain += ["pet.jpg", "grey.jpg"]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to show
    _photo(400, 300, 7).save(folder / "rotated.jpg", quality=90, exif=exif)
    _photo(400, 300, 8).convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    _photo(400, 300, 9).save(folder / "png.png")
    return folder, plain, {"rotated.jpg": "EXIF orientation", "cmyk.jpg": "JPEG mode CMYK", "png.png": "not a JPEG (PNG)"}


def _pil(folder, names, side, full: bool = False):
    return np.stack([images.square(images.read_rgb(folder / n, None if full else side), side) for n in names])


@pytest.mark.parametrize("side", [256, 128])
def test_device_jpeg_decoder_matches_pil_on_the_cpu(jpegs, side):
    from kaggletools.data import gpu_decode

    folder, plain, special = jpegs
    names = plain + list(special)
    paths = [folder / n for n in names]
    out = np.zeros((len(names), side, side, 3), np.uint8)
    fallbacks = []
    counts = gpu_decode.fill(out, paths, side, "cpu", lambda i: fallbacks.append(names[i]) or _pil(folder, [names[i]], side)[0],
                             workers=2, batch=3)  # batches of 3: several batches and a short last one
    assert counts.device == len(plain) and counts.fallback == len(special)
    assert sorted(fallbacks) == sorted(special) and counts.reasons == {r: 1 for r in special.values()}
    got = out[:len(plain)].astype(int)
    # against PIL decoding at full size: the decoders and the resamplers differ by a grey level at most
    full = _pil(folder, plain, side, full=True).astype(int)
    assert got.shape == full.shape
    assert np.abs(got - full).max() <= 2 and np.abs(got - full).mean() < 0.5
    # against the cache's PIL path, which decodes large JPEGs at a reduced DCT scale (draft): close on average
    cached = _pil(folder, plain, side).astype(int)
    assert np.abs(got - cached).mean((1, 2, 3)).max() < 6
    # the ones PIL decoded are exactly PIL's (rotated as a viewer shows it, CMYK converted)
    assert np.array_equal(out[len(plain):], _pil(folder, list(special), side))
    # CUDA resizes in float (no uint8 kernel there): the same arithmetic on the CPU is as close to PIL
    from torchvision.io import ImageReadMode, decode_jpeg

    for k, name in enumerate(plain):
        raw = torch.frombuffer(bytearray((folder / name).read_bytes()), dtype=torch.uint8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            img = decode_jpeg(raw, mode=ImageReadMode.RGB)
        via_float = gpu_decode.square(img, side, via_float=True).numpy().astype(int)
        assert via_float.shape == (side, side, 3) and np.abs(via_float - full[k]).max() <= 2


def test_device_jpeg_decoder_sends_truncated_files_to_pil_which_refuses_them(jpegs, tmp_path):
    folder, plain, _ = jpegs
    data = (folder / plain[0]).read_bytes()
    (folder / "cut.jpg").write_bytes(data[:len(data) // 2])
    from kaggletools.data import gpu_decode

    assert gpu_decode.probe(folder / "cut.jpg", 10 ** 9)[2] == "no end-of-image marker"
    assert gpu_decode.probe(folder / plain[0], 100)[2] == "over the pixel limit"
    out = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(images.ImageError, match="cut.jpg"):
        gpu_decode.fill(out, [folder / plain[0], folder / "cut.jpg"], 64, "cpu",
                        lambda i: images.read_rgb(folder / "cut.jpg"), workers=1)


def test_without_a_working_device_decoder_pil_decodes_everything(jpegs, monkeypatch):
    import torchvision.io

    from kaggletools.data import gpu_decode

    folder, plain, _ = jpegs
    calls = []

    def broken(data, **kw):
        calls.append(1)
        raise RuntimeError("nvjpeg: not available")
    monkeypatch.setattr(torchvision.io, "decode_jpeg", broken)
    out = np.zeros((len(plain), 64, 64, 3), np.uint8)
    counts = gpu_decode.fill(out, [folder / n for n in plain], 64, "cpu",
                             lambda i: _pil(folder, [plain[i]], 64)[0], workers=2, batch=3)
    assert counts.device == 0 and counts.fallback == len(plain)
    assert counts.reasons == {"device decoder failed": 3, "device decoder unusable": len(plain) - 3}
    assert len(calls) == 1 + 3, "after a first batch that failed whole, the device decoder is not tried again"
    assert np.array_equal(out, _pil(folder, plain, 64))


def test_cache_built_by_the_device_decoder_has_the_pil_caches_file_and_format(dogs_dir, tmp_path, monkeypatch):
    import json
    from pathlib import Path

    comp = competition.get(REDUX)
    items = data.train_items(comp, dogs_dir).iloc[:10]
    monkeypatch.setenv("KAGGLETOOLS_CACHE", str(tmp_path / "tv"))
    tv = cache.load_items(comp, dogs_dir, items, 48, progress=False, device="cpu", decoder="torchvision")
    meta = json.loads(Path(tv.filename).with_suffix(".json").read_text())
    assert meta["decoder"] == "torchvision.io.decode_jpeg on cpu" and meta["device"] == 10
    monkeypatch.setenv("KAGGLETOOLS_CACHE", str(tmp_path / "pil"))
    pil = cache.load_items(comp, dogs_dir, items, 48, progress=False)
    assert json.loads(Path(pil.filename).with_suffix(".json").read_text())["decoder"] == "pil"
    assert Path(tv.filename).name == Path(pil.filename).name
    assert tv.shape == pil.shape == (10, 48, 48, 3) and tv.dtype == pil.dtype == np.uint8
    assert np.abs(tv.astype(int) - pil.astype(int)).mean() < 3


def test_load_items_decodes_on_the_gpu_when_training_on_cuda(dogs_dir, tmp_path, monkeypatch):
    from kaggletools.data import gpu_decode

    comp = competition.get(REDUX)
    assert cache.decoder_device(comp, "cuda") == torch.device("cuda")
    assert cache.decoder_device(comp, torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert cache.decoder_device(comp, "cpu") is None and cache.decoder_device(comp, None) is None
    assert cache.decoder_device(comp, "cuda", "pil") is None
    assert cache.decoder_device(comp, None, "torchvision") == torch.device("cpu")
    assert cache.decoder_device(competition.get("statoil-iceberg-classifier-challenge"), "cuda") is None
    with pytest.raises(ValueError):
        cache.decoder_device(comp, "cuda", "nvjpeg")

    seen = []
    real = gpu_decode.fill
    monkeypatch.setattr(gpu_decode, "fill", lambda out, paths, side, dev, *a, **k:
                        seen.append(dev) or real(out, paths, side, "cpu", *a, **k))  # no GPU here: run it on the CPU
    monkeypatch.setenv("KAGGLETOOLS_CACHE", str(tmp_path))
    items = data.train_items(comp, dogs_dir).iloc[:5]
    array = cache.load_items(comp, dogs_dir, items, 40, progress=False, device="cuda")
    assert seen == [torch.device("cuda")] and array.shape == (5, 40, 40, 3)
    cache.load_items(comp, dogs_dir, items, 44, progress=False, device="cpu")
    assert len(seen) == 1, "a CPU training device must decode with PIL"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_nvjpeg_decoder_matches_pil(jpegs):
    from kaggletools.data import gpu_decode

    folder, plain, special = jpegs
    side = 128
    out = np.zeros((len(plain) + len(special), side, side, 3), np.uint8)
    names = plain + list(special)
    counts = gpu_decode.fill(out, [folder / n for n in names], side, "cuda",
                             lambda i: _pil(folder, [names[i]], side)[0], workers=2)
    print(f"nvjpeg: {counts.to_dict()}")
    # every colour JPEG on the GPU (the greyscale one may go to PIL), the special ones to PIL
    assert counts.device >= len(plain) - 1 and counts.reasons.get("device decoder failed", 0) <= 1, counts
    assert np.array_equal(out[len(plain):], _pil(folder, list(special), side))
    diff = np.abs(out[:len(plain)].astype(int) - _pil(folder, plain, side, full=True).astype(int))
    print(f"nvjpeg vs PIL: mean {diff.mean():.3f}, p99 {np.percentile(diff, 99)}, max {diff.max()}")
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 8


def test_a_killed_decodes_partial_cache_is_removed_by_the_next_decode(dogs_dir):
    import subprocess
    import sys

    comp = competition.get(REDUX)
    items = data.train_items(comp, dogs_dir).iloc[:3]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    root = cache.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    stale = root / f"{comp.slug}-33-0123.partial-{int(dead.stdout)}.npy"
    stale.write_bytes(b"half a cache")
    mine = root / f"{comp.slug}-33-4567.partial-{__import__('os').getpid()}.npy"
    mine.write_bytes(b"in progress")
    cache.load_items(comp, dogs_dir, items, 33, progress=False)
    assert not stale.exists() and mine.exists()
    mine.unlink()
