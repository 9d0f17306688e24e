"""Decode once: every item decoded, squared to a side and stored in one memory-mapped array.

Epochs, TTA and prediction read the cache instead of decoding JPEGs again. The cache is keyed
by the competition, the item sources (path, size, modification time), the side and the item
kind, so a changed source or side rebuilds it. It is written to a temporary file and renamed,
so an interrupted build leaves nothing that a later run could mistake for a finished cache.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from kaggletools import images, progress as bars

CACHE_VERSION = 2


def cache_root() -> Path:
    """Where caches live: $KAGGLETOOLS_CACHE, else ~/.cache/kaggletools."""
    return Path(os.environ.get("KAGGLETOOLS_CACHE", Path.home() / ".cache" / "kaggletools"))


def cache_key(competition, data_dir: Path, sources: pd.Series, side: int) -> str:
    """A digest of everything that changes the cached pixels."""
    h = hashlib.sha256()
    h.update(f"{CACHE_VERSION}|{competition.slug}|{competition.kind}|{side}|{Path(data_dir).resolve()}".encode())
    for source in sources:
        path = Path(data_dir) / str(source)
        try:
            st = path.stat()
            h.update(f"|{source}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"|{source}".encode())  # array items: the source is an index, not a file
    return h.hexdigest()[:20]


def load_items(competition, data_dir: Path, items: pd.DataFrame, side: int, *,
               workers: int | None = None, progress: bool = True, desc: str = "decode") -> np.ndarray:
    """The (N, side, side, C) array of `items`, from the cache or decoded once into it.

    Images are stored as uint8 squares of `side`; array items (kind 'array') as float32 at their
    own size. The result is a read-only memory map.
    """
    data_dir = Path(data_dir)
    key = cache_key(competition, data_dir, items["source"], side)
    path = cache_root() / f"{competition.slug}-{side}-{key}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    path.parent.mkdir(parents=True, exist_ok=True)

    sources = list(items["source"])
    first = decode(competition, data_dir, sources[0], side)
    partial = path.with_suffix(f".partial-{os.getpid()}.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=first.dtype, shape=(len(sources), *first.shape))
    try:
        def work(i: int) -> None:
            out[i] = first if i == 0 else decode(competition, data_dir, sources[i], side)

        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
            list(bars.bar(pool.map(work, range(len(sources))), total=len(sources), desc=desc,
                              unit="img", enabled=progress))
        out.flush()
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _write_meta(path, competition, data_dir, side, len(sources))
    return np.load(path, mmap_mode="r")


def decode(competition, data_dir: Path, source, side: int) -> np.ndarray:
    """One item as the cache stores it: an image squared to `side` (uint8), or a float32 array."""
    item = competition.load(source, data_dir, side)
    if competition.kind == "image":
        if item.ndim != 3 or item.shape[2] != 3:
            raise images.ImageError(f"{data_dir / str(source)}: expected an RGB image, got shape {item.shape}")
        return images.square(item, side)
    return np.asarray(item, dtype=np.float32)


def _write_meta(path: Path, competition, data_dir: Path, side: int, n: int) -> None:
    meta = {"competition": competition.slug, "data_dir": str(Path(data_dir).resolve()), "side": side,
            "items": n, "version": CACHE_VERSION}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
