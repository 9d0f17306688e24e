"""The Python API: one short function per step of the loop; the command line calls exactly these.

    download -> prepare -> (sample) -> train (split, fit, validate with TTA) -> predict -> validate -> submit

Recipe fields (what to train) and run options (how) are keyword arguments of `train`, `cv`,
`run`, `lr_find` and `check`: any field of kaggletools.options.Recipe or RunOptions.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from kaggletools import options as opts
from kaggletools.model import names as backbone_names
import kaggletools.competition.registry as registry
from kaggletools.competition.interface import Competition
from kaggletools.steps import preflight  # light: checks before anything long starts
# The Kaggle verbs (any competition on Kaggle: files, download, submit, ..., kernels, datasets, bundle)
from kaggletools.steps.kaggle_verbs import (bundle, datasets, download, files, kaggle_competitions,  # noqa: F401
                                            kaggle_page, kaggle_slug, kernels, leaderboard,
                                            leaderboard_download, submissions, submit, wait_for_score)

SUBMISSIONS = Path("submissions")


def competitions() -> list[dict]:
    """What is registered: slug, aliases, title, task, metric."""
    return [registry.describe(registry.get(name)) for name in registry.names()]


def default_data_dir(name: str) -> Path:
    return Path("data") / kaggle_slug(name)


# -- data -------------------------------------------------------------------------------------------
def prepare(name: str | Competition, data_dir: Path, add: list[Path] | None = None, quiet: bool = False,
            work: Path | None = None) -> Path:
    """Unpack what was downloaded (safe, atomic, idempotent). `add` brings in archives or folders
    obtained elsewhere (e.g. Planet's images, no longer served by the API). A read-only `data_dir`
    (Kaggle's /kaggle/input/<slug>) is used in place: what it holds packed is unpacked into its
    mirror under `work` (default kaggletools.io.places.work_root()). Returns the folder to use."""
    from kaggletools.steps import workspace

    return workspace.prepare(registry.get(name), Path(data_dir), add, quiet, work)


def sample(name: str, data_dir: Path, out: Path | None = None, n_train: int = 200, n_test: int = 100,
           seed: int = 0) -> Path:
    """A small stratified copy of the data as a new data folder."""
    from kaggletools.data import items as data

    from kaggletools.steps import infer, workspace

    comp = infer.competition(name, Path(data_dir))  # registered, or inferred from the folder
    return data.sample(comp, workspace.data_folder(comp, Path(data_dir)), out, n_train, n_test, seed)


# -- training ---------------------------------------------------------------------------------------
class Settings(NamedTuple):
    competition: Competition
    recipe: opts.Recipe
    options: opts.RunOptions


def settings(name: str | Competition, overrides: dict, data_dir: Path | None = None, **how) -> Settings:
    """The competition, its recipe and default run options with `overrides` applied to each; a slug no
    module registers is inferred from `data_dir` (kaggletools.steps.infer.settled: `how`)."""
    from kaggletools.steps import infer

    comp, rest = infer.settled(name, data_dir, overrides, **how)
    return Settings(comp, *opts.resolve(comp.recipe, rest))


def new(name: str, data_dir: Path, out: Path | None = None, overwrite: bool = False, **inference) -> Path:
    """Write the module of the competition inferred from `data_dir` (fields of Inference, group_by)."""
    from kaggletools.steps import infer

    return infer.new(name, Path(data_dir), out, overwrite, **inference)


def check(name: str, data_dir: Path, **overrides) -> dict:
    """A dry run: every option, the items per split and class, one decoded item of each split, one
    augmented batch through a forward and backward pass, and the time an epoch will take."""
    from kaggletools.steps import check as dryrun

    comp, recipe, run_options = settings(name, overrides, data_dir, full=True)
    from kaggletools.steps import workspace

    return dryrun.check(comp, workspace.data_folder(comp, Path(data_dir)), recipe, run_options)


def lr_find(name: str, data_dir: Path, out: Path | None = None, suggest: str = "valley", **overrides):
    """The LR finder on the frozen model; saves its plot with the suggestions marked; returns the
    result (`suggestions`: method -> (lr, loss), the first one is `suggestion`; `plot_path`).
    `suggest`: comma-separated methods of fastai's, valley (default), steep, minimum, slide."""
    from kaggletools.fit.lr_finder import parse_methods

    methods = parse_methods(suggest)
    comp, recipe, run_options = settings(name, overrides, data_dir)
    backbone_names.check_all(recipe, run_options)
    from kaggletools.model import device
    from kaggletools.fit.assemble import Experiment

    from kaggletools.steps import workspace

    data_dir = workspace.data_folder(comp, Path(data_dir))
    learner, _ = Experiment.from_folder(comp, data_dir, recipe, run_options).learner(device.pick(run_options.device))
    result = learner.lr_find(methods=methods)
    result.plot(Path(out or f"lr_find-{comp.slug}.png"))
    return result


def train(name: str, data_dir: Path, *, resume: Path | None = None, folder: Path | None = None,
          work: Path | None = None, **overrides):
    """Split, fit, validate with TTA, tune post-processing and save a run folder (see README).
    `resume=RUN` continues an interrupted run from its last checkpoint (its own recipe and options;
    `overrides` may change only how it runs: device, progress). Returns the Run (None on ranks
    other than 0 under torchrun)."""
    if resume:
        from kaggletools.steps import train as training

        allowed = {"device", "progress"}
        if set(overrides) - allowed:
            raise opts.OptionError(f"--resume continues a run with its own recipe and options; only "
                                   f"{', '.join(sorted(allowed))} may change, not {sorted(set(overrides) - allowed)}")
        saved = training.resume_settings(resume)
        return training.train(registry.get(saved.competition), saved.data_dir, saved.recipe,
                              saved.options.replace(**overrides), resume=resume)
    comp, recipe, run_options = settings(name, overrides, data_dir, work=work)
    backbone_names.check_all(recipe, run_options)  # in milliseconds, before torch is even imported
    from kaggletools.steps import train as training

    from kaggletools.steps import workspace

    data_dir = workspace.data_folder(comp, Path(data_dir), work, quiet=not run_options.progress)
    if folder is None:  # a fold of `cv` was checked by cv
        preflight.check(comp, data_dir, recipe, run_options)
    return training.train(comp, data_dir, recipe, run_options, folder=folder)


def predict(run_dir: Path, data_dir: Path | None = None, *, tta: str | None = None, out: Path | None = None,
            overwrite: bool = False, device: str = "", progress: bool = True, work: Path | None = None) -> Path:
    """Predict the test set from a finished run folder alone (it may be read-only), build the
    submission, validate it and write it atomically (default `submissions/<slug>-<run>.csv`; in a
    Kaggle notebook /kaggle/working/submission.csv). A read-only data folder: as in `prepare`."""
    from kaggletools.steps import predict as inference

    return inference.predict(run_dir, data_dir, tta=tta, out=out, overwrite=overwrite, device=device,
                             progress=progress, submissions=SUBMISSIONS, work=work)


def interpret(run_dir: Path, data_dir: Path | None = None, show: bool = True) -> list[Path]:
    """From a run folder alone: the interpretation plots that fit the task (confusion matrix and
    most-confused pairs, top losses, thresholds, probabilities) and report.html, written again.
    Returns the files written; notes (e.g. no validation items) are printed. `data_dir` overrides
    the run's data folder (for the top-loss images)."""
    from kaggletools import progress
    from kaggletools.runs import report as html_report
    from kaggletools.runs import interpret as interpretation
    from kaggletools.runs import folder as runs
    import kaggletools.competition.inferred as inferred

    run = runs.Run.open(run_dir, finished=False)
    with runs.damaged(run.file("config.json")):
        comp = inferred.for_run(run.load_json("config.json"))
    written = interpretation.write(run, comp, data_dir=data_dir)
    for note in interpretation.notes(run):
        progress.write(f"note: {note}", show)
    return written + [html_report.write(run, comp)]


def show_batch(name: str, data_dir: Path, out: Path | None = None, **overrides) -> Path:
    """A grid of augmented training inputs exactly as the training loop makes them, de-normalised,
    with their labels (default show_batch-<slug>.png); creates no run folder."""
    comp, recipe, run_options = settings(name, overrides, data_dir)
    backbone_names.check_all(recipe, run_options)
    from kaggletools.steps import show_batch as gallery

    from kaggletools.steps import workspace

    return gallery.show_batch(comp, workspace.data_folder(comp, Path(data_dir)), recipe, run_options,
                              Path(out or f"show_batch-{comp.slug}.png"))


def cross_validate(name: str, data_dir: Path, *, folds: int = 5, out: Path | None = None, overwrite: bool = False,
                   **overrides) -> dict:
    """K-fold: one run per fold (in one folder), then the folds blended: out-of-fold score and
    post-processing, fold-averaged test probabilities, one validated submission. With `repeats`
    R > 1 the k folds are drawn and trained R times (seeds seed, seed + 1, ...; folders
    repeat<r>-fold<k>): each item is scored by R models, and the report estimates from that what
    the average of all R x k models scores (kaggletools.steps.blend)."""
    comp, recipe, run_options = settings(name, {**overrides, "folds": folds}, data_dir)
    backbone_names.check_all(recipe, run_options)
    from kaggletools.steps import blend as blending
    from kaggletools.steps import predict as inference
    from kaggletools.runs import folder as runs
    if out:
        inference.refuse_existing(out, overwrite)
    preflight.check(comp, Path(data_dir), recipe, run_options, predicts=True, out=out, submissions=SUBMISSIONS)
    cv = runs.Run.create(Path(run_options.runs_dir) / comp.slug, f"cv{folds}" + (
        f"x{run_options.repeats}" if run_options.repeats > 1 else ""))
    out = Path(out) if out else SUBMISSIONS / f"{comp.slug}-{cv.path.name}.csv"
    inference.refuse_existing(out, overwrite)
    repeats = run_options.repeats
    fold_runs = [train(comp, data_dir, folder=cv.path / (f"repeat{r}-fold{k}" if repeats > 1 else f"fold{k}"),
                       **{**overrides, "folds": folds, "fold": k, "seed": recipe.seed + r})
                 for r in range(repeats) for k in range(folds)]
    return blending.blend([r.path for r in fold_runs], data_dir=data_dir, folder=cv.path, out=out,
                          overwrite=overwrite, show=run_options.progress)


def blend(run_dirs: list[Path], *, weights: list[float] | None = None, data_dir: Path | None = None,
          out: Path | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Average the test probabilities of finished runs of one competition into one validated submission."""
    from kaggletools.steps import blend as blending

    return blending.blend(run_dirs, weights=weights, data_dir=data_dir, out=out, overwrite=overwrite, show=progress)


def runs(name: str | None = None, runs_dir: Path = Path("runs")) -> pd.DataFrame:
    """Past runs: backbone, size, epochs, scores plain and with TTA, time, status; best first."""
    from kaggletools.runs import listing

    return listing.table(Path(runs_dir), name)


def compare_runs(name: str | None = None, runs_dir: Path = Path("runs"), out: Path = Path("runs.html")) -> Path:
    """One HTML page comparing past runs: scores, curves overlaid, what differs (kaggletools.runs.compare)."""
    from kaggletools.runs import compare

    return compare.write(Path(runs_dir), Path(out), name)


def validate(name: str | Competition, csv: Path, data_dir: Path | None = None) -> None:
    """Check a submission file as Kaggle would: against the test items of `data_dir` (or its sample
    submission) when given, else against the competition's format. A slug no module registers is
    inferred from `data_dir`, as `check` infers it."""
    from kaggletools.steps import infer
    from kaggletools.steps import predict as inference

    inference.validate_file(infer.competition(name, data_dir, show=False), csv, data_dir)


def run(name: str, data_dir: Path | None = None, *, download_data: bool = False, add: list[Path] | None = None,
        out: Path | None = None, overwrite: bool = False, submit_message: str | None = None,
        work: Path | None = None, **overrides) -> dict:
    """The whole loop: (download), prepare, train, predict with TTA, validated submission, (submit).
    Under torchrun, rank 0 downloads and unpacks while the others wait, all ranks train, and
    rank 0 alone predicts, writes (and submits); the others return {}."""
    data_dir = Path(data_dir or default_data_dir(name))
    early = download_data and isinstance(name, str) and kaggle_slug(name) not in registry.names()  # no module:
    if early:  # the download says what the competition is, so it comes first
        download(name, data_dir, quiet=not overrides.get("progress", True))
    comp, recipe, run_options = settings(name, overrides, data_dir, need_test=True, work=work)
    backbone_names.check_all(recipe, run_options)
    from kaggletools.steps import predict as inference
    from kaggletools.steps import train as training
    from kaggletools.model.dist import Dist

    if out:
        inference.refuse_existing(out, overwrite)
    dist = Dist.from_env()
    if dist.main:
        if download_data and not early:
            download(comp.slug, data_dir, quiet=not run_options.progress)
        data_dir = prepare(comp, data_dir, add, quiet=not run_options.progress, work=work)
    dist.barrier()  # the other ranks read the data only once it is unpacked
    if not dist.main:
        from kaggletools.steps import workspace

        data_dir = workspace.writable_folder(data_dir, work)  # where rank 0 unpacked a read-only one
    preflight.check(comp, data_dir, recipe, run_options, predicts=True, submit=bool(submit_message), out=out,
                    submissions=SUBMISSIONS)
    the_run = training.train(comp, data_dir, recipe, run_options)
    if the_run is None:
        return {}
    csv = predict(the_run.path, data_dir, out=out, overwrite=overwrite, device=run_options.device,
                  progress=run_options.progress)
    if submit_message:
        submit(comp, csv, submit_message, data_dir)
    report = the_run.load_json("report.json")
    return {"run": str(the_run.path), "submission": str(csv), "plain": report.get("plain"),
            "with_tta": report.get("with_tta"), "post": report.get("post")}


def demo(name: str | None = None, workdir: Path = Path("demo"), progress: bool = True) -> dict:
    """The whole loop offline on a competition's generated download (default: Dogs vs. Cats redux)."""
    from kaggletools.steps import demo as demos

    return demos.main(name, Path(workdir), progress)
