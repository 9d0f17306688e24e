"""`kaggletools bundle RUN -p DIR`: a folder to upload as a Kaggle dataset for a code competition
(a notebook without internet):

    DIR/dataset-metadata.json      the dataset's id and title (private, CC0)
    DIR/kaggletools-bundle.json    what the bundle holds: run, competition, pinned versions
    DIR/run/<run>/                 the run's files that `predict` needs (no checkpoints)
    DIR/wheels/*.whl               kaggletools and every dependency (kaggletools.steps.wheels)
    DIR/weights/<file>             the backbone's pretrained weights, when the run used them
    DIR/notebook/inference.ipynb   + kernel-metadata.json (kaggletools.steps.notebook)

Upload: `kaggletools datasets create -p DIR -r zip`; then `kaggletools kernels push -p DIR/notebook`
and `kaggletools submit <slug> -k <kernel>`."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from kaggletools import progress
from kaggletools.errors import RunError
from kaggletools.options import TTA_LEVELS
from kaggletools.runs import folder as runs
from kaggletools.steps import notebook, wheels

SKIPPED = {runs.CHECKPOINT, runs.BEST, runs.LOCK}  # what predict does not read
SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")    # a Kaggle slug: what reaches code, metadata and globs
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
VERSION = re.compile(r"[0-9][0-9A-Za-z.+!_-]*\Z")      # a version pip can pin


def _owner() -> str:
    """Your Kaggle user name when credentials say it, else a placeholder to edit."""
    try:
        from kaggletools.kaggle.credentials import find_credentials

        return find_credentials().username or "YOUR-KAGGLE-USERNAME"
    except Exception:  # no credentials: the metadata names a placeholder
        return "YOUR-KAGGLE-USERNAME"


def _backbone_file(config: dict) -> Path | None:
    """The pretrained weights file the run started from, found in the torch or Hugging Face cache."""
    info = config.get("backbone") or {}
    name, weights = info.get("weights_file"), info.get("weights")
    if not name or not weights:
        return None
    if Path(name).is_absolute() and Path(name).is_file() and Path(name).suffix in WEIGHT_SUFFIXES:
        return Path(name)  # a checkpoint file, not whatever a hand-edited config.json names
    import torch

    hub = Path(torch.hub.get_dir()) / "checkpoints" / Path(name).name
    if hub.is_file():
        return hub
    if str(weights).startswith("timm/"):
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(str(weights), Path(name).name)
        except Exception:
            found = None
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def bundle(run_dir: Path, folder: Path, *, dataset: str | None = None, kernel: str | None = None,
           with_torch: bool = False, with_wheels: bool = True, overwrite: bool = False, quiet: bool = False) -> Path:
    """Write the bundle of the finished run `run_dir` into `folder` (atomically: a temporary sibling
    renamed into place); returns `folder`."""
    run = runs.Run.open(Path(run_dir))
    if not run.file(runs.WEIGHTS).is_file() or run.file(runs.WEIGHTS).is_symlink():
        raise RunError(f"{run.file(runs.WEIGHTS)}: no such file; a bundle carries a trained run's weights (a blend "
                       "or cv folder holds none): bundle one of its runs")
    config = run.load_json("config.json")
    recorded = run.load_json("versions.json") if run.file("versions.json").is_file() else {}
    slug, tta, version = _checked(run, config, recorded)
    folder = Path(folder)
    _check_target(folder, run.path, overwrite)
    owner = _owner()
    dataset = _ident(dataset or f"{owner}/{slug[:40]}-bundle", "--dataset")
    kernel = _ident(kernel or f"{owner}/{slug[:40]}-inference", "--kernel")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as e:
        raise RunError(f"{folder.parent}: cannot write the bundle there ({e.strerror or e}); choose a writable "
                       "folder with -p DIR") from None
    try:
        shutil.copytree(run.path, tmp / "run" / run.path.name, ignore=_ignored)
        pinned = wheels.pins(recorded, with_torch) if with_wheels else {}
        if with_wheels:
            progress.write(f"bundle: fetching {len(pinned) + 1} wheels", not quiet)
            wheels.fetch(pinned, tmp / "wheels", quiet=True)
            built = wheels.own_wheel(tmp / "wheels", version, quiet=True).name.split("-")[1]
            if built != version:
                progress.write(f"note: the run was trained with kaggletools {version}; the bundle carries {built}",
                               not quiet)
            version = built
        weights = _backbone_file(config)
        if weights is not None:
            (tmp / "weights").mkdir()
            shutil.copy2(weights, tmp / "weights" / weights.name)
        notebook.write(tmp / "notebook", competition=slug, run=run.path.name, tta=tta, version=version,
                       kernel=kernel, dataset=dataset)
        _json(tmp / "dataset-metadata.json", {"id": dataset, "title": dataset.split("/", 1)[1][:50],
                                              "licenses": [{"name": "CC0-1.0"}]})
        _json(tmp / notebook.MARKER, {"competition": slug, "run": run.path.name, "tta": tta,
                                      "kaggletools": version, "with_torch": with_torch, "kernel": kernel,
                                      "dataset": dataset, "pinned": pinned,
                                      "backbone_weights": weights.name if weights else None})
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise RunError(f"{folder}: cannot write the bundle ({e.strerror or e}: {e.filename or ''}); choose a "
                           "writable folder with room, with -p DIR") from None
        raise
    return folder


def _checked(run: runs.Run, config: dict, recorded: dict) -> tuple[str, str, str]:
    """The competition, TTA and kaggletools version that reach the notebook's code and the
    metadata, checked: a hand-edited config.json or versions.json is refused naming the field."""
    slug = config.get("competition")
    if not isinstance(slug, str) or not SLUG.match(slug):
        raise RunError(f"{run.file('config.json')}: competition {slug!r} is not a Kaggle slug (letters, digits, "
                       "'-', '_', '.'); the run folder was edited: train again")
    recipe = config.get("recipe") if isinstance(config.get("recipe"), dict) else {}
    tta = recipe.get("tta") or "none"
    if tta not in TTA_LEVELS:
        raise RunError(f"{run.file('config.json')}: recipe.tta {str(tta)[:60]!r} is not one of "
                       f"{', '.join(TTA_LEVELS)}; the run folder was edited: train again")
    version = recorded.get("kaggletools") or _installed("kaggletools")
    if not isinstance(version, str) or not VERSION.match(version):
        raise RunError(f"{run.file('versions.json')}: kaggletools {str(version)[:60]!r} is not a version; the run "
                       "folder was edited: remove the field or train again")
    return slug, tta, version


def _check_target(folder: Path, run: Path, overwrite: bool) -> None:
    """The bundle folder: new, or (with --overwrite) an earlier bundle; never a file, and never in,
    at or above the run folder."""
    here, source = folder.resolve(), run.resolve()
    if here == source or source in here.parents or here in source.parents:
        raise RunError(f"{folder}: a bundle cannot be written in, at or around its run folder {run}; choose "
                       "another -p DIR")
    if folder.is_symlink() or folder.exists() and not folder.is_dir():
        raise RunError(f"{folder} is a file, not a bundle folder; choose another -p DIR")
    if folder.exists() and not overwrite:
        raise RunError(f"{folder} already exists; choose another folder or pass --overwrite")
    if folder.exists() and any(folder.iterdir()) and not (folder / notebook.MARKER).is_file():
        raise RunError(f"{folder} is not a bundle (no {notebook.MARKER}): --overwrite replaces bundles only; "
                       "choose another -p DIR")


def _ident(ident: str, flag: str) -> str:
    """A Kaggle dataset or notebook id, OWNER/SLUG."""
    parts = str(ident).split("/")
    if len(parts) != 2 or not all(SLUG.match(p) for p in parts):
        raise RunError(f"{flag} {ident!r}: not OWNER/SLUG (letters, digits, '-', '_', '.'); give one like "
                       "alice/my-bundle")
    return ident


def _ignored(folder: str, names: list[str]) -> list[str]:
    """What the copy of the run leaves out; a link in the run folder is refused (its target, maybe
    a credentials file, would be uploaded with the bundle)."""
    for name in names:
        if os.path.islink(os.path.join(folder, name)):
            raise RunError(f"{os.path.join(folder, name)} is a link; a bundle carries the run's own files only: "
                           "replace it with the file or remove it")
    return [n for n in names if n in SKIPPED]


def _installed(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


def _json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
