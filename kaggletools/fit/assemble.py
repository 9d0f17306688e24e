"""Everything between the item table and the model: a competition's items for one recipe,
split, decoded once into the cache, normalised; and the model and Learner built on them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kaggletools.data import cache
from kaggletools.data import items as data
from kaggletools.model import network as models
from kaggletools.competition.interface import Competition
from kaggletools.model.dist import Dist
from kaggletools.data.loaders import Normalize
from kaggletools.options import Recipe, RunOptions
from kaggletools.fit.learner import Data, Learner


@dataclass
class Experiment:
    """A competition's labelled items, their split and their decoded cache, for one recipe."""

    competition: Competition
    data_dir: Path
    recipe: Recipe
    options: RunOptions
    items: pd.DataFrame
    split: data.Split

    @classmethod
    def from_folder(cls, competition: Competition, data_dir: Path, recipe: Recipe, options: RunOptions) -> "Experiment":
        items = data.train_items(competition, data_dir)
        split = data.make_split(competition, items, recipe.valid_frac, recipe.seed, options.folds, options.fold,
                                recipe.group_by)
        return cls(competition, Path(data_dir), recipe, options, items, split)

    @classmethod
    def resumed(cls, competition: Competition, data_dir: Path, recipe: Recipe, options: RunOptions,
                run) -> "Experiment":
        """The experiment of an interrupted run: its items and split as its split.csv recorded them."""
        table = run.load_table("split.csv", ("id", "is_valid"), dtype={"id": str})
        items, split = data.recorded_split(data.train_items(competition, data_dir), table, str(run.file("split.csv")))
        return cls(competition, Path(data_dir), recipe, options, items, split)

    def decode(self, dist: Dist = Dist()) -> np.ndarray:
        """The decoded items; under torchrun rank 0 decodes while the others wait, then they read."""
        if not dist.main:
            dist.barrier()
        array = cache.load_items(self.competition, self.data_dir, self.items, self.recipe.cache_side,
                                 progress=self.options.progress and dist.main, desc="decode",
                                 device=self.options.device or "auto")
        if dist.main:
            dist.barrier()
        return array

    def data(self, info: models.BackboneInfo, dist: Dist = Dist()) -> Data:
        array = self.decode(dist)
        valid = self.split.valid
        train_idx, valid_idx = np.flatnonzero(~valid), np.flatnonzero(valid)
        extra = self.competition.extra_features(self.items) if self.recipe.extra else None
        return Data(array, self.competition.targets(self.items), train_idx, valid_idx,
                    normalization(self.competition, info, array, train_idx),
                    None if extra is None else np.asarray(extra, np.float32))

    def model(self) -> tuple[models.Net, models.BackboneInfo]:
        """The backbone with a new head, seeded: the same recipe gives the same initial weights."""
        import torch

        torch.manual_seed(self.recipe.seed)
        extra = self.competition.extra_features(self.items.iloc[:1]) if self.recipe.extra else None
        r = self.recipe
        return models.create(r.backbone, self.competition.n_outputs, pretrained=r.pretrained,
                             n_extra=0 if extra is None else np.asarray(extra).shape[1],
                             weights_path=r.weights or None, pool=r.pool)

    def learner(self, device, dist: Dist = Dist(), on_epoch=None,
                built: tuple[models.Net, models.BackboneInfo] | None = None) -> tuple[Learner, models.BackboneInfo]:
        """`built`: the result of `model()` when the caller made it first (to fail before writing)."""
        model, info = built or self.model()
        return Learner(self.competition, model, self.data(info, dist), self.recipe, self.options, device,
                       dist=dist, on_epoch=on_epoch), info


def normalization(competition: Competition, info: models.BackboneInfo, array: np.ndarray,
                  train_idx: np.ndarray) -> Normalize:
    """Images: the weights' mean and std. Arrays: per-channel statistics of the training split."""
    if competition.kind == "image":
        return Normalize(tuple(info.mean), tuple(info.std))
    sample = np.asarray(array[np.sort(train_idx)[:4096]], dtype=np.float64)
    axes = tuple(range(sample.ndim - 1))
    return Normalize(tuple(float(m) for m in sample.mean(axes)), tuple(float(s) + 1e-6 for s in sample.std(axes)),
                     scale=1.0)
