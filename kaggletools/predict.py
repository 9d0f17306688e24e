"""Inference and test-time augmentation: averaging probabilities over fixed views of each item.

Levels, each a superset of the one before where that makes sense:
  none      the plain view
  flip      plain + horizontal flip
  crops     flip + the four corner crops and the centre crop at 7/8 of the side
  dihedral  the 8 symmetries of the square (satellite and radar chips have no up or down)
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from kaggletools.loaders import batches, resize

TTA_LEVELS = ("none", "flip", "crops", "dihedral")
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


@torch.no_grad()
def predict(model, array: np.ndarray, indices: np.ndarray, size: int, normalize, device: torch.device, *,
            tta: str = "none", extra: np.ndarray | None = None, batch_size: int = 64, amp=None,
            channels_last: bool = False, progress: bool = True, desc: str = "predict",
            rank: int = 0, world: int = 1) -> dict[str, np.ndarray]:
    """Probabilities of the items `indices` of `array`: {"plain": (n, k), "tta": (n, k)}.

    The plain view is the first TTA view, so asking for TTA costs no extra pass for the plain
    score. With `world` > 1 each rank predicts a shard; positions are returned for gathering.
    """
    model.eval()
    view_fns = views(tta)
    out_plain, out_tta, positions = [], [], []
    n_batches = -(-len(indices) // (batch_size * world))
    for pos, x in tqdm(batches(array, indices, batch_size, device, rank=rank, world=world), total=n_batches,
                       desc=desc, unit="batch", disable=not progress, leave=False):
        x = normalize(x)
        e = None if extra is None else torch.as_tensor(extra[pos], device=device)
        probs = []
        for view in view_fns:
            xv = view(x, size)
            if channels_last:
                xv = xv.contiguous(memory_format=torch.channels_last)
            with amp():
                probs.append(torch.sigmoid(model(xv, e).float()))
        out_plain.append(probs[0].cpu())
        out_tta.append(torch.stack(probs).mean(0).cpu())
        positions.append(torch.as_tensor(pos))
    return {"plain": torch.cat(out_plain).numpy(), "tta": torch.cat(out_tta).numpy(),
            "positions": torch.cat(positions).numpy()}
