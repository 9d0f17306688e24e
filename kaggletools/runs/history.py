"""Plots of a run's training: losses per batch and per epoch, the competition's metric, the
phases (frozen, precomputed, unfrozen) shaded and named, whole-number epochs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from kaggletools.io import plots

PHASE_COLOURS = {"frozen": "#dbe9f6", "precomputed": "#e5f5e0", "unfrozen": "#fdeadb"}


def history_plot(history: list[dict], batch_losses: list[dict], competition, path: Path) -> Path | None:
    """history.png: training loss per batch (faint) and per epoch, validation loss, and the metric
    on a second axis; each phase shaded."""
    if not history:
        return None
    from matplotlib.ticker import MaxNLocator

    epochs = pd.DataFrame(history)
    fig, ax = plots.figure(7, 4.2)
    start = 0
    for phase, group in epochs.groupby((epochs["phase"] != epochs["phase"].shift()).cumsum()):
        end = int(group["epoch"].max())
        name = group["phase"].iloc[0]
        ax.axvspan(start, end, color=PHASE_COLOURS.get(name, "#eeeeee"), alpha=0.8, lw=0)
        ax.text((start + end) / 2, 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=8, color="#555555")
        start = end
    if batch_losses:
        batches = pd.DataFrame(batch_losses)
        ax.plot(batches["epoch"], batches["loss"], color="#9ecae1", lw=0.8, label="train loss (batch)")
    ax.plot(epochs["epoch"], epochs["train_loss"], "o-", color="#1f77b4", label="train loss (epoch)")
    if "valid_loss" in epochs:
        ax.plot(epochs["epoch"], epochs["valid_loss"], "s-", color="#d62728", label="valid loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_xlim(0, max(1, int(epochs["epoch"].max())))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = ax.get_legend_handles_labels()
    metric = competition.metric_name
    if metric in epochs:
        right = ax.twinx()
        right.plot(epochs["epoch"], epochs[metric], "^--", color="#2ca02c", label=f"valid {metric}")
        right.set_ylabel(metric)
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, fontsize=8, loc="best")
    ax.set_title(f"{competition.slug}: training history", pad=14)
    return plots.save(fig, path)
