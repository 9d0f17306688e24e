"""Pre-flight: before `train`, `cv` or `run` decode an image or start an epoch, everything that
would otherwise stop them after training, checked in seconds:

- test items present (run and cv predict the test set);
- Kaggle credentials (and their file's permissions) and the API's host reachable when the
  submission is to be uploaded;
- a writable runs folder and submission folder;
- free disk for the decoded cache and the checkpoints (shutil.disk_usage against an estimate);
- the backbone's pretrained weights in their cache, or their server reachable.

Each check raises PreflightError: one line naming what is wrong and the fix.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from kaggletools import progress
from kaggletools.errors import RunError
from kaggletools.io import places

CHECKPOINT_COPIES = 5      # weights + AdamW's two moments (checkpoint.pt), best weights, model.pt
DEFAULT_WEIGHTS = 100e6    # bytes, when the weights file is not known (random init, not cached yet)
MARGIN = 256 * 2**20       # bytes kept free beyond the estimate


class PreflightError(RunError):
    """Something that would stop the run after training."""


def check(competition, data_dir: Path, recipe, options, *, predicts: bool = False, submit: bool = False,
          out: Path | None = None, submissions: Path | None = None) -> dict:
    """All checks for a run of `competition` on `data_dir`; `predicts`: it predicts the test set
    (run, cv); `submit`: it uploads (run --submit); `out`/`submissions`: where the submission
    goes. Returns what was found (items, estimated bytes) for messages and tests."""
    data_dir = Path(data_dir)
    found = {"train": len(competition.items(data_dir, "train"))}
    if predicts:
        found["test"] = test_items(competition, data_dir)
    if submit:
        credentials()
    folders = {"runs folder (--runs)": Path(options.runs_dir)}
    if predicts:
        target = Path(out).parent if out else Path(submissions or "submissions")
        folders["submission folder"] = target
    for what, folder in folders.items():
        writable(folder, what)
    weights_bytes = weights(recipe)
    need = disk(competition, recipe, options, found["train"] + found.get("test", 0), weights_bytes)
    progress.write(f"pre-flight: ok ({found['train']} training items"
                   + (f", {found['test']} test items" if predicts else "")
                   + f", about {sum(need.values()) / 2**30:.1f} GiB to write)", options.progress)
    return {**found, "need": need}


def test_items(competition, data_dir: Path) -> int:
    n = len(competition.items(data_dir, "test"))
    if n == 0:
        raise PreflightError(f"{data_dir}: no test items, so there is nothing to predict after training; "
                             "download the test files (kaggletools download) or give the data folder that holds them")
    return n


def credentials(timeout: float = 3.0) -> None:
    """Kaggle credentials are found (their file's permissions warned about) and the Kaggle API's
    host answers a TCP connection (skipped behind a proxy), before training."""
    import socket
    from urllib.parse import urlsplit
    from urllib.request import getproxies

    from kaggletools.errors import KaggleNetworkError
    from kaggletools.kaggle.credentials import find_credentials

    find_credentials()
    if getproxies():
        return
    try:
        from kagglesdk.kaggle_env import get_endpoint, get_env  # the client's own choice of host; exits nothing
    except ImportError:  # a client without kagglesdk: its host is its own business
        return
    url = urlsplit(get_endpoint(get_env()))
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise KaggleNetworkError(f"{host}:{port} cannot be reached ({type(e).__name__}: {e.strerror or e}), so "
                                 "--submit would fail after training; check the network, or drop --submit and "
                                 "upload later with `kaggletools submit`") from None


def writable(folder: Path, what: str) -> None:
    if not places.writable(folder):
        raise PreflightError(f"{folder}: the {what} cannot be written to; choose another folder or fix its "
                             "permissions")


def _free(folder: Path) -> tuple[int, int]:
    """(device id, free bytes) of the nearest existing folder at or above `folder`."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.stat().st_dev, shutil.disk_usage(folder).free


def estimate(n_items: int, side: int, channels: int, weights_bytes: float) -> dict:
    """Bytes the run writes: the uint8 cache of every item, and the checkpoints."""
    return {"cache": n_items * side * side * channels, "checkpoints": int(CHECKPOINT_COPIES * weights_bytes)}


def disk(competition, recipe, options, n_items: int, weights_bytes: float | None) -> dict:
    """Free space for the cache (all items at the cache side, 3 channels) and the checkpoints."""
    need = estimate(n_items, recipe.cache_side, 3, weights_bytes or DEFAULT_WEIGHTS)
    if competition.kind != "image":
        need["cache"] *= 4  # float32 arrays
    where = {"cache": places.cache_root(), "checkpoints": Path(options.runs_dir)}
    by_device: dict[int, list] = {}
    for name, folder in where.items():
        device, free = _free(folder)
        entry = by_device.setdefault(device, [0, free, []])
        entry[0] += need[name]
        entry[2].append(f"{name} in {folder}")
    for total, free, names in by_device.values():
        if total + MARGIN > free:
            raise PreflightError(f"{' and '.join(names)}: about {total / 2**30:.1f} GiB needed, "
                                 f"{free / 2**30:.1f} GiB free; free some space, or set KAGGLETOOLS_CACHE / "
                                 "--runs to a disk with room, or lower --presize")
    return need


def weights(recipe) -> int | None:
    """The pretrained weights: the --weights file exists, else the library's file is cached or its
    server reachable. Returns the file's size when known (for the disk estimate)."""
    if recipe.weights:
        path = Path(recipe.weights).expanduser()
        if not path.is_file():
            raise PreflightError(f"--weights {path}: no such file; give the path of a weights file")
        return path.stat().st_size
    if not recipe.pretrained:
        return None
    from kaggletools.model import backbones

    try:
        return backbones.weights_ready(recipe.backbone)
    except backbones.ModelError as e:
        raise PreflightError(str(e)) from None
