"""The Competition interface: what a competition module declares. The registry is kaggletools.competition.registry.

A competition module declares data, not mechanics: its slugs, task, classes, how to find its
train and test items, how to load one item, its metric and its submission format (both ways:
written from probabilities, read back for scoring), and a small generated download for tests
and demos. The shared layer does everything else, the same way for every competition.
Third-party packages register competitions through the entry-point group
`kaggletools.competitions` (each entry names a module that uses @register when imported).
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING

import kaggletools.competition.tasks as tasks
from kaggletools.errors import CompetitionError
from kaggletools.options import Recipe

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

__all__ = ["Competition", "CompetitionError", "Recipe", "KINDS"]
KINDS = ("image", "array")


class Competition(abc.ABC):
    """Override the class attributes and the methods marked 'declare'.

    Targets are a float matrix with one column per output, encoded by the task: one column for
    binary (P(positive class)), one per class for multi-class (one-hot) and multi-label (0/1).
    """

    slug: str = ""
    title: str = ""
    task: tasks.Task = tasks.Binary()     # a Task (or its name): what differs between task kinds
    classes: tuple[str, ...] = ()         # output names, one per target column (binary: the positive one)
    negative_class: str = ""              # binary: what people call the other class (Dogs vs. Cats: "cat")
    kind: str = "image"                   # image: picture files | array: float arrays (see `load`)
    files: tuple[str, ...] = ()           # what the Kaggle API serves (for docs and messages)
    id_column: str = "id"                 # the submission's id column
    metric_name: str = "metric"
    greater_is_better: bool = True
    group_column: str = ""                # a train item column (e.g. a driver): no group straddles a split
    recipe: Recipe = Recipe()
    demo: dict = {}                       # recipe overrides for `kaggletools demo` on the fixture

    # -- declare -------------------------------------------------------------------------------
    @abc.abstractmethod
    def items(self, data_dir: Path, split: str) -> "pd.DataFrame":
        """Items of 'train' or 'test': columns `id`, `source` (relative to data_dir) and, for
        train, the targets in the task's form (see kaggletools.competition.tasks)."""

    @abc.abstractmethod
    def metric(self, y_true: "np.ndarray", probs: "np.ndarray", post: dict | None = None) -> float:
        """The competition's metric on (n, k) targets and probabilities (post: see fit_post)."""

    @abc.abstractmethod
    def submission(self, ids: list, probs: "np.ndarray", post: dict) -> "pd.DataFrame":
        """The submission table for test ids and their (n, k) probabilities."""

    @abc.abstractmethod
    def read_submission(self, df: "pd.DataFrame") -> "np.ndarray":
        """The inverse of `submission`: a submission table (text values) as an (n, k) matrix of
        probabilities or 0/1 decisions, row for row; used to score a file against answers."""

    @abc.abstractmethod
    def make_fixture(self, folder: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> "pd.DataFrame":
        """Write a small generated download into `folder`, packed exactly as Kaggle serves it,
        with learnable labels; return the hidden test answers as a submission-shaped table."""

    # -- defaults a competition may override -----------------------------------------------------
    def class_names(self) -> list[str]:
        """The classes as plots, tables and `check` name them: binary [negative, positive] (the
        negative is `negative_class`, else "not <positive>"), otherwise `classes`."""
        return self.task.names(self.classes, self.negative_class)

    def prepare(self, data_dir: Path) -> None:
        """Unpack what was downloaded into `data_dir` (safe, atomic, idempotent)."""
        from kaggletools.unpack import archives

        archives.extract_all(data_dir)

    def load(self, source: str, data_dir: Path, side: int | None = None) -> "np.ndarray":
        """One item as an (H, W, C) array: here an RGB image decoded from a file."""
        from kaggletools.io import images

        return images.read_rgb(Path(data_dir) / source, min_side=side)

    def fit_post(self, y_true: "np.ndarray", probs: "np.ndarray") -> dict:
        """Post-processing tuned on validation predictions (a log-loss clip, thresholds)."""
        return {}

    def post_variants(self, y_true: "np.ndarray", probs: "np.ndarray", groups=None) -> dict:
        """{name: post} the report scores honestly (kaggletools.score.validation.cross_fitted): here
        `fit_post`'s result as 'tuned' (none when it is {}); Planet offers 0.5, 0.2, global, per-tag.
        `groups` (one per item, or None): what a fit_post with honest halves of its own must keep
        whole; a `fit_post(y_true, probs)` without it is called without it."""
        from kaggletools.score import validation

        tuned = validation.fit_post(self, y_true, probs, groups)
        return {"tuned": tuned} if tuned else {}

    def check_post(self, post: dict) -> None:
        """Raise when saved post-processing does not fit this competition."""

    def extra_features(self, items: "pd.DataFrame") -> "np.ndarray | None":
        """Per-item numbers fed to the head beside the pooled features (None: none)."""
        return None

    def sample_files(self, data_dir: Path, out_dir: Path, train: "pd.DataFrame", test: "pd.DataFrame") -> None:
        """Write the chosen train and test items (tables as `items` returns them) as a data folder
        that `items` accepts: their files linked, the CSVs `items` read through kaggletools.competition.layouts
        (label files, test lists) and the sample submission cut to the chosen rows."""
        from kaggletools.io import files

        data_dir, out_dir = Path(data_dir), Path(out_dir)
        files.link_sources(data_dir, out_dir, list(train["source"]) + list(test["source"]))
        for table in (train, test):  # label files and test lists read through kaggletools.competition.layouts
            labels = table.attrs.get("labels")
            if labels and len(table):
                files.write_filtered_csv(data_dir / labels["file"], out_dir / labels["file"], labels["id_column"],
                                         table["id"])
        sample = self.sample_submission(data_dir)
        if sample is not None and len(test):
            target = out_dir / Path(sample).relative_to(data_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            files.write_filtered_csv(sample, target, self.id_column, test["id"])

    def sample_submission(self, data_dir: Path) -> Path | None:
        """The sample submission file, when the data folder has one."""
        for name in ("sample_submission.csv", "sampleSubmission.csv"):
            if (Path(data_dir) / name).is_file():
                return Path(data_dir) / name
        return None

    def validate_rows(self, df: "pd.DataFrame") -> None:
        """Competition-specific checks of a submission's values; raise SubmissionError (or
        ValueError) naming the row and the value."""

    def submission_columns(self) -> list[str]:
        """The columns of a submission, as `submission` writes them."""
        import numpy as np

        k = self.n_outputs
        return list(self.submission(["x"], np.full((1, k), 1.0 / k if k > 1 else 0.5), {}).columns)

    # -- derived ---------------------------------------------------------------------------------
    @property
    def custom_load(self) -> bool:
        """Whether this competition decodes its items itself (else: image files as they are, which
        the decode cache may read on a GPU)."""
        return type(self).load is not Competition.load

    def targets(self, items: "pd.DataFrame", where: str = "") -> "np.ndarray":
        return self.task.targets(items, self.classes, where or self.slug)

    @property
    def n_outputs(self) -> int:
        return self.task.n_outputs(self.classes)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.slug}>"
