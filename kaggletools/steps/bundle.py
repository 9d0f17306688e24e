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
import shutil
import tempfile
from pathlib import Path

from kaggletools import progress
from kaggletools.errors import RunError
from kaggletools.runs import folder as runs
from kaggletools.steps import notebook, wheels

SKIPPED = {runs.CHECKPOINT, runs.BEST, runs.LOCK}  # what predict does not read


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
    if Path(name).is_absolute() and Path(name).is_file():
        return Path(name)
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
    config = run.load_json("config.json")
    recorded = run.load_json("versions.json") if run.file("versions.json").is_file() else {}
    slug = config["competition"]
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise RunError(f"{folder} already exists; choose another folder or pass --overwrite")
    owner = _owner()
    dataset = dataset or f"{owner}/{slug[:40]}-bundle"
    kernel = kernel or f"{owner}/{slug[:40]}-inference"
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        shutil.copytree(run.path, tmp / "run" / run.path.name, ignore=lambda d, names: [n for n in names
                                                                                       if n in SKIPPED])
        pinned = wheels.pins(recorded, with_torch) if with_wheels else {}
        version = recorded.get("kaggletools") or _installed("kaggletools")
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
        tta = (config.get("recipe") or {}).get("tta") or "none"
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _installed(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


def _json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
