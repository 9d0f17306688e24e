"""`kaggletools runs`: past runs below a folder as one table, best first within each competition."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

import kaggletools.competition.registry as registry
import kaggletools.competition.inferred as inferred
from kaggletools.errors import CompetitionError, RunError
from kaggletools.runs.folder import Run, runs_under


def table(root: Path, competition: str | None = None) -> pd.DataFrame:
    """Past runs below `root` (one competition's, or all): backbone, size, epochs, scores plain and
    with TTA, seconds, status; finished runs best first within each competition."""
    known = competition in registry.names() or competition in registry.aliases()
    wanted = (registry.get(competition).slug if known else competition) if competition else None  # or inferred
    rows, higher = [], {}
    for run in runs_under(root):
        try:
            row = _row(run, higher)
        except (RunError, CompetitionError, KeyError, TypeError, ValueError, AttributeError) as e:
            row = {"competition": None, "run": str(run.path), "status": "damaged", "backbone": str(e)[:80]}
        if wanted and row["competition"] != wanted:
            continue
        rows.append(row)
    df = pd.DataFrame(rows, columns=["competition", "run", "status", "backbone", "size", "epochs", "metric",
                                     "plain", "tta", "seconds"])
    if df.empty:
        return df
    order = list(df.index[df["competition"].isna()])  # damaged folders first: they need looking at
    for slug, group in df.groupby("competition", sort=True):
        score = group["tta"].fillna(group["plain"])
        order += list(group.assign(_done=group["status"] != "finished", _score=-score if higher[slug] else score)
                      .sort_values(["_done", "_score"], na_position="last").index)
    return df.loc[order].reset_index(drop=True)


def _row(run: Run, higher: dict) -> dict:
    """One run as a row of `table` (its metric's direction into `higher`); damaged files raise."""
    config = run.load_json("config.json")
    slug = config.get("competition")
    recipe, options, status = config.get("recipe", {}), config.get("options", {}), run.status()
    report = run.load_json("report.json") if run.file("report.json").is_file() else {}
    comp = inferred.for_run(config) if slug else None  # registered, or rebuilt from the recorded inference
    metric = comp.metric_name if comp else None
    if comp:
        higher[slug] = comp.greater_is_better
    plain, tta = report.get("plain") or report.get("scores") or {}, report.get("with_tta") or {}
    return {"competition": slug, "run": str(run.path), "status": status,
            "backbone": recipe.get("backbone", "blend" if "blend" in config else ""),
            "size": recipe.get("size"), "epochs": _epochs(recipe, options), "metric": metric,
            "plain": plain.get(metric), "tta": tta.get(metric), "seconds": report.get("seconds")}


def _epochs(recipe: dict, options: dict) -> str:
    first = options.get("precompute") or recipe.get("freeze_epochs", 0)
    return f"{first}+{recipe.get('epochs', 0)}"
