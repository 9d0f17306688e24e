"""The built-in offline default: the whole loop on a generated, Kaggle-shaped Dogs vs. Cats
download, no Kaggle account and no internet needed.

The generated 'cats' and 'dogs' are synthetic pictures that differ in their drawn shapes and
fur-like texture, packed exactly as Kaggle serves the redux competition (`<slug>.zip` holding
`train.zip`, `test.zip` and `sample_submission.csv`). The test labels are kept aside in
`solution.csv` so the finished submission gets a local score.
"""
from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

SLUG = "dogs-vs-cats-redux-kernels-edition"


def synthetic_pet(label: int, rng: np.random.Generator, side: int = 160) -> Image.Image:
    """A learnable stand-in photo: 'cats' (0) have striped round bodies and pointed ears,
    'dogs' (1) spotted long bodies and floppy ears; colours, sizes and places vary."""
    w, h = side + int(rng.integers(0, side // 3)), side
    background = tuple(int(c) for c in rng.integers(60, 200, 3))
    img = Image.new("RGB", (w, h), background)
    draw = ImageDraw.Draw(img)
    fur = tuple(int(c) for c in rng.integers(20, 235, 3))
    cx, cy, r = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.4, 0.6), side * rng.uniform(0.18, 0.28)
    if label == 0:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fur)
        for k in range(-3, 4):
            draw.line([cx - r, cy + k * r / 4, cx + r, cy + k * r / 4], fill=(30, 30, 30), width=max(1, side // 60))
        for s in (-1, 1):
            draw.polygon([(cx + s * r * 0.3, cy - r * 0.8), (cx + s * r * 0.9, cy - r * 0.5),
                          (cx + s * r * 0.7, cy - r * 1.5)], fill=fur)
    else:
        draw.ellipse([cx - 1.6 * r, cy - 0.8 * r, cx + 1.6 * r, cy + 0.8 * r], fill=fur)
        for _ in range(8):
            sx, sy = cx + rng.uniform(-1.2, 1.2) * r, cy + rng.uniform(-0.5, 0.5) * r
            draw.ellipse([sx - r / 6, sy - r / 6, sx + r / 6, sy + r / 6], fill=(20, 20, 20))
        for s in (-1, 1):
            draw.ellipse([cx + s * 1.3 * r - r / 3, cy - r * 0.4, cx + s * 1.3 * r + r / 3, cy + r * 0.9], fill=fur)
    noise = rng.normal(0, 12, (h, w, 3))
    arr = np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr).filter(ImageFilter.GaussianBlur(0.6))


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=88)
    return buf.getvalue()


def make_download(folder: Path, n_train: int = 400, n_test: int = 200, side: int = 160,
                  seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """Write `<folder>/<slug>.zip` shaped like Kaggle's all-files download; return it and the
    hidden test labels (id, label: 1 = dog)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def inner_zip(entries: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for name, payload in entries.items():
                z.writestr(name, payload)
        return buf.getvalue()

    train = {}
    for i in range(n_train):
        label = i % 2
        train[f"train/{('cat', 'dog')[label]}.{i // 2}.jpg"] = _jpeg(synthetic_pet(label, rng, side))
    labels = rng.integers(0, 2, n_test)
    test = {f"test/{i + 1}.jpg": _jpeg(synthetic_pet(int(labels[i]), rng, side)) for i in range(n_test)}
    solution = pd.DataFrame({"id": np.arange(1, n_test + 1), "label": labels})
    sample = pd.DataFrame({"id": solution["id"], "label": 0.5}).to_csv(index=False)
    archive = folder / f"{SLUG}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("train.zip", inner_zip(train))
        z.writestr("test.zip", inner_zip(test))
        z.writestr("sample_submission.csv", sample)
    return archive, solution


def main(workdir: Path = Path("demo"), progress: bool = True) -> dict:
    """Generate the download, then prepare, train, predict with TTA, validate and score."""
    from kaggletools import api, metrics, submission

    workdir = Path(workdir)
    start = time.perf_counter()
    data_dir = workdir / "data" / SLUG
    if not (data_dir / "train").is_dir():
        print(f"generating a Kaggle-shaped download in {data_dir} ...")
        _, solution = make_download(data_dir)
        solution.to_csv(workdir / "solution.csv", index=False)
    solution = pd.read_csv(workdir / "solution.csv")
    api.prepare(SLUG, data_dir)
    run = api.train(SLUG, data_dir, runs_dir=workdir / "runs", progress=progress, backbone="mobilenet_v2",
                    size=128, batch_size=32, freeze_epochs=1, epochs=1, lr=2e-3, tta="flip")
    csv = api.predict(run.path, data_dir, out=workdir / "submissions" / f"{SLUG}.csv", overwrite=True,
                      progress=progress)
    api.validate_file(SLUG, csv, data_dir)
    sub = submission.read(csv).astype({"id": int, "label": float}).merge(solution, on="id", suffixes=("", "_true"))
    y, p = sub[["label_true"]].to_numpy(), sub[["label"]].to_numpy()
    config = run.load_json("config.json")
    score = {"submission": str(csv), "run": str(run.path), "weights": config["backbone"]["weights"],
             "test_log_loss": round(metrics.log_loss(y, p), 4), "test_accuracy": round(metrics.accuracy(y, p), 4),
             "seconds": round(time.perf_counter() - start, 1)}
    print(f"\nweights used: {score['weights'] or 'none (random init)'}")
    print(f"submission {csv}: validated, {len(sub)} rows")
    print(f"local score on the {len(sub)} held-out test labels: log loss {score['test_log_loss']:.4f}, "
          f"accuracy {score['test_accuracy']:.2%} ({score['seconds']:.0f} s in all)")
    return score
