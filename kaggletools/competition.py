"""The Competition interface and the registry (register / get / names).

A competition module declares data, not mechanics: its slugs, task, classes, how to find its
train and test items, how to load one item, its metric and its submission format. The shared
layer does everything else, the same way for every registered competition.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from kaggletools import images


class CompetitionError(ValueError):
    """Bad data or an unknown competition: the message names the file or value and the fix."""


@dataclass
class Recipe:
    """A default training recipe; every field can be overridden from Python or the CLI."""

    backbone: str = "resnet34"    # any torchvision classification model name
    pretrained: bool = True       # ImageNet weights through torchvision's weights API
    size: int = 224               # side of the square the network sees, pixels
    presize: int = 0              # side of the decoded cache; 0 means size * 8 // 7
    freeze_epochs: int = 1        # epochs training the head only (body frozen)
    epochs: int = 1               # epochs after unfreezing (fastai's fine_tune(epochs))
    lr: float = 2e-3              # base learning rate, fastai's fine_tune default
    lr_mult: float = 100.0        # body's first group trains lr_mult times slower than the head
    weight_decay: float = 0.01    # AdamW
    batch_size: int = 64
    valid_frac: float = 0.2       # held-out fraction for the train/valid split
    min_scale: float = 0.35       # random-resized-crop: smallest fraction of the area kept
    flip: bool = True             # horizontal flips in training
    dihedral: bool = False        # 90-degree rotations and vertical flips are valid too
    max_shift: float = 0.0        # random translation as a fraction of the side (arrays)
    tta: str = "flip"             # TTA level: none | flip | crops | dihedral
    extra: bool = True            # feed the competition's extra per-item numbers to the head
    seed: int = 42

    def replace(self, **overrides) -> "Recipe":
        """A copy with the given fields changed (None values are ignored)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise CompetitionError(f"unknown recipe option(s) {sorted(unknown)}; valid: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def cache_side(self) -> int:
        return self.presize or self.size * 8 // 7


class Competition(abc.ABC):
    """Base class: override the class attributes and the abstract methods (marked 'declare').

    Targets are a float matrix with one column per output: binary tasks have one column
    (the probability of the positive class), multi-label tasks one column per tag.
    """

    slug: str = ""
    title: str = ""
    task: str = "binary"                  # binary | multilabel
    classes: tuple[str, ...] = ()         # output names, one per target column
    kind: str = "image"                   # image: RGB JPEG files | array: float arrays
    files: tuple[str, ...] = ()           # what the Kaggle API serves (for docs and checks)
    id_column: str = "id"
    metric_name: str = "metric"
    greater_is_better: bool = True
    recipe: Recipe = Recipe()

    # -- declare -------------------------------------------------------------------------
    @abc.abstractmethod
    def items(self, data_dir: Path, split: str) -> pd.DataFrame:
        """Items of 'train' or 'test': columns `id`, `source` and, for train, the class columns."""

    @abc.abstractmethod
    def metric(self, y_true: np.ndarray, probs: np.ndarray, post: dict | None = None) -> float:
        """The competition's metric on (n, k) targets and probabilities."""

    @abc.abstractmethod
    def submission(self, ids: list, probs: np.ndarray, post: dict) -> pd.DataFrame:
        """The submission table for test ids and their probabilities."""

    # -- defaults a competition may override -----------------------------------------------
    def prepare(self, data_dir: Path) -> None:
        """Unpack what was downloaded into `data_dir` (safe, atomic, idempotent)."""
        from kaggletools import archives

        archives.extract_all(data_dir)

    def load(self, source: str, data_dir: Path, side: int | None = None) -> np.ndarray:
        """One item as an (H, W, C) array: here an RGB image decoded from a JPEG file."""
        return images.read_rgb(Path(data_dir) / source, min_side=side)

    def fit_post(self, y_true: np.ndarray, probs: np.ndarray) -> dict:
        """Post-processing tuned on validation predictions (clipping, thresholds)."""
        return {}

    def check_post(self, post: dict) -> None:
        """Raise when saved post-processing does not fit this competition."""

    def extra_features(self, items: pd.DataFrame) -> np.ndarray | None:
        """Per-item numbers fed to the head beside the pooled features (None: none)."""
        return None

    def sample_files(self, data_dir: Path, out_dir: Path, train: pd.DataFrame, test: pd.DataFrame) -> None:
        """Write the chosen train and test items as a data folder `items` accepts."""
        from kaggletools import data

        data.link_sources(data_dir, out_dir, pd.concat([train, test])["source"])

    def sample_submission(self, data_dir: Path) -> Path | None:
        """The sample submission file, when the data folder has one."""
        for name in ("sample_submission.csv", "sampleSubmission.csv"):
            if (Path(data_dir) / name).is_file():
                return Path(data_dir) / name
        return None

    def validate_rows(self, df: pd.DataFrame) -> None:
        """Competition-specific checks of a submission's values (ranges, known tags)."""

    @abc.abstractmethod
    def make_fixture(self, folder: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> pd.DataFrame:
        """Write a small generated download into `folder`, packed exactly as Kaggle serves it,
        with learnable labels; return the hidden test labels as a submission-shaped table."""

    # -- derived -------------------------------------------------------------------------
    def targets(self, items: pd.DataFrame) -> np.ndarray:
        return items[list(self.classes)].to_numpy(np.float32)

    @property
    def n_outputs(self) -> int:
        return len(self.classes)

    def describe(self) -> dict:
        return {"slug": self.slug, "title": self.title, "task": self.task, "kind": self.kind,
                "classes": list(self.classes), "metric": self.metric_name,
                "greater_is_better": self.greater_is_better, "files": list(self.files)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.slug}>"


_REGISTRY: dict[str, Callable[[], Competition]] = {}
_ALIASES: dict[str, str] = {}
_DISCOVERED = False


def register(slug: str, *aliases: str):
    """Decorator for a zero-argument factory (or class) that makes the competition `slug`."""

    def decorate(factory):
        _REGISTRY[slug] = factory
        for alias in aliases:
            _ALIASES[alias] = slug
        return factory

    return decorate


def _discover() -> None:
    """Import every module in the `competitions` package once, so each registers itself."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    from kaggletools import competitions

    for module in pkgutil.iter_modules(competitions.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"kaggletools.competitions.{module.name}")
    _DISCOVERED = True


def names() -> list[str]:
    """Registered competition slugs, sorted."""
    _discover()
    return sorted(_REGISTRY)


def aliases() -> dict[str, str]:
    _discover()
    return dict(_ALIASES)


def get(name: str | Competition) -> Competition:
    """The competition registered as `name` (a slug or alias); unknown names list the valid ones."""
    if isinstance(name, Competition):
        return name
    _discover()
    slug = _ALIASES.get(name, name)
    if slug not in _REGISTRY:
        valid = ", ".join(names() + sorted(_ALIASES))
        raise CompetitionError(f"unknown competition {name!r}; registered: {valid}")
    competition = _REGISTRY[slug]()
    competition.slug = slug
    return competition


class BinaryLogLoss(Competition):
    """A binary competition scored by log loss on P(positive class): the submission holds clipped
    probabilities in `label_column`, the clip tuned on validation predictions."""

    task = "binary"
    metric_name = "log_loss"
    greater_is_better = False
    label_column: str = "label"

    def metric(self, y_true, probs, post=None) -> float:
        from kaggletools import metrics

        return metrics.log_loss(y_true, probs, (post or {}).get("clip", 0.0))

    def fit_post(self, y_true, probs) -> dict:
        from kaggletools import metrics

        return {"clip": metrics.best_clip(y_true, probs)}

    def submission(self, ids, probs, post) -> pd.DataFrame:
        clip = post.get("clip", 0.005)
        return pd.DataFrame({self.id_column: list(ids), self.label_column: np.clip(probs[:, 0], clip, 1 - clip)})

    def validate_rows(self, df: pd.DataFrame) -> None:
        from kaggletools.submission import check_probabilities

        check_probabilities(df[self.label_column], self.label_column)
