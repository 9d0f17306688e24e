"""The Python API: one function per step of the loop; the CLI calls exactly these.

    download -> prepare -> (sample) -> train (split, fit, validate with TTA) -> predict -> submit
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kaggletools import cache, competition as registry, data, models, runs, submission
from kaggletools.competition import Competition
from kaggletools.loaders import Normalize, pick_device
from kaggletools.train import Data, Dist, Learner

SUBMISSIONS = Path("submissions")


def competitions() -> list[dict]:
    """What is registered: slug, title, task, metric."""
    return [registry.get(name).describe() for name in registry.names()]


def default_data_dir(name: str) -> Path:
    return Path("data") / registry.get(name).slug


# -- Kaggle -----------------------------------------------------------------------------------
def files(name: str) -> list:
    from kaggletools import kaggle_api

    return kaggle_api.list_files(registry.get(name).slug)


def download(name: str, data_dir: Path | None = None, file: str | None = None, force: bool = False) -> Path:
    """Download the competition's files (all, or one) and unpack them into `data_dir`."""
    from kaggletools import kaggle_api

    comp = registry.get(name)
    data_dir = Path(data_dir or default_data_dir(comp.slug))
    kaggle_api.download(comp.slug, data_dir, file=file, force=force)
    return prepare(comp, data_dir)


def submit(name: str, csv: Path, message: str = "kaggletools") -> None:
    """Validate nothing new here (predict already did); upload through the official client."""
    from kaggletools import kaggle_api

    kaggle_api.submit(registry.get(name).slug, Path(csv), message)


def submissions(name: str) -> pd.DataFrame:
    from kaggletools import kaggle_api

    return kaggle_api.submissions(registry.get(name).slug)


# -- data -------------------------------------------------------------------------------------
def prepare(name: str | Competition, data_dir: Path, add: list[Path] | None = None) -> Path:
    """Unpack what was downloaded (safe, atomic, idempotent). `add` brings in archives or
    folders obtained elsewhere (e.g. Planet's images, no longer served by the API): files are
    hard-linked (or copied) into the data folder, folders linked, then everything is unpacked."""
    comp = registry.get(name)
    data_dir = Path(data_dir)
    if add:
        data_dir.mkdir(parents=True, exist_ok=True)
        for path in map(Path, add):
            _bring(path, data_dir / path.name)
    if not data_dir.is_dir():
        raise registry.CompetitionError(f"{data_dir}: no such folder; run `download` first or give --data")
    comp.prepare(data_dir)
    return data_dir


def _bring(source: Path, target: Path) -> None:
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder to add")
    if target.exists() or target.is_symlink():
        if target.resolve() == source.resolve():
            return
        raise FileExistsError(f"{target} already exists; remove it or add a different path")
    if source.is_dir():
        target.symlink_to(source.resolve(), target_is_directory=True)
        return
    try:
        os.link(source, target)
    except OSError:
        import shutil

        shutil.copy2(source, target)


def sample(name: str, data_dir: Path, out: Path | None = None, n_train: int = 200, n_test: int = 100,
           seed: int = 0) -> Path:
    """A small stratified copy of the data as a new data folder."""
    return data.sample(registry.get(name), Path(data_dir), out, n_train, n_test, seed)


# -- training ---------------------------------------------------------------------------------
def _dist() -> Dist:
    """Join the torchrun job if launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as torch_dist

    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size())


def _barrier(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed as torch_dist

        torch_dist.barrier()


def _array(comp: Competition, data_dir: Path, items: pd.DataFrame, side: int, dist: Dist, progress: bool,
           desc: str) -> np.ndarray:
    """The decoded items; with several processes rank 0 decodes and the others wait, then read."""
    if dist.rank != 0:
        _barrier(dist)
    array = cache.load_items(comp, data_dir, items, side, progress=progress and dist.main, desc=desc)
    if dist.rank == 0:
        _barrier(dist)
    return array


def _normalize(comp: Competition, info: models.BackboneInfo, array: np.ndarray, train_idx: np.ndarray) -> Normalize:
    """Images: the weights' mean and std. Arrays: per-channel statistics of the training split."""
    if comp.kind == "image":
        return Normalize(info.mean, info.std)
    sample = np.asarray(array[np.sort(train_idx)[:4096]], dtype=np.float64)
    axes = tuple(range(sample.ndim - 1))
    return Normalize(tuple(float(m) for m in sample.mean(axes)), tuple(float(s) + 1e-6 for s in sample.std(axes)),
                     scale=1.0)


def _learner(comp, recipe, data_dir, items, valid, device, dist, progress, log, amp="auto", channels_last=None,
             compile=False, train_bn=False):
    extra = comp.extra_features(items) if recipe.extra else None
    torch.manual_seed(recipe.seed)  # the new head's initial weights: same seed, same run
    model, info = models.create(recipe.backbone, comp.n_outputs, recipe.pretrained,
                                0 if extra is None else extra.shape[1])
    array = _array(comp, data_dir, items, recipe.cache_side, dist, progress, "decode train")
    train_idx, valid_idx = np.flatnonzero(~valid), np.flatnonzero(valid)
    d = Data(array, comp.targets(items), train_idx, valid_idx, _normalize(comp, info, array, train_idx),
             None if extra is None else np.asarray(extra, np.float32))
    learner = Learner(comp, model, d, recipe, device, amp=amp, channels_last=channels_last, compile=compile,
                      train_bn=train_bn, progress=progress, log=log, dist=dist)
    return learner, info


def lr_find(name: str, data_dir: Path, out: Path | None = None, device: str | None = None,
            progress: bool = True, **recipe):
    """Run the LR finder on the frozen model; save its plot; return the result (with `plot_path`)."""
    from kaggletools.lr_finder import lr_find as find

    comp = registry.get(name)
    r = comp.recipe.replace(**recipe)
    items = data.train_items(comp, data_dir)
    valid = data.split(comp, items, r.valid_frac, r.seed)
    learner, _ = _learner(comp, r, Path(data_dir), items, valid, pick_device(device), Dist(), progress, None)
    result = find(learner)
    result.plot_path = result.plot(Path(out or f"lr_find-{comp.slug}.png"))
    return result


def train(name: str, data_dir: Path, *, runs_dir: Path = Path("runs"), precompute: int = 0, folds: int = 0,
          fold: int = 0, device: str | None = None, amp: str = "auto", channels_last: bool | None = None,
          compile: bool = False, train_bn: bool = False, progress: bool = True, **recipe) -> runs.Run | None:
    """Split, fit (fine-tune, or head on precomputed features then optional unfrozen epochs),
    validate with and without TTA, tune post-processing, and save everything in a run folder.
    `precompute=3, epochs=0` is fast.ai lesson 1's head-only training on cached features.
    `train_bn` lets the frozen body's batch-norm layers follow the new data (see train.py).
    Under torchrun every rank trains its shard; only rank 0 writes the run folder.
    Returns the Run on rank 0 (None on other ranks of a torchrun job)."""
    comp = registry.get(name)
    r = comp.recipe.replace(**recipe)
    data_dir = Path(data_dir)
    dist = _dist()
    dev = pick_device(device)
    if dist.world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    items = data.train_items(comp, data_dir)
    fold_of = data.folds(comp, items, folds, r.seed) if folds else None
    valid = data.valid_mask(comp, items, r.valid_frac, r.seed, folds, fold, fold_of)
    run = runs.Run.create(Path(runs_dir) / comp.slug, f"{r.backbone}" + (f"-fold{fold}" if folds else "")) \
        if dist.main else None
    options = {"precompute": precompute, "folds": folds, "fold": fold, "amp": amp, "compile": compile,
               "train_bn": train_bn, "world_size": dist.world}
    try:
        learner, info = _learner(comp, r, data_dir, items, valid, dev, dist, progress,
                                 run.log_epoch if run else None, amp, channels_last, compile, train_bn)
        if run:
            run.save_json("config.json", {"competition": comp.slug, "data_dir": str(data_dir.resolve()),
                                          "recipe": dataclasses.asdict(r), "options": options,
                                          "backbone": dataclasses.asdict(info), "device": str(dev)})
            run.save_json("versions.json", runs.versions())
            run.save_table("split.csv", pd.DataFrame({"id": items["id"], "is_valid": valid,
                                                      **({"fold": fold_of} if folds else {})}))
            if progress:
                print(f"run folder: {run.path}\nweights: {info.weights or 'random init (no pretrained weights)'}"
                      f" [{info.weights_file or '-'}], device: {dev}, train {int((~valid).sum())}, valid {int(valid.sum())}")
        if precompute:
            from kaggletools import precompute as pre

            pre.fit_head(learner, precompute, r.lr, level="flip" if r.tta == "flip" else "none")
            learner.fit_unfrozen(r.epochs, r.lr / 2)
        else:
            learner.fine_tune()
        report = _validate(comp, learner, items, r, run)
        if run:
            meta = {"competition": comp.slug, "recipe": dataclasses.asdict(r), "backbone": info.name,
                    "n_extra": learner.model.n_extra, "mean": list(learner.data.normalize.mean),
                    "std": list(learner.data.normalize.std), "scale": learner.data.normalize.scale,
                    "post": report["post"], "classes": list(comp.classes)}
            run.save_weights(learner.model, meta)
            run.save_json("report.json", report)
            _plot_history(learner.history, run.file("history.png"))
    except BaseException as e:
        if run:  # an unfinished run folder says so; `predict` refuses it (no model.pt)
            run.save_json("failed.json", {"error": f"{type(e).__name__}: {e}"})
        raise
    return run


def _validate(comp: Competition, learner: Learner, items: pd.DataFrame, r, run) -> dict:
    """Validation predictions with and without TTA; post-processing tuned on the TTA ones."""
    d = learner.data
    if len(d.valid_idx) == 0:
        return {"post": {}, "note": "no validation items"}
    out = learner.predict(d.array, d.valid_idx, r.tta, d.extra, desc="valid (TTA)")
    y = d.y[d.valid_idx]
    post = comp.fit_post(y, out["tta"])
    report = {"post": post, "tta": r.tta, "n_valid": int(len(d.valid_idx)),
              "plain": learner.scores(y, out["plain"], post), "with_tta": learner.scores(y, out["tta"], post),
              "epochs": learner.history}
    if run:
        cols = list(comp.classes)
        table = pd.DataFrame({"id": items["id"].to_numpy()[d.valid_idx]})
        for i, c in enumerate(cols):
            table[f"{c}"] = y[:, i]
            table[f"{c}_prob"] = out["plain"][:, i]
            table[f"{c}_prob_tta"] = out["tta"][:, i]
        run.save_table("valid_predictions.csv", table)
        if learner.progress:
            print(f"validation ({len(d.valid_idx)} items) {comp.metric_name}: "
                  f"{report['plain'][comp.metric_name]:.4f} plain, {report['with_tta'][comp.metric_name]:.4f} "
                  f"with TTA '{r.tta}'" + (f"; error {report['plain']['error_rate']:.2%} plain, "
                                           f"{report['with_tta']['error_rate']:.2%} with TTA"
                                           if "error_rate" in report["plain"] else "") + f"; post {post}")
    return report


def _plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    table = pd.DataFrame(history)
    fig, ax = plt.subplots(figsize=(6, 4))
    for col in ("train_loss", "valid_loss"):
        if col in table:
            ax.plot(table["epoch"], table[col], marker="o", label=col)
    ax.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    partial = path.with_name(f".{path.name}.partial.png")
    fig.savefig(partial, dpi=100)
    plt.close(fig)
    os.replace(partial, path)


# -- prediction -------------------------------------------------------------------------------
def load_run(run_dir: Path, device: str | None = None):
    """The competition, recipe, model and normalisation saved in a run folder."""
    run = runs.Run.open(run_dir)
    state = run.load_weights()
    meta = state["meta"]
    comp = registry.get(meta["competition"])
    r = comp.recipe.replace(**meta["recipe"])
    model, _ = models.create(r.backbone, len(meta["classes"]), pretrained=False, n_extra=meta["n_extra"])
    model.load_state_dict(state["state_dict"])
    dev = pick_device(device)
    return run, comp, r, model.to(dev).eval(), Normalize(tuple(meta["mean"]), tuple(meta["std"]), meta["scale"]), meta, dev


def predict_probs(run_dir: Path, data_dir: Path | None = None, *, tta: str | None = None,
                  device: str | None = None, progress: bool = True):
    """Test-set probabilities from a run folder alone: (competition, test items, probs, post),
    also saved as the run's test_predictions.csv."""
    from kaggletools.predict import predict as infer
    from kaggletools.train import amp_context, default_channels_last

    run, comp, r, model, normalize, meta, dev = load_run(run_dir, device)
    comp.check_post(meta["post"])
    data_dir = Path(data_dir or run.load_json("config.json")["data_dir"])
    items = data.test_items(comp, data_dir)
    array = cache.load_items(comp, data_dir, items, r.cache_side, progress=progress, desc="decode test")
    extra = comp.extra_features(items) if meta["n_extra"] else None
    probs = infer(model, array, np.arange(len(items)), r.size, normalize, dev, tta=tta or r.tta,
                  extra=None if extra is None else np.asarray(extra, np.float32), batch_size=r.batch_size * 2,
                  amp=amp_context(dev), channels_last=default_channels_last(dev), progress=progress, desc="test")["tta"]
    table = pd.DataFrame({"id": items["id"]})
    for i, c in enumerate(comp.classes):
        table[f"{c}_prob"] = probs[:, i]
    run.save_table("test_predictions.csv", table)
    return comp, items, probs, meta["post"]


def write_submission(comp: Competition, items: pd.DataFrame, probs: np.ndarray, post: dict, data_dir: Path,
                     out: Path, overwrite: bool = False) -> Path:
    """Build the submission, validate it (test ids, sample submission's columns) and write it atomically."""
    df = comp.submission(list(items["id"]), probs, post)
    submission.validate(comp, df, items["id"], comp.sample_submission(data_dir), name=str(out))
    return submission.write(df, out, overwrite)


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if Path(out).exists() and not overwrite:  # fail before the expensive part
        raise submission.SubmissionError(f"{out} already exists; choose another name or pass --overwrite")


def predict(run_dir: Path, data_dir: Path | None = None, *, tta: str | None = None, out: Path | None = None,
            overwrite: bool = False, device: str | None = None, progress: bool = True) -> Path:
    """Predict the test set from a run folder alone, build the submission, validate it and
    write it atomically (default `submissions/<slug>-<run>.csv`). Returns the file's path."""
    config = runs.Run.open(run_dir).load_json("config.json")
    out = Path(out) if out else SUBMISSIONS / f"{config['competition']}-{Path(run_dir).name}.csv"
    _refuse_existing(out, overwrite)
    data_dir = Path(data_dir or config["data_dir"])
    comp, items, probs, post = predict_probs(run_dir, data_dir, tta=tta, device=device, progress=progress)
    return write_submission(comp, items, probs, post, data_dir, out, overwrite)


def cross_validate(name: str, data_dir: Path, *, folds: int = 5, runs_dir: Path = Path("runs"),
                   out: Path | None = None, overwrite: bool = False, progress: bool = True,
                   device: str | None = None, **train_options) -> dict:
    """K-fold: train one model per fold, score the out-of-fold predictions, and average the
    folds' test probabilities into one validated submission. Post-processing (clip,
    thresholds) is tuned on all out-of-fold predictions together."""
    comp = registry.get(name)
    data_dir = Path(data_dir)
    if folds < 2:
        raise registry.CompetitionError(f"k-fold needs at least 2 folds, got {folds}")
    cv = runs.Run.create(Path(runs_dir) / comp.slug, f"cv{folds}")
    out = Path(out) if out else SUBMISSIONS / f"{comp.slug}-{cv.path.name}.csv"
    _refuse_existing(out, overwrite)
    oof, test_probs, fold_runs = [], [], []
    for k in range(folds):
        fold_run = train(comp.slug, data_dir, runs_dir=cv.path, folds=folds, fold=k, progress=progress,
                         device=device, **train_options)
        fold_runs.append(str(fold_run.path))
        oof.append(pd.read_csv(fold_run.file("valid_predictions.csv"), dtype={"id": str}).assign(fold=k))
        _, items, probs, _ = predict_probs(fold_run.path, data_dir, device=device, progress=progress)
        test_probs.append(probs)
    oof_table = pd.concat(oof, ignore_index=True)
    cv.save_table("oof_predictions.csv", oof_table)
    classes = list(comp.classes)
    y = oof_table[classes].to_numpy(np.float32)
    p = oof_table[[f"{c}_prob_tta" for c in classes]].to_numpy(np.float32)
    post = comp.fit_post(y, p)
    report = {"folds": folds, "runs": fold_runs, "post": post, "oof": {comp.metric_name: comp.metric(y, p, post)},
              "per_fold": {str(k): comp.metric(y[oof_table["fold"] == k], p[oof_table["fold"] == k], post)
                           for k in range(folds)}}
    mean = np.mean(test_probs, axis=0)
    table = pd.DataFrame({"id": items["id"]})
    for i, c in enumerate(classes):
        table[f"{c}_prob"] = mean[:, i]
    cv.save_table("test_predictions.csv", table)
    report["submission"] = str(write_submission(comp, items, mean, post, data_dir, out, overwrite))
    cv.save_json("report.json", report)
    if progress:
        print(f"out-of-fold {comp.metric_name}: {report['oof'][comp.metric_name]:.4f} over {len(y)} items; "
              f"per fold {report['per_fold']}")
    return {"run": str(cv.path), **report}


def validate_file(name: str, csv: Path, data_dir: Path) -> None:
    """Check a submission file against the test items (and the sample submission when present)."""
    comp = registry.get(name)
    df = submission.read(Path(csv))
    submission.validate(comp, df, data.test_items(comp, Path(data_dir))["id"], comp.sample_submission(data_dir),
                        name=str(csv))


def run(name: str, data_dir: Path | None = None, *, download_data: bool = False, add: list[Path] | None = None,
        out: Path | None = None,
        overwrite: bool = False, submit_message: str | None = None, **train_options) -> dict:
    """The whole loop: (download), prepare, train, predict with TTA, validated submission, (submit).

    Under torchrun, rank 0 downloads and unpacks while the others wait, all ranks train, and
    rank 0 alone predicts and writes (and submits) the submission; the others return {}."""
    comp = registry.get(name)
    data_dir = Path(data_dir or default_data_dir(comp.slug))
    if out:
        _refuse_existing(out, overwrite)
    dist = _dist()
    if dist.main:
        if download_data:
            download(comp.slug, data_dir)
            if add:
                prepare(comp, data_dir, add)
        else:
            prepare(comp, data_dir, add)
    _barrier(dist)  # the other ranks read the data only once it is unpacked
    the_run = train(comp.slug, data_dir, **train_options)
    if the_run is None:  # not rank 0: training is done, rank 0 writes the submission
        return {}
    csv = predict(the_run.path, data_dir, out=out, overwrite=overwrite, device=train_options.get("device"),
                  progress=train_options.get("progress", True))
    if submit_message:
        submit(comp.slug, csv, submit_message)
    report = the_run.load_json("report.json")
    return {"run": str(the_run.path), "submission": str(csv), "plain": report.get("plain"),
            "with_tta": report.get("with_tta"), "post": report.get("post")}
