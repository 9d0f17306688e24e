"""Kaggle notebooks (kernels) over the official client, made safe by `kaggletools.kaggle.client`:
push a folder (kernel-metadata.json and its notebook or script) to run on Kaggle, the state of its
latest run, and its output files.

    kernels.push("bundle/notebook")                 # -> PushResult(ref, url, version)
    kernels.status("me/my-notebook").status         # "queued", "running", "complete", "error", ...
    kernels.output("me/my-notebook", "outputs")     # -> [Path] (its files and its log)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kaggletools.kaggle.client import calling, client
from kaggletools.kaggle.credentials import KaggleError

if TYPE_CHECKING:  # pragma: no cover
    from kaggle.api.kaggle_api_extended import KaggleApi

METADATA = "kernel-metadata.json"
KERNEL_URL = "https://www.kaggle.com/code/{ref}"


@dataclass(frozen=True)
class PushResult:
    """`ref`: owner/slug of the notebook; `url`; `version`: the version number Kaggle gave it."""

    ref: str
    url: str
    version: int | None


@dataclass(frozen=True)
class KernelStatus:
    """The latest run's state ("queued", "running", "complete", "error", "cancel_requested", ...)
    and, when it failed, Kaggle's message."""

    kernel: str
    status: str
    failure: str = ""


def _metadata_error(folder: Path, e: ValueError) -> KaggleError:
    return KaggleError(f"{Path(folder) / METADATA}: {e} (see https://github.com/Kaggle/kaggle-api/wiki/"
                       "Kernel-Metadata)")


def push(folder: str | Path, *, timeout: int | None = None, accelerator: str | None = None, no_run: bool = False,
         api: "KaggleApi | None" = None) -> PushResult:
    """Push the notebook in `folder` (its kernel-metadata.json names the code file, the competition
    and datasets it reads, GPU, internet) as a new version, run on Kaggle unless `no_run`.
    `timeout`: the run's limit in seconds; `accelerator`: a machine shape (e.g. NvidiaTeslaT4)."""
    folder = Path(folder)
    if not (folder / METADATA).is_file():
        raise KaggleError(f"{folder}: no {METADATA}; `kaggletools bundle` writes one, or see "
                          "https://github.com/Kaggle/kaggle-api/wiki/Kernel-Metadata")
    api = api or client()
    try:
        with calling(api, f"pushing the notebook in {folder}"):
            resp = api.kernels_push(str(folder), timeout=None if timeout is None else str(int(timeout)),
                                    acc=accelerator, no_run=no_run)
    except ValueError as e:  # the client checks the metadata before sending anything
        raise _metadata_error(folder, e) from None
    if getattr(resp, "error", None):
        raise KaggleError(f"Kaggle refused the notebook in {folder}: {resp.error}")
    ref = (resp.ref or "").strip("/").removeprefix("code/")
    return PushResult(ref=ref, url=resp.url or KERNEL_URL.format(ref=ref), version=resp.version_number)


def status(kernel: str, api: "KaggleApi | None" = None) -> KernelStatus:
    """The state of the latest run of `kernel` (owner/slug)."""
    api = api or client()
    try:
        with calling(api, f"asking the status of notebook {kernel}"):
            resp = api.kernels_status(kernel)
    except ValueError as e:  # a malformed name, or no access (the client's words)
        raise KaggleError(f"notebook {kernel!r}: {e}") from None
    state = getattr(resp.status, "name", None) or str(resp.status or "unknown")
    return KernelStatus(kernel, state.lower(), resp.failure_message or "")


def output(kernel: str, path: str | Path, *, pattern: str | None = None, force: bool = False, quiet: bool = True,
           page_size: int = 20, page_token: str | None = None, api: "KaggleApi | None" = None) -> list[Path]:
    """Download the output files of `kernel`'s latest run (those whose name matches the regular
    expression `pattern`, if given) and its log into `path`; returns the files written. With
    `page_token`, only that page of the output listing (`page_size` files)."""
    api = api or client()
    try:
        with calling(api, f"downloading the output of notebook {kernel}", show=not quiet):
            files, _ = api.kernels_output(kernel, str(path), file_pattern=pattern, force=force, quiet=quiet,
                                          page_token=page_token, page_size=page_size)
    except ValueError as e:
        raise KaggleError(f"notebook {kernel!r}: {e}") from None
    return [Path(f) for f in files]


def submit_code(slug: str, kernel: str, *, file_name: str = "submission.csv", message: str = "kaggletools",
                version: int | None = None, quiet: bool = False, api: "KaggleApi | None" = None):
    """Submit to the code competition `slug` the output `file_name` of notebook `kernel`
    (owner/slug; `version`: the number `push` returned, default its latest); Kaggle reruns the
    notebook on the hidden test set. Returns (ref, message) as the client gives them."""
    api = api or client()
    try:
        with calling(api, f"submitting notebook {kernel}", slug, show=not quiet):
            resp = api.competition_submit_code(file_name, message, slug, kernel, version, quiet=quiet)
    except ValueError as e:
        raise KaggleError(f"notebook {kernel!r}: {e}") from None
    return getattr(resp, "ref", None), getattr(resp, "message", "") or ""
