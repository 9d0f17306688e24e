"""A competition without a module: `Spec` (what `kaggletools.competition.infer` found in the data
folder, or what a run folder recorded of it) and `build` (a Competition made from it on the bases,
its items read through the layouts). `for_run` gives a run's competition back from its record,
registered or inferred, so `predict RUN` and `--resume` need the run folder alone."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import kaggletools.competition.bases as bases
import kaggletools.competition.layouts as layouts
import kaggletools.competition.registry as registry
import kaggletools.competition.tasks as tasks
from kaggletools.competition.interface import Competition
from kaggletools.errors import CompetitionError

# submission formats: the base that writes each, its default metric's name
FORMATS = {"binary": "a probability column", "probs": "one probability column per class",
           "label": "one column holding the class name", "tags": "space-separated tags"}
BASES = {"binary": bases.BinaryLogLoss, "probs": bases.MultiClassLogLoss, "label": bases.MultiClassLabel,
         "tags": bases.MultiLabelTags}
DEFAULT_METRICS = {"binary": "log_loss", "probs": "log_loss", "label": "accuracy", "tags": "f2"}


@dataclass(frozen=True)
class Spec:
    """Everything a competition without a module is built from; paths relative to the data folder."""

    slug: str
    layout: str                      # folders | csv | tags | columns
    task: str                        # binary | multiclass | multilabel
    classes: tuple[str, ...]
    train: str                       # the images' folder (folders: the one holding the class folders)
    labels: str = ""                 # the label CSV (none for folders)
    id_column: str = "id"            # ... its column naming the images
    label_column: str = ""           # ... its label column (csv, tags)
    test: str = ""                   # the test images' folder ("" none)
    test_list: str = ""              # a CSV listing the test ids in order (the sample submission), or ""
    keep_suffix: bool = False        # ids keep the file suffix (label CSV, test folder)
    suffix: str = ".jpg"             # the training images' file suffix (for `new`'s fixture)
    shared: bool = False             # test images in the training folder (the label file names the others)
    format: str = "label"            # binary | probs | label | tags (see FORMATS)
    sample: str = ""                 # the sample submission ("" none: the format was guessed)
    submission_id: str = "id"        # the submission's id column
    submission_label: str = "label"  # its value column (binary, label, tags)
    metric: str = ""                 # a catalog metric's name ("" the format's default)
    companions: tuple = ()           # other CSVs naming the training images: (file, id column) pairs
    group_file: str = ""             # a CSV holding the --group-by column ...
    group_id: str = ""               # ... its column naming the images
    group_column: str = ""           # ... and the column

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "Spec":
        known = {f.name for f in dataclasses.fields(cls)}
        kept = {k: tuple(v) if k == "classes" else v for k, v in values.items() if k in known}
        kept["companions"] = tuple(tuple(pair) for pair in kept.get("companions", ()))
        try:
            spec = cls(**kept)
        except TypeError as e:
            raise CompetitionError(f"the recorded inference is incomplete ({e}); train again") from None
        allowed = {"layout": ("folders", "csv", "tags", "columns"), "task": ("binary", "multiclass", "multilabel"),
                   "format": tuple(FORMATS)}
        for name, values in allowed.items():
            if getattr(spec, name) not in values:
                raise CompetitionError(f"the recorded inference's {name} is {getattr(spec, name)!r}, not one of "
                                       f"{', '.join(values)}; the run folder was edited: train again")
        if not all(isinstance(c, str) for c in spec.classes):
            raise CompetitionError("the recorded inference's classes are not names; the run folder was edited: "
                                   "train again")
        return spec

    @property
    def metric_name(self) -> str:
        return self.metric or DEFAULT_METRICS[self.format]


class Inferred:
    """What every inferred competition adds to its base: items read as the spec says, the sample
    submission by the name found, and the spec itself (recorded in run folders)."""

    spec: Spec

    def items(self, data_dir: Path, split: str) -> pd.DataFrame:
        s = self.spec
        if split == "train":
            table = _train_items(s, Path(data_dir))
            return _with_groups(s, Path(data_dir), table) if s.group_column else table
        if not s.test:
            return pd.DataFrame({"id": pd.Series(dtype=str), "source": pd.Series(dtype=str)})
        if s.test_list:
            return layouts.listed(data_dir, s.test_list, s.test, s.submission_id)
        return layouts.unlabelled(data_dir, s.test, keep_suffix=s.keep_suffix)

    def sample_submission(self, data_dir: Path) -> Path | None:
        path = Path(data_dir) / self.spec.sample if self.spec.sample else None
        return path if path is not None and path.is_file() else None

    def sample_files(self, data_dir: Path, out_dir: Path, train: pd.DataFrame, test: pd.DataFrame) -> None:
        """The default, and the other CSVs naming the images (a driver list; a test.csv when train and
        test images share a folder) cut to the chosen ones."""
        from kaggletools.io import files

        super().sample_files(data_dir, out_dir, train, test)
        chosen = [str(i) for i in list(train["id"]) + list(test["id"])]
        ids = set(chosen) | {Path(i).stem for i in chosen}
        for name, column in self.spec.companions:
            (Path(out_dir) / name).parent.mkdir(parents=True, exist_ok=True)
            files.write_filtered_csv(Path(data_dir) / name, Path(out_dir) / name, column, ids)

    def make_fixture(self, folder, n_train=64, n_test=32, seed=0):
        raise CompetitionError(f"{self.slug} was inferred from a data folder and has no generated download; "
                               f"write its module with `kaggletools new {self.slug} --data DIR`")


def _train_items(s: Spec, data_dir: Path) -> pd.DataFrame:
    if s.layout == "folders":
        return layouts.labelled_by_folder(data_dir, s.train, s.classes)
    if s.layout == "tags":
        return layouts.labelled_by_tags(data_dir, s.labels, s.train, s.id_column, s.label_column, s.classes,
                                        skip_unlabelled=s.shared)
    if s.layout == "columns":
        return layouts.labelled_by_columns(data_dir, s.labels, s.train, s.id_column, s.classes,
                                           skip_unlabelled=s.shared)
    return layouts.labelled_by_csv(data_dir, s.labels, s.train, s.id_column, s.label_column, skip_unlabelled=s.shared)


def _with_groups(s: Spec, data_dir: Path, table: pd.DataFrame) -> pd.DataFrame:
    """The train items with the --group-by column of `group_file` (matched by image name)."""
    path = data_dir / s.group_file
    df = layouts.read_csv(path, (s.group_id, s.group_column))
    groups = dict(zip(df[s.group_id].str.strip(), df[s.group_column].str.strip()))
    groups.update({Path(k).stem: v for k, v in list(groups.items())})
    found = table["id"].astype(str).map(lambda i: groups.get(i, groups.get(Path(i).stem)))
    if found.isna().any():
        missing = list(table["id"][found.isna()][:5])
        raise CompetitionError(f"{path}: {int(found.isna().sum())} training image(s) have no row (and no "
                               f"{s.group_column!r}), e.g. {missing}; use the file that lists every image")
    out = table.copy()
    out[s.group_column] = found.to_numpy()
    return out


def build(spec: Spec) -> Competition:
    """The Competition the spec describes, on the base of its submission format."""
    base, metric = BASES[spec.format], _catalog_metric(spec.metric, spec.task)
    if metric is not None and spec.format == "binary" and metric.name != "log_loss":
        base = bases.BinaryProbability  # no clip: only log loss wants one
    attrs = {"spec": spec, "title": f"{spec.slug} (inferred from its data folder)", "classes": tuple(spec.classes),
             "id_column": spec.submission_id, "label_column": spec.submission_label,
             "group_column": spec.group_column,
             "files": tuple(f for f in (spec.labels, spec.sample) if f), "metric_name": spec.metric_name}
    extra = mixins(spec, metric)
    if metric is not None:  # the catalog's metric, direction and post-processing (bases.ByMetric)
        attrs["metric_name"] = metric.name
        extra += (bases.ByMetric,)
    if TopK in extra:
        attrs["top_k"] = int(metric.name.split("@")[1])
    comp = type("InferredCompetition", (Inferred, *extra, base), attrs)()
    comp.slug = spec.slug
    comp.task = tasks.resolve(spec.task)
    try:
        comp.task.check_classes(tuple(spec.classes))
    except CompetitionError as e:
        raise CompetitionError(f"{spec.slug}: {e}; give --classes or --task") from None
    return comp


def _catalog_metric(name: str, task: str):
    """The catalog's metric `name` (None for none), checked against the task."""
    if not name:
        return None
    from kaggletools.score import catalog

    metric = catalog.get(name)
    if task not in metric.tasks:
        fit = [n for n in catalog.names() if task in catalog.get(n).tasks]
        raise CompetitionError(f"--metric {name} scores {', '.join(metric.tasks)} tasks, and this one is {task}; "
                               f"choose one of {', '.join(fit)}")
    return metric


class HardBinary:
    """Binary scored on decisions (accuracy): the submission holds 0 or 1, not P(positive)."""

    def submission(self, ids, probs, post) -> pd.DataFrame:
        return super().submission(ids, (np.asarray(probs)[:, :1] > 0.5).astype(int), post)


class TopK:
    """The `top_k` most probable class names, space-separated, best first (MAP@k: whales'
    `Image,Id`); read back as scores falling with the rank, which MAP@k scores the same."""

    top_k = 5

    def submission(self, ids, probs, post) -> pd.DataFrame:
        order = np.argsort(-np.asarray(probs), 1, kind="stable")[:, :self.top_k]
        names = np.asarray(self.classes, dtype=object)
        return pd.DataFrame({self.id_column: list(ids), self.label_column: [" ".join(names[r]) for r in order]})

    def read_submission(self, df) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        y = np.zeros((len(df), len(self.classes)))
        for row, text in enumerate(df[self.label_column].astype(str)):
            for rank, name in enumerate(text.split()[:self.top_k]):
                if name in index and not y[row, index[name]]:
                    y[row, index[name]] = (self.top_k - rank) / self.top_k
        return y

    def validate_rows(self, df) -> None:
        from kaggletools.errors import SubmissionError

        for row, text in enumerate(df[self.label_column].astype(str)):
            unknown = [t for t in text.split() if t not in self.classes]
            if unknown or not text.split() or len(text.split()) > self.top_k:
                raise SubmissionError(f"row {row + 1} (id {df[self.id_column].iloc[row]}): {text!r} is not 1 to "
                                      f"{self.top_k} known classes separated by spaces")


def mixins(spec: Spec, metric) -> tuple:
    """What a catalog metric changes in the submission: hard 0/1 labels, the top k classes."""
    if metric is None:
        return ()
    if spec.format == "binary" and metric.name == "accuracy":
        return (HardBinary,)
    if spec.format == "label" and metric.name.startswith("map@"):
        return (TopK,)
    return ()


def record(comp: Competition) -> dict:
    """What a run folder records of an inferred competition ({} for a registered one)."""
    spec = getattr(comp, "spec", None)
    return {"inferred": spec.to_dict()} if isinstance(spec, Spec) else {}


def for_run(config: dict) -> Competition:
    """A run's competition from its config.json (or model.pt metadata): rebuilt from the recorded
    inference, else the registered one."""
    inferred = config.get("inferred")
    if inferred:
        if not isinstance(inferred, dict):
            raise CompetitionError("the run's recorded inference is not a table of fields; train again")
        return build(Spec.from_dict(inferred))
    return registry.get(config["competition"])


def summary(spec: Spec, full: bool = False) -> list[str]:
    """What was inferred, in a few lines (`full`: every field, as `check` shows it)."""
    where = {"folders": f"{spec.train}/<class>/<image>",
             "csv": f"{spec.labels} ({spec.id_column},{spec.label_column}) + {spec.train}/",
             "tags": f"{spec.labels} ({spec.id_column},{spec.label_column}: space-separated tags) + {spec.train}/",
             "columns": f"{spec.labels} ({spec.id_column} + one 0/1 column per class) + {spec.train}/"}[spec.layout]
    shown = ", ".join(spec.classes[:8]) + (f", ... ({len(spec.classes)})" if len(spec.classes) > 8 else "")
    test = (f"{spec.test}/ in the order of {spec.test_list}" if spec.test_list else f"{spec.test}/") if spec.test \
        else "none (no test folder: train, check and cv only)"
    sample = spec.sample or "no sample submission: format guessed"
    metric = spec.metric or f"{spec.metric_name} (the default for {FORMATS[spec.format]}; --metric NAME changes it)"
    lines = [f"inferred {spec.slug}: {spec.task}, {len(spec.classes)} class(es): {shown}",
             f"  train: {where}" + (f"; groups: {spec.group_column} of {spec.group_file}" if spec.group_column else ""),
             f"  test: {test}",
             f"  submission: {FORMATS[spec.format]} ({sample}), metric {metric}"]
    if full:
        lines.append("  every field: " + ", ".join(f"{k}={v!r}" for k, v in spec.to_dict().items()
                                                    if k not in ("slug", "classes")))
        lines.append(f"  classes: {', '.join(spec.classes)}")
    return lines
