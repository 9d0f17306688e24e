"""Kaggle datasets over the official client, made safe by `kaggletools.kaggle.client`: create one
from a folder holding dataset-metadata.json (a `kaggletools bundle`, for a notebook without
internet) and add new versions of it.

    datasets.create("bundle")                       # -> DatasetResult(ref, url, status)
    datasets.version("bundle", "retrained")         # a new version of the same dataset
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaggletools.kaggle.client import calling, client
from kaggletools.kaggle.credentials import KaggleError

if TYPE_CHECKING:  # pragma: no cover
    from kaggle.api.kaggle_api_extended import KaggleApi

METADATA = "dataset-metadata.json"
DIR_MODES = ("skip", "zip", "tar")


@dataclass(frozen=True)
class DatasetResult:
    """`ref` (owner/slug), `url` and `status` of the dataset Kaggle made or updated."""

    ref: str
    url: str
    status: str


def _checked(folder: Path, dir_mode: str) -> Path:
    folder = Path(folder)
    if not (folder / METADATA).is_file():
        raise KaggleError(f"{folder}: no {METADATA}; `kaggletools bundle` writes one, or see "
                          "https://github.com/Kaggle/kaggle-api/wiki/Dataset-Metadata")
    if dir_mode not in DIR_MODES:
        raise KaggleError(f"dir mode {dir_mode!r}: choose one of {', '.join(DIR_MODES)}")
    return folder


def _result(folder: Path, resp: Any, action: str) -> DatasetResult:
    error = getattr(resp, "error", None)
    if error:
        raise KaggleError(f"Kaggle refused {action} from {folder}: {error}")
    return DatasetResult(ref=(resp.ref or "").strip("/"), url=resp.url or "", status=str(resp.status or ""))


def create(folder: str | Path, *, public: bool = False, quiet: bool = False, dir_mode: str = "skip",
           ignore_patterns: list[str] | None = None, keep_tabular: bool = False,
           api: "KaggleApi | None" = None) -> DatasetResult:
    """Create the dataset that `folder`'s dataset-metadata.json names, uploading its files (but
    those matching `ignore_patterns`); sub-folders are skipped, or uploaded as one archive each
    (`dir_mode` "zip" or "tar"); `keep_tabular`: the kaggle CLI's -t (tables not converted to CSV)."""
    folder = _checked(folder, dir_mode)
    api = api or client()
    try:
        with calling(api, f"creating a dataset from {folder}", show=not quiet):
            resp = api.dataset_create_new(str(folder), public=public, quiet=quiet, convert_to_csv=not keep_tabular,
                                          dir_mode=dir_mode, ignore_patterns=ignore_patterns)
    except ValueError as e:
        raise KaggleError(f"{folder / METADATA}: {e}") from None
    return _result(folder, resp, "the new dataset")


def version(folder: str | Path, message: str, *, quiet: bool = False, dir_mode: str = "skip",
            delete_old_versions: bool = False, ignore_patterns: list[str] | None = None, keep_tabular: bool = False,
            api: "KaggleApi | None" = None) -> DatasetResult:
    """Upload `folder` as a new version (notes: `message`) of the dataset its metadata names."""
    folder = _checked(folder, dir_mode)
    api = api or client()
    try:
        with calling(api, f"adding a version of the dataset in {folder}", show=not quiet):
            resp = api.dataset_create_version(str(folder), message, quiet=quiet, convert_to_csv=not keep_tabular,
                                              delete_old_versions=delete_old_versions, dir_mode=dir_mode,
                                              ignore_patterns=ignore_patterns)
    except ValueError as e:
        raise KaggleError(f"{folder / METADATA}: {e}") from None
    return _result(folder, resp, "the new version")
