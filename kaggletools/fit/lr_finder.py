"""The learning-rate finder's result: the sweep (run by Learner.lr_find, a phase of the one
training loop), the suggested rates and the plot.

Suggestions as fastai 2's `lr_find(suggest_funcs=...)`, on the smoothed losses without the first
tenth of the sweep and its last five steps (and nothing from the first non-finite loss on):
- valley (the default): the longest run of falling losses (longest decreasing subsequence), and
  the rate half-way into it (start + int(len/3) + int(len/6), fastai's index);
- steep: where the loss falls fastest against log(lr);
- minimum: the rate at the lowest loss, divided by 10;
- slide: fastai's interval slide rule (the rate where the slope stops changing, from the right).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METHODS = ("valley", "steep", "minimum", "slide")
COLOURS = {"valley": "#d62728", "steep": "#ff7f0e", "minimum": "#2ca02c", "slide": "#9467bd"}


@dataclass
class LRFind:
    lrs: list[float]
    losses: list[float]        # smoothed
    suggestions: dict = field(default_factory=dict)  # method -> (lr, loss at that lr), first = the one to use
    plot_path: Path | None = None

    @property
    def suggestion(self) -> float:
        """The first suggestion's rate (valley unless other methods were asked for)."""
        return next(iter(self.suggestions.values()))[0]

    def text(self) -> str:
        return ", ".join(f"{lr:.2e} ({name})" for name, (lr, _) in self.suggestions.items())

    def plot(self, path: Path) -> Path:
        from kaggletools.io import plots

        fig, ax = plots.figure(7, 4.2)
        ax.plot(self.lrs, self.losses, color="#1f77b4", label="loss (smoothed)")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        ax.set_title("learning-rate finder")
        finite = [v for v in self.losses if np.isfinite(v)]
        if finite:  # the explosion at the end would squash the curve
            low, start = min(finite), finite[0]
            ax.set_ylim(low - 0.1 * max(start - low, 1e-3), max(start, low) + 0.5 * max(start - low, 1e-3))
        for name, (lr, loss) in self.suggestions.items():
            colour = COLOURS.get(name, "#333333")
            ax.axvline(lr, color=colour, linestyle=":", lw=1)
            ax.plot([lr], [loss], "o", color=colour, label=f"{name} {lr:.1e}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        self.plot_path = plots.save(fig, path)
        return self.plot_path


def parse_methods(text: str | None) -> tuple[str, ...]:
    """`valley,steep` -> ("valley", "steep"); unknown names are refused, naming the valid ones."""
    names = tuple(n.strip() for n in (text or "valley").split(",") if n.strip()) or ("valley",)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"--suggest {','.join(unknown)}: unknown; choose from {', '.join(METHODS)} "
                         "(comma-separated)")
    return tuple(dict.fromkeys(names))


def _window(lrs: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fastai's window: skip the first tenth and the last five steps, stop at the first non-finite loss."""
    n = len(lrs)
    lo, hi = n // 10, n - 5
    if hi - lo < 3:  # a short sweep: keep all of it
        lo, hi = 0, n
    lrs, losses = lrs[lo:hi], losses[lo:hi]
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad):
        lrs, losses = lrs[:bad[0]], losses[:bad[0]]
    return lrs, losses


def valley(lrs: np.ndarray, losses: np.ndarray) -> int:
    """Index half-way into the longest decreasing run of losses (fastai's `valley`)."""
    n = len(losses)
    run = np.ones(n, dtype=int)  # length of the longest decreasing subsequence ending at i
    end = 0
    for i in range(1, n):
        earlier = np.flatnonzero(losses[:i] > losses[i])
        if len(earlier):
            run[i] = run[earlier].max() + 1
        if run[i] > run[end]:
            end = i
    start = end - run[end]
    third = (end - start) / 3
    return max(0, min(n - 1, start + int(third) + int(third / 2)))


def steep(lrs: np.ndarray, losses: np.ndarray) -> int:
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    return int(np.argmin(slopes))


def minimum(lrs: np.ndarray, losses: np.ndarray) -> int:
    return int(np.argmin(losses))


def slide(lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005) -> float:
    """The rate where the loss's slope stops changing by more than `thresh`, scanning from the right."""
    grad = np.gradient(losses)
    right = len(losses) - 1
    left = right - lr_diff
    found = lrs[max(left, 0)]
    while left >= 0 and abs(grad[right] - grad[left]) > thresh:
        found = lrs[left]
        right, left = right - 1, left - 1
    return float(found)


def suggest(lrs: list[float], losses: list[float], methods=("valley",)) -> LRFind:
    """The sweep with the suggestions of `methods` (in that order)."""
    if len(lrs) < 2:
        raise ValueError("the LR finder needs at least two batches; use more training items or a smaller "
                         "--batch-size")
    x, y = _window(np.asarray(lrs, float), np.asarray(losses, float))
    if len(x) < 2:
        raise ValueError("the LR finder's loss was not finite from the start; lower the starting rate or check "
                         "the data")
    found = {}
    for name in parse_methods(",".join(methods)):
        if name == "slide":
            lr = slide(x, y)
        else:
            lr = float(x[{"valley": valley, "steep": steep, "minimum": minimum}[name](x, y)])
            lr = lr / 10 if name == "minimum" else lr
        found[name] = (lr, float(np.interp(np.log(lr), np.log(x), y)))  # where it sits on the curve
    return LRFind(list(lrs), list(losses), found)
