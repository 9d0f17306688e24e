"""A held-out part of a real data folder that no recipe choice sees, and a run scored on it.

    python benchmarks/holdout.py split planet --data ../shared/data/planet --out /tmp/hold/planet
    kaggletools cv planet --data /tmp/hold/planet/tuning --folds 3 ...     # tune on the rest only
    kaggletools train planet --data /tmp/hold/planet/tuning ...            # the chosen recipe, once
    python benchmarks/holdout.py score RUN_DIR --held-out /tmp/hold/planet/held_out.csv
    python benchmarks/holdout.py score CV_DIR --held-out /tmp/hold/planet/held_out.csv  # a cv folder

`split` holds out `--frac` of the labelled items (kaggletools' own stratified `data.split`, seed 42
by default: the same held-out part as bench_dogs_cats.py and bench_planet.py), writes the rest as a
data folder (`tuning/`, through the competition's `sample_files`, with a few test items so that
`cv` and `run` find some) and the held-out list (`held_out.csv`: id, source file, targets).

`score` decodes the held-out items from their original files, predicts them with the run's model
(plain and with the recipe's TTA), applies the run's post-processing (what its submission used) and
prints the held-out score beside the run's own validation estimates (report.json): plain, TTA, the
honest cross-fitted score of the post-processing it submits with. JSON on stdout with `--json`.
A `cv` (or `blend`) folder is scored as its submission was made: every fold's model predicts the
held-out items, their probabilities are averaged and post-processed with the blend's choice; its
estimate is the out-of-fold one (every tuning item scored by the fold that did not train on it).
Benchmark code, not part of kaggletools.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def listed_names(path: Path) -> set[str]:
    """Every file name in a JSON file (strings at any depth), e.g. the Plant Seedlings held-out list
    {"held_out": {"held_out": {species: [file names]}}} of results/plant-seedlings-cv-20261206.json."""
    def walk(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from walk(v)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v)
    return {Path(v).name for v in walk(json.loads(path.read_text())["held_out"]["held_out"])}


def split(slug: str, data_dir: Path, out: Path, frac: float, seed: int, n_test: int,
          names: Path | None = None) -> dict:
    from kaggletools.competition import registry
    from kaggletools.data import items as data

    comp = registry.get(slug)
    items = data.train_items(comp, data_dir)
    if names is not None:  # a held-out list fixed before (its file names)
        listed = listed_names(names)
        held = items["source"].map(lambda f: Path(f).name in listed).to_numpy()
        if held.sum() != len(listed):
            raise SystemExit(f"{names}: {len(listed)} names listed, {int(held.sum())} found in {data_dir}")
    else:
        held = data.split(comp, items, frac, seed).valid
    test = comp.items(data_dir, "test")
    test = test.iloc[:n_test]
    if (out / "tuning").exists():
        raise SystemExit(f"{out / 'tuning'} exists; remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    comp.sample_files(data_dir, out / "tuning", items[~held], test)
    y = comp.targets(items)[held]
    table = pd.DataFrame({"id": items["id"][held].to_numpy(), "source": items["source"][held].to_numpy()})
    for i, name in enumerate(list(comp.classes)[: comp.n_outputs]):
        table[name] = y[:, i]
    table.to_csv(out / "held_out.csv", index=False)
    (out / "held_out.json").write_text(json.dumps({"competition": comp.slug, "data": str(data_dir.resolve()),
                                                  "frac": frac, "seed": seed, "names": str(names or ""), "n_tuning": int((~held).sum()),
                                                  "n_held_out": int(held.sum())}, indent=1))
    return {"tuning": str(out / "tuning"), "n_tuning": int((~held).sum()), "n_held_out": int(held.sum())}


def held_out_items(comp, held_out: Path) -> tuple[Path, pd.DataFrame]:
    """The held-out items (rows of the original data folder's labelled items) and that folder."""
    from kaggletools.data import items as data

    meta = json.loads((held_out.parent / "held_out.json").read_text())
    table = pd.read_csv(held_out, dtype={"id": str})
    source_dir = Path(meta["data"])
    every = data.train_items(comp, source_dir)
    return source_dir, every.set_index(every["id"].astype(str)).loc[table["id"]].reset_index(drop=True)


def score(run_dir: Path, held_out: Path, tta: str = "") -> dict:
    from kaggletools.steps.predict import SavedRun

    config = json.loads((run_dir / "config.json").read_text())
    if "blend" in config:
        return score_blend(run_dir, held_out, tta)
    saved = SavedRun.load(run_dir)
    comp, r = saved.competition, saved.recipe
    source_dir, items = held_out_items(comp, held_out)
    out = predict_items(saved, source_dir, items, tta or r.tta)
    y = comp.targets(items)
    post = saved.meta.get("post") or {}
    report = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").is_file() else {}
    name = comp.metric_name
    honest = (report.get("with_post") or {}).get("tta") or {}
    return {"run": str(run_dir), "competition": comp.slug, "n_held_out": len(items), "tta": tta or r.tta,
            "metric": name, "held_out": {"plain": float(comp.metric(y, out.plain)),
                                         "tta": float(comp.metric(y, out.tta)),
                                         "submitted": float(comp.metric(y, out.tta, post))},
            "run_estimate": {"n_valid": report.get("n_valid"),
                             "plain": (report.get("plain") or {}).get(name),
                             "tta": (report.get("with_tta") or {}).get(name),
                             "honest": honest, "spread": (report.get("with_post_spread") or {}).get("tta")}}


def score_blend(folder: Path, held_out: Path, tta: str = "") -> dict:
    """A blend's (a `cv` folder's) held-out score: each of its runs predicts the held-out items, the
    probabilities are averaged with the blend's weights and post-processed as its submission was;
    beside it the blend's own estimate (out of fold for a `cv`: every tuning item scored once)."""
    from kaggletools.score import validation
    from kaggletools.steps.predict import SavedRun

    report = json.loads((folder / "report.json").read_text())
    saved = [SavedRun.load(Path(r)) for r in report["runs"]]
    comp = saved[0].competition
    source_dir, items = held_out_items(comp, held_out)
    outs = [predict_items(s, source_dir, items, tta or s.recipe.tta) for s in saved]
    w = np.asarray(report["weights"], np.float64)
    plain = np.tensordot(w, np.stack([o.plain for o in outs]), 1)
    mean = np.tensordot(w, np.stack([o.tta for o in outs]), 1)
    y = comp.targets(items)
    name = comp.metric_name
    each = [single_split(s, y, o) for s, o in zip(saved, outs)]
    return {"run": str(folder), "competition": comp.slug, "n_held_out": len(items), "tta": tta or saved[0].recipe.tta,
            "metric": name, "runs": len(saved),
            "held_out": {"plain": float(comp.metric(y, plain)), "tta": float(comp.metric(y, mean)),
                         "submitted": float(comp.metric(y, mean, report["post"])),
                         "sampling": validation.sampling_spread(comp, y, mean, report["post"]),  # its own noise
                         "each_run": each},
            "run_estimate": {"n_valid": report.get("n_valid"), "validation": report.get("validation"),
                             "tta": (report.get("scores") or {}).get(name),
                             "honest": report.get("with_post"), "spread": report.get("with_post_spread"),
                             "sampling": report.get("sampling"), "folds": report.get("folds"),
                             "averaging": report.get("averaging"), "estimate": report.get("estimate")}}


def single_split(saved, y: np.ndarray, out) -> dict:
    """One run of a blend (a fold of a `cv`) as if trained alone: its own estimate (the honest score
    of what it submits, on its own validation items) and its held-out score with its own post-processing."""
    comp = saved.competition
    report = saved.run.load_json("report.json")
    honest = (report.get("with_post") or {}).get("tta") or {}
    estimate = honest.get("submitted", (report.get("with_tta") or {}).get(comp.metric_name))
    return {"n_valid": report.get("n_valid"), "estimate": estimate,
            "sampling_sd": (report.get("sampling") or {}).get("sd"),
            "held_out": float(comp.metric(y, out.tta, saved.meta.get("post") or {}))}


def predict_items(saved, data_dir: Path, items: pd.DataFrame, tta: str, amp: str = ""):
    """A saved run's predictions (plain and TTA) of labelled `items` of `data_dir`, decoded from their
    files as the test items are; `amp` (auto, off, bf16, fp16) overrides the device's precision."""
    import dataclasses

    from kaggletools.data import cache
    from kaggletools.model.device import Precision

    array = cache.load_items(saved.competition, data_dir, items, saved.recipe.cache_side, progress=False,
                             desc="decode held-out")
    extra = saved.competition.extra_features(items) if saved.meta["n_extra"] else None
    predictor = saved.predictor()
    if amp:
        predictor = dataclasses.replace(predictor, autocast=Precision.for_device(predictor.device, amp).autocast)
    return predictor(array, np.arange(len(items)), tta=tta,
                     extra=None if extra is None else np.asarray(extra, np.float32), show=False, desc="held-out")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    s = sub.add_parser("split", help="hold out a part; write the rest as a tuning data folder")
    s.add_argument("competition")
    s.add_argument("--data", required=True, type=Path)
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--frac", type=float, default=0.2)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--n-test", type=int, default=16, help="test items linked into tuning/ (cv and run want some)")
    s.add_argument("--names", type=Path, help="hold out the files a results JSON lists under held_out.held_out "
                                              "(Plant Seedlings' fixed 240) instead of a seeded split")
    c = sub.add_parser("score", help="score a finished run (or a cv / blend folder) on the held-out part")
    c.add_argument("run", type=Path)
    c.add_argument("--held-out", required=True, type=Path)
    c.add_argument("--tta", default="", help="TTA level (default: the run's recipe)")
    c.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.verb == "split":
        print(json.dumps(split(a.competition, a.data, a.out, a.frac, a.seed, a.n_test, a.names)))
        return
    result = score(a.run, a.held_out, a.tta)
    if a.json:
        print(json.dumps(result, indent=1))
        return
    h, e = result["held_out"], result["run_estimate"]
    print(f"{result['competition']}: {result['metric']} on {result['n_held_out']} held-out items: plain "
          f"{h['plain']:.4f}, TTA '{result['tta']}' {h['tta']:.4f}, as submitted {h['submitted']:.4f}")
    def fmt(v):
        return "-" if v is None else f"{v:.4f}"
    honest = ", ".join(f"{k} {fmt(v)}" for k, v in (e["honest"] or {}).items())
    print(f"  the run's own estimate ({e['n_valid']} validation items): plain {fmt(e.get('plain'))}, TTA {fmt(e['tta'])}; "
          f"honest, with post-processing: {honest or '-'}")
    if e.get("estimate"):  # a blend's (a cv's) estimate of its submission
        print(f"  its estimate of the submission: {e['estimate']['value']:.4f} ({e['estimate']['how']}); "
              f"held-out - estimate {h['submitted'] - e['estimate']['value']:+.4f}")


if __name__ == "__main__":
    sys.exit(main())
