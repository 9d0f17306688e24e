"""Does a run's estimate predict its held-out score? Rows of `cv` folders scored on held-out parts.

    python benchmarks/estimates.py collect benchmarks/results/item2.json planet-s11=CV_DIR:/tmp/hold/planet-s11/held_out.csv ...
    python benchmarks/estimates.py collect benchmarks/results/item2.json planet-s11=SCORE.json   # holdout.py score --json
    python benchmarks/estimates.py table benchmarks/results/item2.json [--only x2-]

`collect` scores each `cv` (or blend) folder on its held-out part with `holdout.score` (every fold
model predicts the held-out items; averaged and post-processed as the cv's submission was) and keeps
one row per name in the JSON file (a name already there is kept, not scored again). `table` prints
the markdown rows of benchmarks/README.md ("Cross-fitted, with the fold average estimated") and the
summary figures:

- mean |held-out - estimate| of the cv's `estimate` (over the rows, and per competition, each
  competition then counting once), of one model's out-of-fold score (what one
  draw of folds reports), and of each fold model taken as a `train` run (its own estimate on its
  validation items against its own held-out score);
- the signed mean with better-is-positive, and its standard error;
- how much of the gap the held-out part's own sampling explains: a held-out part of n items moves
  the score by its sampling sd whatever the estimate, so sqrt(mean gap^2 - mean sd^2) is the
  estimate's own error, what a large held-out set would see (x 0.8 for the mean absolute value of
  a normal error). The sd is taken two ways: the held-out part's bootstrap sd, and the one a part
  of its size has on average (`expected_held_out_sd`); the single splits' gaps the second way too.
Benchmark code, not part of kaggletools.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HALF_NORMAL = (2 / np.pi) ** 0.5  # mean |e| / sd(e) for a normal error e


def row(name: str, s: dict) -> dict:
    """The figures `table` needs from a cv folder's held-out score (`holdout.score`'s result)."""
    e, h = s["run_estimate"], s["held_out"]
    honest = (e.get("honest") or {}).get("submitted", e.get("tta"))
    estimate = (e.get("estimate") or {}).get("value", honest)
    averaging = e.get("averaging") or {}
    return {"name": name, "competition": s["competition"], "metric": s["metric"], "n_oof": e["n_valid"],
            "n_held_out": s["n_held_out"], "cv_estimate": estimate,
            "one_model_oof": averaging.get("one_model", honest),
            "cv_sampling_sd": (e.get("sampling") or {}).get("sd"), "folds": e.get("folds"),
            "cv_held_out": h["submitted"], "held_out_sampling_sd": (h.get("sampling") or {}).get("sd"),
            "cv_gap": h["submitted"] - estimate,
            "single": [{**x, "gap": x["held_out"] - x["estimate"]} for x in h["each_run"]], "raw": s}


def collect(path: Path, specs: list[str]) -> dict:
    book = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    for spec in specs:
        name, _, rest = spec.partition("=")
        folder, _, held_out = rest.rpartition(":")
        if not (name and (folder and held_out or rest.endswith(".json"))):
            raise SystemExit(f"{spec}: expected NAME=CV_DIR:HELD_OUT_CSV or NAME=SCORE.json")
        if name in book["rows"]:
            continue
        if folder and held_out:
            import holdout

            scored = holdout.score(Path(folder), Path(held_out))
        else:  # what `holdout.py score CV_DIR --held-out ... --json` printed
            scored = json.loads(Path(rest).read_text())
        book["rows"][name] = row(name, scored)
        path.write_text(json.dumps(book, indent=1))  # after each row: a long collect keeps what it scored
        print(f"{name}: scored", file=sys.stderr)
    return book


def one_model_oof(r: dict) -> float | None:
    """One fold model's out-of-fold score (what one draw of folds reports); a row collected before
    it was kept reads it from the cv's averaging parts (None for one draw)."""
    if r.get("one_model_oof") is not None:
        return r["one_model_oof"]
    return ((((r.get("raw") or {}).get("run_estimate") or {}).get("averaging")) or {}).get("one_model")


def better_is_positive(slug: str) -> int:
    from kaggletools.competition import registry

    return 1 if registry.get(slug).greater_is_better else -1


def summary(rows: list[dict]) -> dict:
    """Mean |gap| of the three estimates, the signed mean (better-is-positive) with its standard
    error, and the held-out sampling's share of the gap."""
    sign = np.array([better_is_positive(r["competition"]) for r in rows])
    gap = np.array([r["cv_gap"] for r in rows])
    one = np.array([r["cv_held_out"] - one_model_oof(r) for r in rows if one_model_oof(r) is not None])
    single = np.array([x["gap"] for r in rows for x in r["single"]])
    per_comp: dict[str, list[float]] = {}
    for r in rows:
        per_comp.setdefault(r["competition"], []).append(abs(r["cv_gap"]))
    by_comp = {c: float(np.mean(v)) for c, v in per_comp.items()}
    return {"rows": len(rows), "mean_abs_gap": float(np.mean(np.abs(gap))),
            "mean_abs_gap_by_competition": by_comp,  # the "on average across competitions":
            "mean_abs_gap_across_competitions": float(np.mean(list(by_comp.values()))),  # each counts once
            "mean_abs_gap_one_model_oof": float(np.mean(np.abs(one))) if len(one) else None,
            "mean_abs_gap_single_split": float(np.mean(np.abs(single))) if len(single) else None,
            "single_split_models": int(len(single)),
            "signed_mean": float(np.mean(sign * gap)),
            "signed_se": float(np.std(sign * gap, ddof=1) / np.sqrt(len(gap))) if len(gap) > 1 else None,
            "single_split_held_out_noise": _without(single, np.array([expected_held_out_sd(r) for r in rows
                                                                      for _ in r["single"]])) if len(single) else None,
            "held_out_noise": {how: _without(gap, sd) for how, sd in (
                ("bootstrap", np.array([r["held_out_sampling_sd"] or 0.0 for r in rows])),
                ("expected", np.array([expected_held_out_sd(r) for r in rows])))}}


def expected_held_out_sd(r: dict) -> float:
    """The sampling sd a held-out part of this size has on average: the out-of-fold sampling sd
    scaled from n_oof to n_held_out items. The held-out part's own bootstrap sd says how its own
    items vary, which for a heavy-tailed score (log loss: a few confident mistakes) is small exactly
    when the draw was lucky."""
    return float((r["cv_sampling_sd"] or 0.0) * (r["n_oof"] / r["n_held_out"]) ** 0.5)


def _without(gap: np.ndarray, sd: np.ndarray) -> dict:
    """The gap's part that the held-out sampling (sd per row) explains, and the rest, the estimate's
    own error: sqrt(mean gap^2 - mean sd^2) (0 when sampling explains it all), with the mean
    absolute values of normal errors of those sizes."""
    floor = float(np.sqrt(np.mean(sd ** 2)))
    own = float(np.sqrt(max(0.0, np.mean(gap ** 2) - floor ** 2)))
    return {"sampling_rms": floor, "sampling_mean_abs": HALF_NORMAL * floor,
            "own_rms": own, "own_mean_abs": HALF_NORMAL * own}


def table(rows: list[dict]) -> str:
    lines = ["| competition (metric) | held-out part | held-out items | estimate | held-out, as submitted | "
             "held-out - estimate | held-out sd | 1 model OOF |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        one = one_model_oof(r)
        lines.append(f"| {r['competition']} ({r['metric']}) | {r['name']} | {r['n_held_out']} | {r['cv_estimate']:.4f} | "
                     f"{r['cv_held_out']:.4f} | {r['cv_gap']:+.4f} | {(r['held_out_sampling_sd'] or 0):.4f} | "
                     f"{'-' if one is None else f'{one:.4f}'} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    c = sub.add_parser("collect", help="score cv folders on their held-out parts into the JSON file")
    c.add_argument("results", type=Path)
    c.add_argument("specs", nargs="+", metavar="NAME=CV_DIR:HELD_OUT_CSV|NAME=SCORE.json")
    t = sub.add_parser("table", help="the markdown table and summary of the JSON file's rows")
    t.add_argument("results", type=Path)
    t.add_argument("--only", default="", help="rows whose name starts with this (e.g. x2- for two draws)")
    a = p.parse_args(argv)
    if a.verb == "collect":
        collect(a.results, a.specs)
        return
    rows = [r for name, r in json.loads(a.results.read_text())["rows"].items() if name.startswith(a.only)]
    if not rows:
        raise SystemExit(f"{a.results}: no rows" + (f" named {a.only}*" if a.only else ""))
    print(table(rows))
    print(json.dumps(summary(rows), indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))  # holdout.py beside it
    sys.exit(main())
