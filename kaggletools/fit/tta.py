"""Inference and test-time augmentation: averaging probabilities over fixed views of each item.

Levels, each a superset of the one before where that makes sense:
  none      the plain view
  flip      plain + horizontal flip
  crops     flip + the four corner crops and the centre crop at 7/8 of the side
  dihedral  the 8 symmetries of the square (satellite and radar chips have no up or down)
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from kaggletools import progress
from kaggletools.model.dist import Dist
from kaggletools.data.loaders import Normalize, batches, resize
from kaggletools.options import TTA_LEVELS

View = Callable[[torch.Tensor, int], torch.Tensor]


def _crop(top: float, left: float, frac: float = 7 / 8) -> View:
    def view(x: torch.Tensor, size: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        ch, cw = round(h * frac), round(w * frac)
        t, l = round((h - ch) * top), round((w - cw) * left)
        return resize(x[..., t:t + ch, l:l + cw], size)
    return view


def _dihedral(k: int, flip: bool) -> View:
    def view(x: torch.Tensor, size: int) -> torch.Tensor:
        x = torch.rot90(resize(x, size), k, dims=(-2, -1))
        return x.flip(-1) if flip else x
    return view


def views(level: str) -> list[View]:
    """The views of a TTA level; the first is always the plain view."""
    if level not in TTA_LEVELS:
        raise ValueError(f"unknown TTA level {level!r}; choose one of {', '.join(TTA_LEVELS)}")
    plain: View = resize
    hflip: View = lambda x, size: resize(x, size).flip(-1)  # noqa: E731
    if level == "none":
        return [plain]
    if level == "flip":
        return [plain, hflip]
    if level == "crops":
        corners = [_crop(t, l) for t in (0, 1) for l in (0, 1)]
        return [plain, hflip, _crop(0.5, 0.5), *corners]
    return [_dihedral(k, f) for f in (False, True) for k in range(4)]


@dataclass
class Predictions:
    """Probabilities of the plain view and averaged over the TTA views, row for row."""

    plain: np.ndarray
    tta: np.ndarray


@dataclass
class Predictor:
    """A model and everything needed to turn cached items into probabilities."""

    model: torch.nn.Module
    activation: Callable            # the task's: sigmoid or softmax
    size: int
    normalize: Normalize
    device: torch.device
    autocast: Callable = contextlib.nullcontext
    channels_last: bool = False
    batch_size: int = 128

    @torch.no_grad()
    def __call__(self, array: np.ndarray, indices: np.ndarray, *, tta: str = "none", extra: np.ndarray | None = None,
                 show: bool = True, desc: str = "predict", dist: Dist = Dist()) -> Predictions:
        """Probabilities of the items `indices` of `array`. The plain view is the first TTA view,
        so asking for TTA costs no extra pass for the plain score. Under torchrun each rank
        predicts a shard and the shards are gathered back in the order of `indices`."""
        self.model.eval()
        view_fns = views(tta)
        plain, mean, positions = [], [], []
        n_batches = -(-len(indices) // (self.batch_size * dist.world))
        for pos, x in progress.bar(batches(array, indices, self.batch_size, self.device, rank=dist.rank,
                                           world=dist.world), total=n_batches, desc=desc, unit="batch", enabled=show):
            x = self.normalize(x)
            e = None if extra is None else torch.as_tensor(extra[pos], device=self.device)
            probs = []
            for view in view_fns:
                xv = view(x, self.size)
                if self.channels_last:
                    xv = xv.contiguous(memory_format=torch.channels_last)
                with self.autocast():
                    probs.append(self.activation(self.model(xv, e).float()))
            plain.append(probs[0])  # kept on the device: one copy back at the end, no sync per batch
            mean.append(torch.stack(probs).mean(0))
            positions.append(torch.as_tensor(pos))
        out = {"plain": _cat(plain), "tta": _cat(mean), "positions": _cat(positions, torch.long)}
        if dist.world > 1:
            out = _gather(out, indices, dist)
        return Predictions(out["plain"], out["tta"])


def _cat(parts: list, dtype=torch.float32) -> np.ndarray:
    return torch.cat(parts).cpu().numpy() if parts else torch.zeros(0, dtype=dtype).numpy()


def _gather(out: dict, indices: np.ndarray, dist: Dist) -> dict:
    """All ranks' shards, deduplicated and put back in the order of `indices`."""
    shards = dist.gather(out)
    positions = np.concatenate([s["positions"] for s in shards])
    where = {p: i for i, p in enumerate(positions)}  # padding repeats items: keep any one copy
    order = np.array([where[p] for p in indices], dtype=int)
    return {k: np.concatenate([s[k] for s in shards])[order] for k in ("plain", "tta")}
