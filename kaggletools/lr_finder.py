"""The learning-rate finder: raise the rate exponentially over mini-batches (body frozen, as
fastai's `lr_find` runs on a fresh frozen learner), stop when the loss explodes, suggest a rate,
and save the curve as a PNG. The model's weights are restored afterwards."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kaggletools import models


@dataclass
class LRFind:
    lrs: list[float]
    losses: list[float]        # smoothed
    suggestion: float          # steepest descent of the smoothed loss
    minimum: float             # the rate at the lowest loss, divided by 10

    def plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        ax.axvline(self.suggestion, color="red", linestyle="--", label=f"steepest {self.suggestion:.1e}")
        ax.axvline(self.minimum, color="green", linestyle=":", label=f"minimum/10 {self.minimum:.1e}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return Path(path)


def lr_find(learner, start: float = 1e-7, end: float = 10.0, steps: int = 100, beta: float = 0.98) -> LRFind:
    """Sweep the head's learning rate from `start` to `end` over up to `steps` batches."""
    saved = copy.deepcopy(learner.model.state_dict())
    models.freeze(learner.model)
    head = learner.model.head
    opt = learner._optimizer([{"params": list(head.parameters()), "lr": start}])
    ratio = (end / start) ** (1 / max(steps - 1, 1))
    lrs, losses, avg, best, step = [], [], 0.0, math.inf, 0
    learner.model.body.eval()
    head.train()
    while step < steps:
        for x, y, e in learner._train_batches(step):
            lr = start * ratio ** step
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.no_grad(), learner.amp():
                feats = learner.body(x).flatten(1).float()
            loss = F.binary_cross_entropy_with_logits(learner.model.classify(feats, e), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            avg = beta * avg + (1 - beta) * loss.item()
            smooth = avg / (1 - beta ** (step + 1))
            lrs.append(lr)
            losses.append(smooth)
            best = min(best, smooth)
            step += 1
            if step >= steps or smooth > 4 * best or not math.isfinite(smooth):
                step = steps
                break
    learner.model.load_state_dict(saved)
    return _suggest(lrs, losses)


def _suggest(lrs: list[float], losses: list[float]) -> LRFind:
    lrs_a, losses_a = np.array(lrs), np.array(losses)
    cut = max(2, int(len(lrs_a) * 0.9))  # ignore the explosion at the end
    lo, hi = min(5, cut - 2), cut
    if hi - lo >= 2:
        slopes = np.gradient(losses_a[lo:hi], np.log(lrs_a[lo:hi]))
        steepest = float(lrs_a[lo + int(np.argmin(slopes))])
    else:
        steepest = float(lrs_a[0])
    minimum = float(lrs_a[int(np.argmin(losses_a[:cut]))] / 10)
    return LRFind(lrs, losses, steepest, minimum)
