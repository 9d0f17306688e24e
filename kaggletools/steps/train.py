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


def post_from(competition: Competition, run_dir: str) -> dict | None:
    """The post-processing of a finished run of the same competition."""
    if not run_dir:
        return None
    run = runs.Run.open(run_dir)
    config = run.load_json("config.json")
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
    dev = dist.device(devices.pick(options.device))
    resumed = runs.Run.open(resume, finished=False) if resume else None
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
    run = None
    if dist.main:
        if resumed is not None:
            run = resumed
        elif folder:
            run = runs.Run.create(Path(folder).parent, Path(folder).name, exact=True)
        else:
            run = runs.Run.create(_runs_root(competition, options), _name(recipe, options))
    start = time.perf_counter()
    try:
        if run is not None:
            run.clear_failed()
            _save_setup(run, exp, dev, dist.world)
            for note in exp.split.notes:
                progress.write(f"note: {note}", options.progress)
        keeper = Checkpoints(run, competition, options.keep, checkpoint, resume)
        learner, info = exp.learner(dev, dist, on_epoch=keeper, built=built)
        if run is not None:
            run.save_json("config.json", {**run.load_json("config.json"), "backbone": info.__dict__,
                                          "precision": learner.precision.dtype})
            progress.write(f"run folder: {run.path}\nweights: {info.weights or 'random init'}; device {dev} "
                           f"({learner.precision.dtype}); train {len(learner.data.train_idx)}, valid "
                           f"{len(learner.data.valid_idx)}", options.progress)
        learner.fit(resume=checkpoint)
        keeper.restore_best(learner)
        report = validation.validate(learner, exp.items, run, given_post)
        if run is not None:
            _finish(run, exp, learner, info, {**report, "kept": keeper.best or {"epoch": learner.epoch},
                                              "seconds": round(time.perf_counter() - start, 1)})
    except BaseException as e:
        if run is not None and run.status() != "finished":
            run.mark_failed(e)
        raise
    return run


def _runs_root(competition: Competition, options: RunOptions) -> Path:
    return Path(options.runs_dir) / competition.slug


def _name(recipe: Recipe, options: RunOptions) -> str:
    name = recipe.backbone.replace("/", "-")
    return name + (f"-fold{options.fold}" if options.folds else "")


def _save_setup(run: runs.Run, exp: Experiment, dev, world: int) -> None:
    if not run.file("config.json").is_file():
        run.save_json("config.json", {"competition": exp.competition.slug, "data_dir": str(exp.data_dir.resolve()),
                                      "recipe": exp.recipe.to_dict(), "options": exp.options.to_dict(),
                                      "device": str(dev), "world_size": world,
                                      "split_notes": exp.split.notes})
        run.save_json("versions.json", runs.versions())
        run.save_table("split.csv", exp.split.table(exp.items["id"]))


def _finish(run: runs.Run, exp: Experiment, learner: Learner, info, report: dict) -> None:
    """Everything else first, the weights last (atomically): a run with model.pt is finished."""
    from kaggletools.runs import history
    from kaggletools.runs import report as html_report
    from kaggletools.runs import interpret

    run.save_json("report.json", report)
    history.history_plot(learner.history, learner.batch_losses, exp.competition, run.file("history.png"))
    interpret.write(run, exp.competition, decoded=(exp.items, learner.data.array))
    html_report.write(run, exp.competition)
    meta = {"competition": exp.competition.slug, "recipe": exp.recipe.to_dict(), "backbone": info.name,
            "n_extra": learner.model.n_extra, "mean": list(learner.data.normalize.mean),
            "std": list(learner.data.normalize.std), "scale": learner.data.normalize.scale,
            "post": report["post"], "classes": list(exp.competition.classes), "task": exp.competition.task.name}
    with signals.deferred():  # from the weights on, the run is finished: an interrupt waits for the tidying
        run.save_weights(learner.model.state_dict(), meta)
        for name in (runs.CHECKPOINT, runs.BEST):
            run.file(name).unlink(missing_ok=True)


class Resumable(NamedTuple):
    competition: str
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
    with runs.damaged(run.file("config.json")):
        return Resumable(config["competition"], Path(config["data_dir"]), Recipe.from_dict(config["recipe"]),
                         RunOptions.from_dict(config["options"]))
