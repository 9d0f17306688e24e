"""Dogs vs. Cats: labels in the file names (`train/cat.12.jpg`), test ids from `test/12.jpg`
or `test1/12.jpg`. Two slugs share the images: the 2016 redux (P(dog), log loss; the default)
and the 2013 original (hard 0/1 labels, accuracy)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kaggletools import metrics
from kaggletools.competition import Competition, CompetitionError, Recipe, register
from kaggletools.submission import SubmissionError, check_probabilities

LABELS = {"cat": 0, "dog": 1}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


@register("dogs-vs-cats-redux-kernels-edition", "dogs-vs-cats-redux", "dogscats")
class DogsVsCatsRedux(Competition):
    title = "Dogs vs. Cats Redux: Kernels Edition"
    task = "binary"
    classes = ("dog",)
    files = ("train.zip", "test.zip", "sample_submission.csv")
    test_folders = ("test", "test1")
    metric_name = "log_loss"
    greater_is_better = False
    recipe = Recipe(backbone="resnet34", size=224, tta="flip")

    def items(self, data_dir: Path, split: str) -> pd.DataFrame:
        data_dir = Path(data_dir)
        if split == "train":
            folder = data_dir / "train"
            files = _images(folder)
            if not files:
                raise CompetitionError(f"{folder}: no training images; download and `prepare` the data, "
                                       "or point --data at a folder holding train/cat.0.jpg ...")
            kinds = [p.name.split(".")[0].lower() for p in files]
            unknown = [p.name for p, k in zip(files, kinds) if k not in LABELS]
            if unknown:
                raise CompetitionError(f"{folder}: cannot tell the label of {unknown[:3]}; training files "
                                       "must be named cat.<n>.jpg or dog.<n>.jpg")
            return pd.DataFrame({"id": [p.stem for p in files], "source": [f"train/{p.name}" for p in files],
                                 "dog": [float(LABELS[k]) for k in kinds]})
        if split != "test":
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        for name in self.test_folders:
            files = _images(data_dir / name)
            if files:
                bad = [p.name for p in files if not p.stem.isdigit()]
                if bad:
                    raise CompetitionError(f"{data_dir / name}: test files must be named <number>.jpg, found {bad[:3]}")
                files.sort(key=lambda p: int(p.stem))
                return pd.DataFrame({"id": [int(p.stem) for p in files],
                                     "source": [f"{name}/{p.name}" for p in files]})
        return pd.DataFrame({"id": pd.Series(dtype=int), "source": pd.Series(dtype=str)})

    def metric(self, y_true, probs, post=None) -> float:
        return metrics.log_loss(y_true, probs, (post or {}).get("clip", 0.0))

    def fit_post(self, y_true, probs) -> dict:
        return {"clip": metrics.best_clip(y_true, probs)}

    def submission(self, ids, probs, post) -> pd.DataFrame:
        clip = post.get("clip", 0.005)
        return pd.DataFrame({"id": list(ids), "label": np.clip(probs[:, 0], clip, 1 - clip)})

    def validate_rows(self, df: pd.DataFrame) -> None:
        check_probabilities(df["label"], "label")


@register("dogs-vs-cats")
class DogsVsCats(DogsVsCatsRedux):
    title = "Dogs vs. Cats (2013): accuracy on hard labels"
    files = ("train.zip", "test1.zip", "sampleSubmission.csv")
    test_folders = ("test1", "test")
    metric_name = "accuracy"
    greater_is_better = True

    def metric(self, y_true, probs, post=None) -> float:
        return metrics.accuracy(y_true, probs)

    def fit_post(self, y_true, probs) -> dict:
        return {}

    def submission(self, ids, probs, post) -> pd.DataFrame:
        return pd.DataFrame({"id": list(ids), "label": (probs[:, 0] > 0.5).astype(int)})

    def validate_rows(self, df: pd.DataFrame) -> None:
        if not df["label"].astype(str).isin(["0", "1"]).all():
            bad = df.loc[~df["label"].astype(str).isin(["0", "1"]), "label"].iloc[0]
            raise SubmissionError(f"column 'label' must be 0 or 1 (1 = dog); found {bad!r}")
