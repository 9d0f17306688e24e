"""What to train (`Recipe`) and how to run it (`RunOptions`): two dataclasses, saved in every run
folder, from which the command line's flags are generated (kaggletools.cli.app). Each field carries its
help text; `check()` validates every value before anything is decoded or written."""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path

from kaggletools.errors import OptionError

TTA_LEVELS = ("none", "flip", "crops", "dihedral")
SCHEDULES = ("one_cycle", "sgdr")
AMP_MODES = ("auto", "bf16", "fp16", "off")
KEEP = ("last", "best")
POOLS = ("avg", "concat")


def option(default, help: str, *, choices: tuple | None = None, flag: str | None = None,
           short: str | None = None, metavar: str | None = None):
    """A dataclass field with what the command line needs to offer it."""
    meta = {"help": help, "choices": choices, "flag": flag, "short": short, "metavar": metavar}
    return dataclasses.field(default=default, metadata=meta)


class _Options:
    """Shared behaviour of the two option dataclasses."""

    def replace(self, **overrides):
        """A copy with the given fields changed (None values are ignored); unknown names are refused."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            import difflib

            hints = {u: difflib.get_close_matches(u, known, 1) for u in unknown}
            said = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in hints.items())
            raise OptionError(f"unknown {type(self).__name__} option(s) {said}; valid: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict):
        """From a saved dict; fields this version does not know are ignored, missing ones default."""
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        kept = {k: (Path(v) if hints[k] is Path else v) for k, v in values.items() if k in known}
        return cls(**kept)

    def _choice(self, name: str, allowed: tuple) -> None:
        value = getattr(self, name)
        if value not in allowed:
            raise OptionError(f"--{name.replace('_', '-')} {value!r} is not one of {', '.join(allowed)}")

    def _range(self, name: str, lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = True):
        value = getattr(self, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
        if not ok:
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            raise OptionError(f"--{name.replace('_', '-')} {value!r} must lie in {left}{lo:g}, {hi:g}{right}")


@dataclass(frozen=True)
class Recipe(_Options):
    """What to train. Each competition declares its own defaults; every field can be overridden."""

    backbone: str = option("resnet34", "backbone: a torchvision or timm model name (timm/<name> forces timm)")
    pretrained: bool = option(True, "start from pretrained (ImageNet) weights")
    weights: str = option("", "a local weights file for the backbone (offline machines)", metavar="PATH")
    size: int = option(224, "side of the square the network sees, pixels")
    presize: int = option(0, "side of the decoded cache, pixels (0: size * 8 / 7)")
    freeze_epochs: int = option(1, "epochs training the head with the body frozen")
    epochs: int = option(1, "epochs after unfreezing (fastai's fine_tune(epochs))")
    lr: float = option(2e-3, "base learning rate")
    lr_mult: float = option(100.0, "the body's first layers train lr_mult times slower than the head")
    keep_frozen: float = option(0.0, "after unfreezing, the body's first layers (this fraction of its parameter "
                                     "tensors) stay frozen: backward stops before them, faster and lighter")
    weight_decay: float = option(0.01, "AdamW weight decay")
    train_bn: bool = option(False, "frozen phase: the body's batch-norm layers normalise each batch by its own "
                                   "statistics and follow the new data (fastai's default); the unfrozen phase then "
                                   "starts from statistics the head already knows")
    batch_size: int = option(64, "images per batch")
    valid_frac: float = option(0.2, "held-out fraction (0: train on every labelled item, see --post-from)")
    group_by: str = option("", "a column of the train item table (e.g. subject) whose groups never straddle a "
                               "split, fold or honest half (default: the competition's; none: no groups)",
                           metavar="COLUMN")
    min_scale: float = option(0.35, "random-resized crop: smallest fraction of the area kept (1: no crop)")
    flip: bool = option(True, "random horizontal flips in training")
    dihedral: bool = option(False, "random 90-degree rotations and vertical flips (no up or down)")
    max_shift: float = option(0.0, "random shifts, as a fraction of the side")
    lighting: float = option(0.0, "random brightness and contrast changes up to this fraction (fastai's "
                                   "max_lighting, e.g. 0.2; 0: none)")
    tta: str = option("flip", "test-time augmentation level", choices=TTA_LEVELS)
    pool: str = option("avg", "pooling of the body's last feature map: avg (the backbone's own) or concat "
                              "(average and maximum side by side, as fastai's heads)", choices=POOLS)
    extra: bool = option(True, "feed the competition's extra per-item numbers to the head")
    label_smoothing: float = option(0.0, "label smoothing of the loss (0: none)")
    schedule: str = option("one_cycle", "learning-rate schedule of each phase", choices=SCHEDULES)
    cycle_len: int = option(1, "sgdr: epochs of the first cycle (fast.ai's cycle_len)")
    cycle_mult: float = option(1.0, "sgdr: each cycle is cycle_mult times longer (fast.ai's cycle_mult)")
    seed: int = option(42, "random seed of the split, the sample order and training")

    @property
    def cache_side(self) -> int:
        return self.presize or self.size * 8 // 7

    def check(self) -> "Recipe":
        """Raise OptionError for any value that cannot work; return self."""
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            raise OptionError("--backbone must name a model, e.g. resnet34 or mobilenet_v2")
        for name in ("size", "batch_size", "cycle_len"):
            self._range(name, 1)
        for name in ("presize", "freeze_epochs", "epochs"):
            self._range(name, 0)
        if self.presize and self.presize < self.size // 2:
            raise OptionError(f"--presize {self.presize} is far below --size {self.size}; use 0 (automatic) or "
                              f"at least {self.size}")
        self._range("lr", 0, lo_open=True)
        self._range("lr_mult", 1)
        self._range("keep_frozen", 0, 1, hi_open=True)
        self._range("weight_decay", 0)
        self._range("valid_frac", 0, 1)
        self._range("min_scale", 0, 1, lo_open=True, hi_open=False)
        self._range("max_shift", 0, 0.5)
        self._range("lighting", 0, 1)
        self._range("label_smoothing", 0, 1)
        self._range("cycle_mult", 1)
        self._choice("tta", TTA_LEVELS)
        self._choice("schedule", SCHEDULES)
        self._choice("pool", POOLS)
        if self.weights and not Path(self.weights).expanduser().is_file():
            raise OptionError(f"--weights {self.weights}: no such file; give the path of a .pth, .pt, .bin or "
                              ".safetensors file")
        return self


@dataclass(frozen=True)
class RunOptions(_Options):
    """How to run: where, on what, how fast, how quietly. Saved with the run beside the recipe."""

    runs_dir: Path = option(Path("runs"), "where run folders go", flag="runs", metavar="DIR")
    device: str = option("", "cuda, cuda:1, mps or cpu (default: the best available)")
    amp: str = option("auto", "mixed precision (auto: bf16 where the device computes it natively, fp16 with a "
                              "gradient scaler on older GPUs, off elsewhere)", choices=AMP_MODES)
    channels_last: typing.Optional[bool] = option(None, "channels_last memory format (default: on for CUDA and CPU)")
    compile: bool = option(False, "torch.compile the body")
    precompute: int = option(0, "epochs of the head on precomputed body features (replaces the frozen phase)",
                             metavar="EPOCHS")
    folds: int = option(0, "k-fold: number of folds (0: one train/valid split)")
    fold: int = option(0, "k-fold: which fold is held out")
    repeats: int = option(1, "cv: run the k folds this many times, each with the next seed; every item is then "
                             "scored by that many models, which measures how much averaging models gains")
    keep: str = option("last", "which epoch's weights the run keeps: the last (as fastai) or the best on "
                               "validation", choices=KEEP)
    post_from: str = option("", "take post-processing (clip, thresholds) from this validated run (needed with "
                                "--valid-frac 0)", metavar="RUN")
    progress: bool = option(True, "progress bars and per-epoch lines (--quiet turns them off)")

    def check(self) -> "RunOptions":
        self._choice("amp", AMP_MODES)
        self._choice("keep", KEEP)
        self._range("precompute", 0)
        self._range("folds", 0)
        self._range("repeats", 1)
        if self.folds == 1:
            raise OptionError("--folds 1 cannot hold anything out; use 0 (one split) or at least 2")
        if self.folds and not 0 <= self.fold < self.folds:
            raise OptionError(f"--fold {self.fold} must lie in 0..{self.folds - 1} for --folds {self.folds}")
        if self.device and self.device.split(":")[0] not in ("cuda", "cpu", "mps", "auto"):
            raise OptionError(f"--device {self.device!r} is not one of cuda, cuda:N, mps, cpu")
        if self.post_from and not Path(self.post_from).is_dir():
            raise OptionError(f"--post-from {self.post_from}: no such run folder")
        return self


def resolve(recipe: Recipe, overrides: dict) -> tuple[Recipe, RunOptions]:
    """A competition's recipe and default run options with `overrides` applied, each to the
    dataclass that has the field; a name neither has is refused with the closest ones."""
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    run_fields = {f.name for f in dataclasses.fields(RunOptions)}
    unknown = sorted(set(overrides) - recipe_fields - run_fields)
    if unknown:
        import difflib

        hints = {u: difflib.get_close_matches(u, recipe_fields | run_fields, 1) for u in unknown}
        said = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in hints.items())
        raise OptionError(f"unknown option(s) {said}")
    return (recipe.replace(**{k: v for k, v in overrides.items() if k in recipe_fields}),
            RunOptions().replace(**{k: v for k, v in overrides.items() if k in run_fields}))


@dataclass(frozen=True)
class Inference(_Options):
    """What settles a data folder that `kaggletools.competition.infer` finds ambiguous (a competition
    without a module); each field empty: inferred. Saved with the run (config.json, `inferred`)."""

    labels: str = option("", "the label CSV, relative to the data folder (default: the CSV whose column names "
                             "the training images)", metavar="FILE")
    images: str = option("", "the training images' folder (images, or one folder per class), relative to the "
                             "data folder", metavar="DIR")
    test: str = option("", "the test images' folder, relative to the data folder", metavar="DIR")
    id_column: str = option("", "the label CSV's column naming the images", metavar="COLUMN")
    label_column: str = option("", "the label CSV's label column (a class name, 0/1, or space-separated tags)",
                               metavar="COLUMN")
    task: str = option("", "binary, multiclass or multilabel (default: from the labels)",
                       choices=("binary", "multiclass", "multilabel"))
    classes: str = option("", "the classes, comma-separated, in submission order (binary: the positive one)",
                          metavar="A,B,...")
    metric: str = option("", "a metric of kaggletools.score.catalog by name (default: from the submission format)",
                         metavar="NAME")

    def given(self) -> dict:
        """The fields set (the flags given)."""
        return {k: v for k, v in self.to_dict().items() if v}
