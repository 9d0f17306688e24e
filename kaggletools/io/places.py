"""Where kaggletools keeps what it makes: the cache folder, the work folder for unpacking what
lies in a read-only data folder, and the defaults inside a Kaggle notebook (read-only
/kaggle/input, writable /kaggle/working and /kaggle/temp). Knows nothing else of ours, so every
room may ask it.

    places.on_kaggle()               # KAGGLE_KERNEL_RUN_TYPE set, or <root>/input exists
    places.writable(folder)          # tried, not guessed (os.access says yes to root on a read-only mount)
    places.work_root()               # $KAGGLETOOLS_WORK, else /kaggle/temp/kaggletools on Kaggle, else <cache>/work

The Kaggle root is /kaggle, or $KAGGLETOOLS_KAGGLE_ROOT (tests fake it in a temporary folder).
"""
from __future__ import annotations

import os
from pathlib import Path

KAGGLE_ROOT_ENV = "KAGGLETOOLS_KAGGLE_ROOT"
WORK_ENV = "KAGGLETOOLS_WORK"
SUBMISSION = "submission.csv"  # what a code competition reads from /kaggle/working


def kaggle_root() -> Path:
    """/kaggle, or $KAGGLETOOLS_KAGGLE_ROOT."""
    return Path(os.environ.get(KAGGLE_ROOT_ENV) or "/kaggle")


def on_kaggle() -> bool:
    """Inside a Kaggle notebook: KAGGLE_KERNEL_RUN_TYPE is set, or <root>/input exists."""
    return bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE")) or (kaggle_root() / "input").is_dir()


def kaggle_working() -> Path:
    """/kaggle/working: the notebook's saved output (about 20 GB; submission.csv goes here)."""
    return kaggle_root() / "working"


def cache_root() -> Path:
    """Where caches live: $KAGGLETOOLS_CACHE, else /kaggle/temp/kaggletools-cache on Kaggle (not
    saved with the notebook's output), else ~/.cache/kaggletools."""
    if os.environ.get("KAGGLETOOLS_CACHE"):
        return Path(os.environ["KAGGLETOOLS_CACHE"])
    if on_kaggle():
        return kaggle_root() / "temp" / "kaggletools-cache"
    return Path.home() / ".cache" / "kaggletools"


def work_root() -> Path:
    """Where what a read-only data folder holds packed is unpacked: $KAGGLETOOLS_WORK, else
    /kaggle/temp/kaggletools on Kaggle, else <cache>/work."""
    if os.environ.get(WORK_ENV):
        return Path(os.environ[WORK_ENV])
    if on_kaggle():
        return kaggle_root() / "temp" / "kaggletools"
    return cache_root() / "work"


def default_submission() -> Path | None:
    """On Kaggle, /kaggle/working/submission.csv (what a code competition reads); else None."""
    return kaggle_working() / SUBMISSION if on_kaggle() else None


def writable(folder: Path) -> bool:
    """Whether files can be made in `folder`, without making one (a probe file would change the
    folder's modification time): not on a read-only mount (which stops root too), not when the
    folder has no write bit at all (meant to be read-only, though root could write), and as
    os.access says. A missing folder: whether its nearest existing parent is writable."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return False
    try:
        mode, flags = folder.stat().st_mode, os.statvfs(folder).f_flag
    except OSError:
        return False
    if flags & os.ST_RDONLY or not mode & 0o222:
        return False
    return os.access(folder, os.W_OK)
