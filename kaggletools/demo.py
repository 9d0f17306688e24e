"""The built-in offline default: the whole loop on a generated, Kaggle-shaped Dogs vs. Cats
download, no Kaggle account and no internet needed.

The competition's own fixture generator (competitions/dogs_vs_cats.py) writes synthetic 'cats'
and 'dogs' packed exactly as Kaggle serves the redux competition (`<slug>.zip` holding
`train.zip`, `test.zip` and `sample_submission.csv`). The test labels are kept aside in
`solution.csv` so the finished submission gets a local score.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

SLUG = "dogs-vs-cats-redux-kernels-edition"


def make_download(folder: Path, n_train: int = 400, n_test: int = 200, side: int = 160,
                  seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """Write `<folder>/<slug>.zip` shaped like Kaggle's all-files download; return it and the
    hidden test labels (id, label: 1 = dog)."""
    from kaggletools import competition

    solution = competition.get(SLUG).make_fixture(Path(folder), n_train, n_test, seed, side=side)
    return Path(folder) / f"{SLUG}.zip", solution


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
