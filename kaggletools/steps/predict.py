"""From a finished run folder alone: the model back, test-set probabilities with TTA, and a
validated submission written atomically."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kaggletools.data import cache
import kaggletools.competition.inferred as inferred
from kaggletools.data import items as data
from kaggletools.model import device as devices
from kaggletools.model import network as models
from kaggletools.runs import folder as runs
from kaggletools.score import submission
from kaggletools.score import validation
from kaggletools.competition.interface import Competition
from kaggletools.errors import CompetitionError, RunError
from kaggletools.data.loaders import Normalize
from kaggletools.options import Recipe
from kaggletools.fit.tta import Predictor
from kaggletools.io import places
from kaggletools.steps import workspace


@dataclass
class SavedRun:
    """A finished run's competition, recipe, model and post-processing."""

    run: runs.Run
    competition: Competition
    recipe: Recipe
    model: models.Net
    normalize: Normalize
    meta: dict

    @classmethod
    def load(cls, run_dir: Path) -> "SavedRun":
        run = runs.Run.open(run_dir)
        if "blend" in run.load_json("config.json"):  # predictions of runs, no model of its own
            raise RunError(f"{run.path} is a blend of runs, not a trained run: its submission is already written "
                           "(report.json names it); to blend again, give the runs it blended")
        state = run.load_weights()
        with runs.damaged(run.file(runs.WEIGHTS)):
            meta = state["meta"]
            comp = inferred.for_run(meta)
            named = run.load_json("config.json").get("competition")
            if named != meta["competition"] and _registered_slug(named) != meta["competition"]:
                raise RunError(f"{run.path / runs.WEIGHTS} holds a model of {meta['competition']!r} but "
                               f"{run.file('config.json')} names {named!r}; the folder mixes two runs: train again")
            recipe = runs.options_from(Recipe, meta["recipe"], run.file(runs.WEIGHTS), "meta.recipe", check=False)
            model, _ = models.create(recipe.backbone, comp.n_outputs, pretrained=False, n_extra=int(meta["n_extra"]),
                                     pool=recipe.pool)
            missing, unexpected = _mismatch(model, state["state_dict"])
            normalize = Normalize(tuple(float(v) for v in meta["mean"]), tuple(float(v) for v in meta["std"]),
                                  meta["scale"])
            channels = _input_channels(model)
            if channels and not len(normalize.mean) == len(normalize.std) == channels:
                raise ValueError(f"mean {list(normalize.mean)} and std {list(normalize.std)} do not give one value "
                                 f"per input channel ({channels})")
        if missing or unexpected:
            raise RunError(f"{run.path / runs.WEIGHTS} does not fit {recipe.backbone} with {comp.n_outputs} outputs "
                           f"({len(missing)} missing and {len(unexpected)} unexpected tensors, e.g. "
                           f"{(missing + unexpected)[:3]}); the file was replaced or the run edited: train again")
        with runs.damaged(run.file(runs.WEIGHTS)):
            model.load_state_dict(state["state_dict"])
        comp.check_post(meta.get("post", {}))
        return cls(run, comp, recipe, model.eval(), normalize, meta)

    def predictor(self, device_name: str = "") -> Predictor:
        dev = devices.pick(device_name)
        precision = devices.Precision.for_device(dev)
        return Predictor(self.model.to(dev), self.competition.task.activation, self.recipe.size, self.normalize,
                         dev, precision.autocast, devices.default_channels_last(dev), self.recipe.batch_size * 2)

    @property
    def data_dir(self) -> Path:
        with runs.damaged(self.run.file("config.json")):
            return Path(self.run.load_json("config.json")["data_dir"])


def _registered_slug(name) -> str | None:
    """The slug a name (slug or alias) is registered as, None when it is none."""
    import kaggletools.competition.registry as registry

    return registry.aliases().get(name, name) if isinstance(name, str) else None


def _input_channels(model) -> int | None:
    """The channels the network's first convolution takes (None: no convolution found)."""
    for weight in model.state_dict().values():
        if weight.ndim == 4:
            return int(weight.shape[1])
    return None


def _mismatch(model, state_dict: dict) -> tuple[list[str], list[str]]:
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    return missing + wrong, unexpected


def test_probabilities(saved: SavedRun, data_dir: Path | None = None, tta: str | None = None, device: str = "",
                       show: bool = True, table: Path | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The test items and their probabilities (averaged over the TTA views), also saved as the
    run's test_predictions.csv when the run folder can be written, else as `table` (if given)."""
    comp, r = saved.competition, saved.recipe
    data_dir = Path(data_dir or saved.data_dir)
    items = data.test_items(comp, data_dir)
    array = cache.load_items(comp, data_dir, items, r.cache_side, progress=show, desc="decode test",
                             device=device or "auto")
    extra = comp.extra_features(items) if saved.meta["n_extra"] else None
    probs = saved.predictor(device)(array, np.arange(len(items)), tta=tta or r.tta,
                                    extra=None if extra is None else np.asarray(extra, np.float32), show=show,
                                    desc="test").tta
    comp.task.check_probs(probs, f"{saved.run.path} test predictions")
    predictions = probability_table(comp, items["id"], probs)
    if places.writable(saved.run.path):
        saved.run.save_table("test_predictions.csv", predictions)
    elif table is not None:  # a read-only run folder (a Kaggle dataset): beside the submission
        submission.write(predictions, Path(table), overwrite=True)
    return items, probs


def probability_table(comp: Competition, ids, probs: np.ndarray) -> pd.DataFrame:
    columns = {"id": list(ids)}
    columns.update({f"{c}_prob": probs[:, i] for i, c in enumerate(validation.output_names(comp))})
    return pd.DataFrame(columns)


def read_probability_table(comp: Competition, table: pd.DataFrame, where: str = "test_predictions.csv") -> np.ndarray:
    """The probabilities of a test_predictions.csv, each a number in [0, 1] (else an error naming
    `where` and the column)."""
    return validation.checked(table, [f"{c}_prob" for c in validation.output_names(comp)], where)


def write_submission(comp: Competition, ids, probs: np.ndarray, post: dict, data_dir: Path, out: Path,
                     overwrite: bool = False) -> Path:
    """Build the submission, validate it (test ids, sample submission's columns) and write it atomically."""
    df = comp.submission(list(ids), probs, post)
    submission.validate(comp, df, ids, comp.sample_submission(data_dir), name=str(out))
    return submission.write(df, out, overwrite)


def refuse_existing(out: Path, overwrite: bool) -> None:
    """Fail before the expensive part when the submission file exists."""
    if Path(out).exists() and not overwrite:
        raise submission.SubmissionError(f"{out} already exists; choose another name or pass --overwrite")


def predict(run_dir: Path, data_dir: Path | None = None, *, tta: str | None = None, out: Path | None = None,
            overwrite: bool = False, device: str = "", progress: bool = True,
            submissions: Path = Path("submissions"), work: Path | None = None) -> Path:
    """Test predictions from a finished run folder alone (which may be read-only), as a validated
    submission written atomically (default `<submissions>/<slug>-<run>.csv`; in a Kaggle notebook
    /kaggle/working/submission.csv, replaced). A read-only data folder is read through its
    unpacked mirror under `work` (kaggletools.steps.workspace)."""
    saved = SavedRun.load(run_dir)
    if out is None and places.default_submission() is not None:  # a Kaggle notebook: the file it submits
        out, overwrite = places.default_submission(), True
    out = Path(out) if out else Path(submissions) / f"{saved.competition.slug}-{Path(run_dir).name}.csv"
    refuse_existing(out, overwrite)
    data_dir = workspace.data_folder(saved.competition, Path(data_dir or saved.data_dir), work, not progress)
    items, probs = test_probabilities(saved, data_dir, tta, device, progress,
                                      table=out.with_name(out.stem + ".test_predictions.csv"))
    return write_submission(saved.competition, items["id"], probs, saved.meta["post"], data_dir, out, overwrite)


def validate_file(comp: Competition, csv: Path, data_dir: Path | None = None) -> None:
    """Check a submission file as Kaggle would: against the test items of `data_dir` (or its
    sample submission) when given, else against the competition's format."""
    df = submission.read(Path(csv))
    test_ids = sample = None
    if data_dir is not None and Path(data_dir).is_dir():
        sample = comp.sample_submission(Path(data_dir))
        try:
            test_ids = data.test_items(comp, Path(data_dir))["id"]
        except CompetitionError:
            test_ids = None  # no test items here: the sample submission's ids, or the format alone
    submission.validate(comp, df, test_ids, sample, name=str(csv))
