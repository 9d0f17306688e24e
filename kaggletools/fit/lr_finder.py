"""The learning-rate finder's result: the sweep (run by Learner.lr_find, a phase of the one
training loop), the suggested rates and the plot."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class LRFind:
    lrs: list[float]
    losses: list[float]        # smoothed
    suggestion: float          # steepest descent of the smoothed loss
    minimum: float             # the rate at the lowest loss, divided by 10
    plot_path: Path | None = None

    def plot(self, path: Path) -> Path:
        from kaggletools.io import plots

        fig, ax = plots.figure(6, 4)
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        ax.set_title("learning-rate finder")
        ax.axvline(self.suggestion, color="red", linestyle="--", label=f"steepest {self.suggestion:.1e}")
        ax.axvline(self.minimum, color="green", linestyle=":", label=f"minimum/10 {self.minimum:.1e}")
        ax.legend()
        self.plot_path = plots.save(fig, path)
        return self.plot_path


def suggest(lrs: list[float], losses: list[float]) -> LRFind:
    """The steepest descent of the smoothed loss, and the minimum divided by 10."""
    if len(lrs) < 2:
        raise ValueError("the LR finder needs at least two batches; use more training items or a smaller "
                         "--batch-size")
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
