"""`kaggletools runs --html FILE`: one self-contained page comparing past runs side by side, per
competition: their scores (the `runs` table), their curves overlaid (validation metric, training
and validation loss per epoch) and the recipe and run options that differ between them."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from kaggletools.errors import RunError
from kaggletools.io import plots
from kaggletools.runs import listing
from kaggletools.runs import report as html
from kaggletools.runs.folder import Run

MAX_CURVES = 12                       # runs drawn per plot: the best ones
SAME_EVERYWHERE = {"runs_dir", "progress", "device"}   # how, not what: never a difference worth a column
COLUMNS = ["run", "status", "backbone", "size", "epochs", "plain", "tta", "seconds"]


def differing(configs: dict[str, dict]) -> pd.DataFrame:
    """Recipe and option fields whose values differ between the runs (one row per run)."""
    flat = {name: {**(c.get("recipe") or {}), **{k: v for k, v in (c.get("options") or {}).items()
                                                 if k not in SAME_EVERYWHERE}}
            for name, c in configs.items()}
    fields = sorted({k for values in flat.values() for k in values})
    varying = [k for k in fields
               if len({json.dumps(v.get(k), sort_keys=True, default=str) for v in flat.values()}) > 1]
    return pd.DataFrame([{"run": name, **{k: values.get(k) for k in varying}} for name, values in flat.items()],
                        columns=["run", *varying])


def curves(runs: dict[str, Path], metric: str, title: str, path: Path) -> Path | None:
    """Validation metric and losses per epoch of each run, overlaid, one colour per run."""
    histories = {}
    for name, folder in runs.items():
        metrics = Path(folder) / "metrics.csv"
        if metrics.is_file():
            try:
                histories[name] = pd.read_csv(metrics)
            except (OSError, ValueError):
                continue
    if not histories:
        return None
    fig, axes = plots.figure(10, 6.5, nrows=2, ncols=1, sharex=True, squeeze=False)
    top, bottom = axes[0, 0], axes[1, 0]
    colours = [f"C{i}" for i in range(10)]
    for i, (name, h) in enumerate(histories.items()):
        colour = colours[i % len(colours)]
        if metric in h:
            top.plot(h["epoch"], h[metric], "o-", color=colour, label=name, ms=3)
        if "valid_loss" in h:
            bottom.plot(h["epoch"], h["valid_loss"], "-", color=colour, label=f"{name} valid")
        bottom.plot(h["epoch"], h["train_loss"], ":", color=colour, label=f"{name} train")
    top.set_ylabel(f"valid {metric}")
    bottom.set_ylabel("loss (solid valid, dotted train)")
    bottom.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_title(title, fontsize=10)
    for ax in (top, bottom):
        ax.grid(color="#dddddd", lw=0.5)
    top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
    return plots.save(fig, path)


def section(slug: str, group: pd.DataFrame, root: Path, workdir: Path) -> str:
    """One competition's comparison: scores, curves, differences."""
    out = [f"<h2>{html.e(slug)}</h2>"]
    metric = str(group["metric"].dropna().iloc[0]) if group["metric"].notna().any() else "metric"
    names = {str(p): _name(Path(p), root, slug) for p in group["run"]}
    shown = group.assign(run=[names[str(p)] for p in group["run"]])
    out.append(f"<p>Scores: {html.e(metric)} on the validation items, plain and with TTA; best first.</p>")
    out.append(html.table([[_plain(v) for v in row] for row in shown[COLUMNS].itertuples(index=False)], COLUMNS))
    best = {names[str(p)]: Path(p) for p in group["run"].head(MAX_CURVES)}
    picture = curves(best, metric, f"{slug}: {len(best)} run(s)", workdir / f"{len(os.listdir(workdir))}.png")
    if picture is not None:
        out.append(html.image(picture, f"curves of {slug}", "Each colour one run: the validation metric (top), "
                                                            "validation (solid) and training (dotted) loss."))
    configs = {}
    for p in group["run"]:
        try:
            configs[names[str(p)]] = Run(Path(p)).load_json("config.json")
        except (OSError, ValueError, RunError):  # a damaged folder is listed, not compared
            continue
    diff = differing(configs)
    if len(configs) > 1 and len(diff.columns) > 1:
        out.append("<h3>What differs</h3>" + html.table(
            [[_plain(v) for v in row] for row in diff.itertuples(index=False)], list(diff.columns)))
    elif len(configs) > 1:
        out.append("<p>The runs share every recipe field and option.</p>")
    return "".join(out)


def render(root: Path, competition: str | None = None) -> str:
    table = listing.table(Path(root), competition)
    parts = [f"<h1>Runs below {html.e(root)}</h1>"]
    if table.empty:
        parts.append("<p class='note'>No runs.</p>")
    with tempfile.TemporaryDirectory(prefix="kaggletools-compare-") as workdir:
        for slug, group in table.groupby(table["competition"].fillna("(damaged)"), sort=True):
            if slug == "(damaged)":
                parts.append("<h2>Damaged folders</h2>" + html.table(
                    [[r["run"], r["backbone"]] for _, r in group.iterrows()], ["folder", "why"]))
                continue
            parts.append(section(str(slug), group, Path(root), Path(workdir)))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>runs: {html.e(root)}</title>"
            f"<style>{html.STYLE}</style></head>\n<body>{''.join(parts)}</body></html>\n")


def write(root: Path, out: Path, competition: str | None = None) -> Path:
    """The page, written atomically to `out`."""
    text = render(root, competition)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return Run(out.parent).save_text(out.name, text)


def _name(path: Path, root: Path, slug: str) -> str:
    for base in (root / slug, root):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return path.name


def _plain(value):
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value
