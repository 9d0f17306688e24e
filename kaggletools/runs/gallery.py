"""Pictures of items with their labels: grids of decoded items (a run's top losses) and of augmented
training inputs exactly as the training loop makes them (`show_batch`, fastai's `show_batch`).

Images are drawn in colour; arrays (such as the iceberg's radar bands) as their first channel in
greyscale, each stretched between its 1st and 99th percentile.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from kaggletools.io import plots
import kaggletools.competition.tasks as tasks
COLUMNS = 4
WRAP = 30  # characters per title line


def label_text(task: tasks.Task, classes, row, negative: str = "") -> str:
    """What one row of targets (or of 0/1 decisions) says, in words (binary: the positive class
    or `negative`, the competition's negative_class)."""
    row = np.asarray(row, np.float64)
    if isinstance(task, tasks.MultiClass):
        return str(classes[int(row.argmax())])
    if isinstance(task, tasks.Binary):
        return task.names(classes, negative)[int(row[0] > 0.5)]
    tags = [str(c) for c, v in zip(classes, row) if v > 0.5]
    return " ".join(tags) if tags else "(no tags)"


def displayable(item: np.ndarray, kind: str) -> tuple[np.ndarray, str | None]:
    """(pixels in [0, 1], colour map) for imshow: RGB images from their 0-255 values, arrays as
    their first channel in greyscale."""
    x = np.asarray(item, np.float32)
    if kind == "image":
        return np.clip(x / 255.0, 0.0, 1.0), None
    band = x[..., 0]
    lo, hi = np.percentile(band, (1, 99))
    return np.clip((band - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0), "gray"


def grid(items, titles: list[str], kind: str, path: Path, title: str = "", colours: list[str] | None = None) -> Path:
    """A grid of (H, W, C) items, each under its (wrapped) title; written atomically as PNG."""
    n = len(items)
    if n == 0:
        raise ValueError("no items to draw")
    cols = min(COLUMNS, n)
    rows = math.ceil(n / cols)
    wrapped = ["\n".join(part for line in str(t).splitlines() for part in (textwrap.wrap(line, WRAP) or [""]))
               for t in titles]
    lines = max(text.count("\n") + 1 for text in wrapped)
    fig, axes = plots.figure(cols * 2.5, rows * (2.4 + 0.17 * lines) + 0.5, nrows=rows, ncols=cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item, text, colour in zip(axes.flat, items, wrapped, colours or ["#222222"] * n):
        pixels, cmap = displayable(item, kind)
        ax.imshow(pixels, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(text, fontsize=7, color=colour)
    if title:
        fig.suptitle(title, fontsize=10)
    return plots.save(fig, path)
