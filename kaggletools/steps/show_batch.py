"""`kaggletools show-batch`: what the model sees, as fastai's `show_batch`: the first augmented
training inputs exactly as the training loop makes them, de-normalised, with their labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kaggletools.runs.gallery import grid, label_text


def augmented_batch(competition, data_dir: Path, recipe, options, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` training inputs of epoch 1 as the training loop makes them (the Learner's own
    batch generator: cache, normalisation, augmentation), de-normalised to the cache's units
    (0-255 for images), as (n, size, size, C), and their targets (n, k). The body is built without
    pretrained weights: only its normalisation statistics matter here."""
    import torch

    from kaggletools.model import device as devices
    from kaggletools.fit.assemble import Experiment

    recipe = recipe.replace(pretrained=False, weights="")
    exp = Experiment.from_folder(competition, Path(data_dir), recipe, options)
    learner, _ = exp.learner(devices.pick(options.device))
    xs, ys = [], []
    batches = learner.image_batches(0)
    for x, y, _ in batches:
        xs.append(x.detach().float().cpu())
        ys.append(y.detach().float().cpu())
        if sum(len(b) for b in xs) >= n:
            break
    batches.close()
    x, y = torch.cat(xs)[:n], torch.cat(ys)[:n]
    norm = learner.data.normalize
    mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
    pixels = ((x * std + mean) / norm.scale).permute(0, 2, 3, 1).contiguous().numpy()
    return pixels, y.numpy()


def show_batch(competition, data_dir: Path, recipe, options, out: Path, n: int = 16) -> Path:
    """A grid of the first augmented training inputs with their labels (class names or tags)."""
    pixels, y = augmented_batch(competition, data_dir, recipe, options, n)
    titles = [label_text(competition.task, competition.classes, row, competition.negative_class) for row in y]
    extras = [f"crops from {recipe.min_scale:g} of the area" if recipe.min_scale < 1 else "no crops",
              "flips" if recipe.flip else "", "8 symmetries" if recipe.dihedral else "",
              f"shifts up to {recipe.max_shift:g}" if recipe.max_shift else ""]
    title = (f"{competition.slug}: augmented training inputs at {recipe.size} px "
             f"({', '.join(e for e in extras if e)})")
    return grid(pixels, titles, competition.kind, Path(out), title)
