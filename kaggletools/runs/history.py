"""Plots of a run's training, one y-axis per quantity, panels sharing the epoch axis: the losses
(per batch, per epoch, validation), the competition's metric, and (from batches.csv) the
learning rate and, for one-cycle, the momentum per batch. The phases (frozen, precomputed,
unfrozen) are shaded in every panel and named on the top one; legends sit beside the panels,
outside the data."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from kaggletools.io import plots

PHASE_COLOURS = {"frozen": "#dbe9f6", "precomputed": "#e5f5e0", "unfrozen": "#fdeadb"}


def phase_spans(epochs: pd.DataFrame) -> list[tuple[str, float, float]]:
    """(phase, first epoch start, last epoch end) for each run of consecutive epochs of one phase."""
    spans, start = [], 0
    for _, group in epochs.groupby((epochs["phase"] != epochs["phase"].shift()).cumsum()):
        end = int(group["epoch"].max())
        spans.append((str(group["phase"].iloc[0]), start, end))
        start = end
    return spans


def panels(epochs: pd.DataFrame, batches: pd.DataFrame, metric: str) -> list[str]:
    """Which panels the history has: loss always; the metric when recorded; lr and momentum when
    batches.csv has them (momentum only when it moves, as under one-cycle)."""
    out = ["loss"]
    if metric in epochs and epochs[metric].notna().any() and not same_as_loss(epochs, metric):
        out.append("metric")
    if "lr" in batches and batches["lr"].notna().any():
        out.append("lr")
    if "mom" in batches and batches["mom"].notna().any() and batches["mom"].nunique() > 1:
        out.append("mom")
    return out


def same_as_loss(epochs: pd.DataFrame, metric: str) -> bool:
    """Whether the metric is the validation loss itself (log loss): one quantity, one line."""
    if "valid_loss" not in epochs or metric not in epochs:
        return False
    a, b = epochs["valid_loss"].astype(float), epochs[metric].astype(float)
    return bool(((a - b).abs() <= 1e-9 * (1 + b.abs())).all())


def history_plot(history: list[dict], batch_losses: list[dict], competition, path: Path) -> Path | None:
    """history.png (see the module's docstring); None without any epoch."""
    if not history:
        return None
    from matplotlib.ticker import MaxNLocator

    epochs, batches = pd.DataFrame(history), pd.DataFrame(batch_losses)
    metric = competition.metric_name
    names = panels(epochs, batches, metric)
    heights = {"loss": 3.0, "metric": 2.0, "lr": 1.5, "mom": 1.2}
    fig, axes = plots.figure(8.5, 1.0 + sum(heights[n] for n in names), nrows=len(names), ncols=1, sharex=True,
                             squeeze=False, gridspec_kw={"height_ratios": [heights[n] for n in names]})
    axes = dict(zip(names, axes[:, 0]))
    spans = phase_spans(epochs)
    for name, ax in axes.items():
        for phase, start, end in spans:
            ax.axvspan(start, end, color=PHASE_COLOURS.get(phase, "#eeeeee"), alpha=0.8, lw=0)
            if name == "loss":
                ax.text((start + end) / 2, 1.0, phase, transform=ax.get_xaxis_transform(), ha="center",
                        va="bottom", fontsize=8, color="#555555")
    ax = axes["loss"]
    if not batches.empty and "loss" in batches:
        ax.plot(batches["epoch"], batches["loss"], color="#9ecae1", lw=0.8, label="train (batch)")
    ax.plot(epochs["epoch"], epochs["train_loss"], "o-", color="#1f77b4", label="train (epoch)")
    if "valid_loss" in epochs and epochs["valid_loss"].notna().any():
        same = f" (= {metric})" if same_as_loss(epochs, metric) else ""
        ax.plot(epochs["epoch"], epochs["valid_loss"], "s-", color="#d62728", label=f"valid{same}")
    ax.set_ylabel("loss")
    if "metric" in axes:
        axes["metric"].plot(epochs["epoch"], epochs[metric], "^-", color="#2ca02c", label=f"valid {metric}")
        better = "higher" if competition.greater_is_better else "lower"
        axes["metric"].set_ylabel(f"{metric}\n({better} is better)")
    if "lr" in axes:
        axes["lr"].plot(batches["epoch"], batches["lr"], color="#9467bd", lw=1, label="learning rate (head)")
        axes["lr"].set_yscale("log")
        axes["lr"].set_ylabel("lr")
    if "mom" in axes:
        axes["mom"].plot(batches["epoch"], batches["mom"], color="#8c564b", lw=1, label="momentum (beta1)")
        axes["mom"].set_ylabel("momentum")
    for a in axes.values():
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
        a.grid(axis="y", color="#dddddd", lw=0.5)
    bottom = axes[names[-1]]
    bottom.set_xlabel("epoch")
    bottom.set_xlim(0, max(1, int(epochs["epoch"].max())))
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{competition.slug}: training history", fontsize=11)
    return plots.save(fig, path)
