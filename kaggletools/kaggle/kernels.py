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


TRAIN = '''import os, subprocess, sys
from pathlib import Path

ROOT = Path(os.environ.get("KAGGLETOOLS_KAGGLE_ROOT") or "/kaggle")
COMPETITION, ARGS, FROM_BUNDLE = {competition!r}, {args!r}, {bundle!r}


def find(pattern):
    """The first match of `pattern` under /kaggle/input, at most four folders deep."""
    for depth in range(4):
        hits = sorted((ROOT / "input").glob("*/" * depth + pattern))
        if hits:
            return hits[0]
    raise SystemExit(f"{{pattern}} not found under {{ROOT / 'input'}}: add it to the notebook's inputs")


DATA = find(COMPETITION)
if FROM_BUNDLE:  # the wheels of a `kaggletools bundle` dataset: no internet needed
    wheels = find("kaggletools-bundle.json").parent / "wheels"
    pip = ["--no-index", "--find-links", str(wheels), "kaggletools"]
else:
    pip = ["kaggletools"]
subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *pip], check=True)'''

RUN = '''# Train on every GPU (torchrun: one process per GPU, e.g. the two T4s), predict with TTA, and
# write runs/<slug>/<run>/ and submission.csv into /kaggle/working: the notebook's output.
import torch

gpus = torch.cuda.device_count()
launch = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={{gpus}}"] if gpus > 1
          else [sys.executable])
subprocess.run(launch + ["-m", "kaggletools", "run", COMPETITION, "--data", str(DATA), *ARGS], check=True,
               cwd=ROOT / "working")'''


def init(folder: str | Path, competition: str, kernel: str, run_args: list[str] | None = None,
         bundle: str | None = None) -> Path:
    """Write a training notebook (train.ipynb and kernel-metadata.json) into `folder`: on Kaggle it
    installs kaggletools (from the wheels of the bundle dataset `bundle`, else from the index, so
    with internet on) and runs `kaggletools run <competition> <run_args>` on every GPU; push it
    with `push`, follow it with `status`, pull the run folder back with `output`."""
    import json

    import nbformat

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    values = dict(competition=competition, args=list(run_args or []), bundle=bool(bundle))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {competition}: training with kaggletools"),
                nbformat.v4.new_code_cell(TRAIN.format(**values)), nbformat.v4.new_code_cell(RUN.format(**values))]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, str(folder / "train.ipynb"))
    meta = {"id": kernel, "title": kernel.split("/", 1)[-1].replace("-", " "), "code_file": "train.ipynb",
            "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True,
            "enable_internet": not bundle, "competition_sources": [competition],
            "dataset_sources": [bundle] if bundle else [], "kernel_sources": [], "model_sources": []}
    (folder / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    return folder / "train.ipynb"
