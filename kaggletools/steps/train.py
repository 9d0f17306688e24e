"""The `train` step: cheap checks first, then a run folder, decoding, fitting with a checkpoint
after every epoch, validation and, last of all, the weights. Resuming an interrupted run reads
its recipe, options and checkpoint from the folder and continues where it stopped."""
from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from kaggletools import progress, signals
from kaggletools.model import device as devices
from kaggletools.runs import folder as runs
from kaggletools.score import validation
from kaggletools.competition.interface import Competition
import kaggletools.competition.inferred as inferred
from kaggletools.model.dist import Dist
from kaggletools.errors import OptionError, RunError
from kaggletools.fit.assemble import Experiment
from kaggletools.model.names import check_all
from kaggletools.options import Recipe, RunOptions
from kaggletools.fit.learner import Learner, Position


def check_options(recipe: Recipe, options: RunOptions) -> None:
    """Every option, the backbone's name included, before anything is decoded or written."""
    check_all(recipe, options)
    if recipe.valid_frac == 0 and not options.folds and not options.post_from:
        progress.write("note: --valid-frac 0 trains on every labelled item; post-processing (clip, thresholds) "
                       "stays at its defaults unless --post-from RUN gives a validated run's", options.progress)
    if options.precompute and recipe.train_bn:
        progress.write("note: --precompute replaces the frozen phase, so the recipe's train_bn does nothing: the "
                       "features are computed with the body's pretrained batch-norm statistics", options.progress)


def post_from(competition: Competition, run_dir: str) -> dict | None:
    """The post-processing of a finished run of the same competition."""
    if not run_dir:
        return None
    run = runs.Run.open(run_dir)
    config = run.load_json("config.json")
    with runs.damaged(run.file("config.json")):
        if config["competition"] != competition.slug:
            raise OptionError(f"--post-from {run_dir} is a run of {config['competition']}, not {competition.slug}")
    post = run.load_json("report.json").get("post", {})
    competition.check_post(post)
    return post


class Checkpoints:
    """After every epoch: metrics, a resumable checkpoint and, with --keep best, the best weights.
    Every rank tracks the best epoch (the validation scores are gathered, so all agree) and keeps
    its weights in memory; rank 0 (`run`) also writes them, so a resumed run finds them."""

    def __init__(self, run: runs.Run | None, competition: Competition, keep: str, resumed: dict | None = None,
                 run_dir: Path | None = None):
        self.run, self.competition, self.keep = run, competition, keep
        self.best = (resumed or {}).get("best") or {}
        self.best_weights = None
        if self.best and run_dir is not None:
            self.best_weights = runs.Run(run_dir).load_tensors(runs.BEST)["model"]

    def __call__(self, learner: Learner, position: Position) -> None:
        state = learner.state(position)  # a collective under torchrun: every rank takes part
        row = learner.history[-1]
        score = row.get(self.competition.metric_name)
        improved = self.keep == "best" and score is not None and self._better(score)
        if improved:
            self.best = {"epoch": row["epoch"], "score": float(score)}
            self.best_weights = state["model"]
        if self.run is None:
            return
        if improved:
            self.run.save_tensors(runs.BEST, {"model": state["model"]})
        self.run.save_table("metrics.csv", pd.DataFrame(learner.history))
        self.run.save_table("batches.csv", pd.DataFrame(learner.batch_losses))
        self.run.save_tensors(runs.CHECKPOINT, {**state, "best": self.best})

    def restore_best(self, learner: Learner) -> None:
        """The best epoch's weights back into the model (every rank), with --keep best."""
        if self.best_weights is not None:
            learner.model.load_state_dict(self.best_weights)

    def _better(self, score: float) -> bool:
        if not self.best:
            return True
        return score > self.best["score"] if self.competition.greater_is_better else score < self.best["score"]


def train(competition: Competition, data_dir: Path, recipe: Recipe, options: RunOptions,
          resume: Path | None = None, folder: Path | None = None) -> runs.Run | None:
    """Split, fit, validate (with TTA, tuned post-processing, honest scores) and save everything in
    a run folder; under torchrun every rank trains its shard and rank 0 writes. Returns the Run on
    rank 0 (None on the other ranks). `folder`: the run folder's exact path (default
    <runs>/<slug>/<time>-<backbone>)."""
    check_options(recipe, options)
    given_post = post_from(competition, options.post_from)
    dist = Dist.from_env()
    resumed = runs.Run.open(resume, finished=False) if resume else None
    lock = resumed.lock() if resumed is not None and dist.main else None  # one process trains in a folder
    try:
        return _train(competition, data_dir, recipe, options, dist, given_post, resumed, folder)
    finally:
        if lock is not None:
            lock.release()


def _train(competition: Competition, data_dir: Path, recipe: Recipe, options: RunOptions, dist: Dist,
           given_post: dict | None, resumed: runs.Run | None, folder: Path | None) -> runs.Run | None:
    dev = dist.device(devices.pick(options.device))
    resume = resumed.path if resumed is not None else None
    if resumed is not None and dist.main:
        resumed.remove_leftovers()  # a checkpoint cut short by a killed process
    if resumed is not None and resumed.file("split.csv").is_file():  # the items and split it started with
        exp = Experiment.resumed(competition, data_dir, recipe, options, resumed)
    else:
        exp = Experiment.from_folder(competition, data_dir, recipe, options)
    checkpoint = None
    if resumed is not None and resumed.file(runs.CHECKPOINT).is_file():
        checkpoint = resumed.load_tensors(runs.CHECKPOINT)
        if not isinstance(checkpoint, dict) or not {"model", "position", "rng", "history"} <= set(checkpoint):
            raise RunError(f"{resumed.file(runs.CHECKPOINT)} is not a kaggletools checkpoint; the run folder was "
                           "edited or damaged: train again")
    elif resumed is not None:  # stopped within its first epoch: the same run again, from the start, in its folder
        progress.write(f"note: {resume} stopped before its first epoch ended (no checkpoint): training it from "
                       "the start", options.progress)
    built = exp.model()  # weights found (or refused) before a run folder is made
    if checkpoint is not None:
        _check_fits(built, checkpoint["model"], resumed.file(runs.CHECKPOINT), recipe)
    run = None
    if dist.main:
        if resumed is not None:
            run = resumed
        elif folder:
            run = runs.Run.create(Path(folder).parent, Path(folder).name, exact=True)
        else:
            run = runs.Run.create(_runs_root(competition, options), _name(recipe, options))
    lock = run.lock() if run is not None and resumed is None else None  # a new run's (train() holds a resumed one's)
    start = time.perf_counter()
    try:
        if run is not None:
            run.clear_failed()
            _save_setup(run, exp, dev, dist.world)
            for note in exp.split.notes:
                progress.write(f"note: {note}", options.progress)
        keeper = Checkpoints(run, competition, options.keep, checkpoint, resume)
        if keeper.best_weights is not None:
            _check_fits(built, keeper.best_weights, resumed.file(runs.BEST), recipe)
        learner, info = exp.learner(dev, dist, on_epoch=keeper, built=built)
        if run is not None:
            run.save_json("config.json", {**run.load_json("config.json"), "backbone": info.__dict__,
                                          "precision": learner.precision.dtype})
            progress.write(f"run folder: {run.path}\nweights: {info.weights or 'random init'}; device {dev} "
                           f"({learner.precision.dtype}); train {len(learner.data.train_idx)}, valid "
                           f"{len(learner.data.valid_idx)}", options.progress)
        learner.fit(resume=checkpoint)
        keeper.restore_best(learner)
        report = validation.validate(learner, exp.items, run, given_post, exp.split.groups)
        if run is not None:
            _finish(run, exp, learner, info, {**report, "kept": keeper.best or {"epoch": learner.epoch},
                                              "seconds": round(time.perf_counter() - start, 1)})
    except BaseException as e:
        if run is not None and run.status() != "finished":
            run.mark_failed(e)
        raise
    finally:
        if lock is not None:
            lock.release()
    return run


def _check_fits(built, saved: dict, path: Path, recipe: Recipe) -> None:
    """The checkpoint's tensors against the model the recipe builds: another architecture is one
    short line naming the file (torch's own message lists every tensor)."""
    own = built[0].state_dict()
    if not isinstance(saved, dict):
        raise RunError(f"{path} holds no model weights; the run folder was edited or damaged: train again")
    missing = [k for k in own if k not in saved or tuple(getattr(saved[k], "shape", ())) != tuple(own[k].shape)]
    unexpected = [k for k in saved if k not in own]
    if missing or unexpected:
        raise RunError(f"{path} does not fit {recipe.backbone} ({len(missing)} missing or reshaped and "
                       f"{len(unexpected)} unexpected tensors, e.g. {(missing + unexpected)[:2]}); the file was "
                       "replaced or the run edited: train again")


def _runs_root(competition: Competition, options: RunOptions) -> Path:
    return Path(options.runs_dir) / competition.slug


def _name(recipe: Recipe, options: RunOptions) -> str:
    name = recipe.backbone.replace("/", "-")
    return name + (f"-fold{options.fold}" if options.folds else "")


def _save_setup(run: runs.Run, exp: Experiment, dev, world: int) -> None:
    if not run.file("config.json").is_file():
        run.save_json("config.json", {"competition": exp.competition.slug, **inferred.record(exp.competition),
                                      "data_dir": str(exp.data_dir.resolve()),
                                      "recipe": exp.recipe.to_dict(), "options": exp.options.to_dict(),
                                      "device": str(dev), "world_size": world,
                                      "split_notes": exp.split.notes})
        run.save_json("versions.json", runs.versions())
        run.save_table("split.csv", exp.split.table(exp.items["id"]))


def _finish(run: runs.Run, exp: Experiment, learner: Learner, info, report: dict) -> None:
    """The report and the weights (atomically: a run with model.pt is finished), then the plots and
    report.html: a plot that fails (a strange file name, a full disk) is a warning, never the run."""
    run.save_json("report.json", report)
    meta = {"competition": exp.competition.slug, **inferred.record(exp.competition), "recipe": exp.recipe.to_dict(), "backbone": info.name,
            "n_extra": learner.model.n_extra, "mean": list(learner.data.normalize.mean),
            "std": list(learner.data.normalize.std), "scale": learner.data.normalize.scale,
            "post": report["post"], "classes": list(exp.competition.classes), "task": exp.competition.task.name}
    with signals.deferred():  # from the weights on, the run is finished: an interrupt waits for the tidying
        run.save_weights(learner.model.state_dict(), meta)
        for name in (runs.CHECKPOINT, runs.BEST):
            run.file(name).unlink(missing_ok=True)
    pictures(run, exp.competition, learner.history, learner.batch_losses, (exp.items, learner.data.array))


def pictures(run: runs.Run, competition: Competition, history: list, batch_losses: list, decoded=None) -> None:
    """history.png, the interpretation and report.html of a finished run; each that fails is one
    warning line (`kaggletools interpret RUN` writes them again)."""
    import warnings

    from kaggletools.runs import history as plots
    from kaggletools.runs import interpret
    from kaggletools.runs import report as html_report

    steps = (("history.png", lambda: plots.history_plot(history, batch_losses, competition, run.file("history.png"))),
             ("the interpretation plots", lambda: interpret.write(run, competition, decoded=decoded)),
             ("report.html", lambda: html_report.write(run, competition)))
    for what, make in steps:
        try:
            make()
        except Exception as e:  # noqa: BLE001 - a picture is never worth the run
            first = (" ".join(str(e).split()) or type(e).__name__)[:200]
            warnings.warn(f"{run.path}: {what} could not be written ({type(e).__name__}: {first}); the run and its "
                          f"weights are saved: `kaggletools interpret {run.path}` tries again", stacklevel=2)


class Resumable(NamedTuple):
    competition: Competition      # registered, or rebuilt from the run's recorded inference
    data_dir: Path
    recipe: Recipe
    options: RunOptions


def resume_settings(run_dir: Path) -> Resumable:
    """The competition, data folder, recipe and options of a run to resume."""
    run = runs.Run.open(run_dir, finished=False)
    status = run.status()
    if status == "finished":
        raise RunError(f"{run.path} is already finished; nothing to resume")
    config = run.load_json("config.json")
    path = run.file("config.json")
    with runs.damaged(path):
        for field in ("competition", "data_dir"):
            if not isinstance(config[field], str) or not config[field]:
                raise RunError(f"{path}: {field} is {config[field]!r}, not a name; the file was edited: fix that "
                               "field or train again")
        saved = config["recipe"]
        if isinstance(saved, dict) and isinstance(config["options"], dict) and "train_bn" in config["options"]:
            saved = {"train_bn": config["options"]["train_bn"], **saved}  # saved before train_bn joined Recipe
        recipe = runs.options_from(Recipe, saved, path, "recipe")
        return Resumable(inferred.for_run(config), Path(config["data_dir"]), recipe,
                         runs.options_from(RunOptions, config["options"], path, "options"))
