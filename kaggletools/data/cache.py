"""Decode once: every item decoded, squared to a side and stored in one memory-mapped array.

Epochs, TTA and prediction read the cache instead of decoding JPEGs again. The cache is keyed
by the competition, the item sources (path, size, modification time), the side and the item
kind, so a changed source or side rebuilds it. It is written to a temporary file and renamed,
so an interrupted build leaves nothing that a later run could mistake for a finished cache.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from kaggletools import progress as bars
from kaggletools.io import images
from kaggletools.io.places import cache_root  # noqa: F401 (cache.cache_root: where the cache lives)
from kaggletools.io import files

CACHE_VERSION = 2


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
               workers: int | None = None, progress: bool = True, desc: str = "decode",
               device=None, decoder: str = "auto") -> np.ndarray:
    """The (N, side, side, C) array of `items`, from the cache or decoded once into it.

    Images are stored as uint8 squares of `side`; array items (kind 'array') as float32 at their
    own size. The result is a read-only memory map.

    `device` is the training device (a torch.device or its name; '' or 'auto' for the best
    available, None for none). `decoder`: 'auto' decodes JPEGs on that device when it is a CUDA
    GPU (nvjpeg, kaggletools.data.gpu_decode) and everything else with PIL on `workers` threads;
    'pil' always uses PIL; 'torchvision' uses torchvision's decoder on `device` (the CPU when
    None), the GPU path's code on any device. Same file, key and format whichever decodes.
    """
    data_dir = Path(data_dir)
    key = cache_key(competition, data_dir, items["source"], side)
    path = cache_root() / f"{competition.slug}-{side}-{key}.npy"
    if path.exists():
        try:
            cached = np.load(path, mmap_mode="r")
            if len(cached) == len(items):
                return cached
        except (ValueError, OSError, EOFError):  # cut short or replaced (not by us: we rename whole files)
            pass
        import warnings

        warnings.warn(f"decode cache {path} is damaged; decoding again", stacklevel=2)
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only cache: decoded into memory below
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path.parent)
    except OSError:
        pass  # a cache folder that cannot be made: decoded into memory below

    sources = list(items["source"])
    workers = workers or min(8, os.cpu_count() or 1)
    jpeg_device = decoder_device(competition, device, decoder)
    partial = path.with_suffix(f".partial-{os.getpid()}.npy")
    built: dict = {"decoder": "pil"}
    first = None if jpeg_device is not None else decode(competition, data_dir, sources[0], side)
    dtype, shape = (np.uint8, (len(sources), side, side, 3)) if first is None else (first.dtype,
                                                                                     (len(sources), *first.shape))
    out = _room_for(partial, dtype, shape)
    if out is None:  # no room (or no write access) for the cache: decode into memory, this run only
        _refuse_beyond_memory(path.parent, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        out = np.empty(shape, dtype)
        with bars.bar(total=len(sources), desc=desc, unit="img", enabled=progress) as bar:
            if jpeg_device is not None:
                _fill_on_device(out, competition, data_dir, sources, side, jpeg_device, workers, bar)
            else:
                _fill_with_pil(out, competition, data_dir, sources, side, workers, bar, first)
        out.flags.writeable = False
        return out
    try:
        with bars.bar(total=len(sources), desc=desc, unit="img", enabled=progress) as bar:
            if jpeg_device is not None:
                built = _fill_on_device(out, competition, data_dir, sources, side, jpeg_device, workers, bar)
            else:
                _fill_with_pil(out, competition, data_dir, sources, side, workers, bar, first)
        out.flush()
        del out
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    try:
        _write_meta(path, competition, data_dir, side, len(sources), built)
    except OSError:
        pass  # the cache itself is whole; its description is for people only
    return np.load(path, mmap_mode="r")


MARGIN = 64 * 2**20  # bytes kept free beyond the cache itself


def _refuse_beyond_memory(where: Path, need: int) -> None:
    """Stop cleanly, naming the cache folder, when the items fit neither there nor in memory."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return
    if need > 0.8 * available:
        raise OSError(errno.ENOSPC, f"the decode cache needs {need / 2**20:,.0f} MiB, more than {where} and the "
                      f"memory ({available / 2**20:,.0f} MiB free) hold; free some space or set KAGGLETOOLS_CACHE "
                      "to a folder with room", str(where))


def _room_for(partial: Path, dtype, shape: tuple):
    """The cache file as a memory map whose every block is on disk (so a full disk can never kill
    the process with SIGBUS while it is filled), or None, with a warning, when the cache folder has
    no room for it or cannot be written: the items are then decoded into memory instead."""
    import shutil
    import warnings

    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    where = partial.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        free = None
    why = None
    if free is not None and free < need + MARGIN:
        why = f"it needs {need / 2**20:,.0f} MiB and {free / 2**20:,.0f} MiB are free"
    else:
        try:
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)
            try:
                with open(partial, "r+b") as f:  # the blocks themselves, not a sparse file
                    os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            except (AttributeError, OSError) as e:
                if getattr(e, "errno", None) not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    return out  # the file system cannot preallocate (or the platform): the space was checked
                del out
                partial.unlink(missing_ok=True)
                why = f"the disk is full ({e.strerror})"
            else:
                return out
        except OSError as e:
            partial.unlink(missing_ok=True)
            why = f"{e.strerror or type(e).__name__}"
    warnings.warn(f"decode cache {where}: no room for {partial.name.split('.partial-')[0]}.npy ({why}); decoding into "
                  "memory for this run only (free some space, or set KAGGLETOOLS_CACHE to a folder with room)",
                  stacklevel=3)
    return None


def remove_leftovers(root: Path) -> list[Path]:
    """Delete partial caches left by processes that no longer run (a killed decode)."""
    return files.remove_dead_partials(root, "*.partial-*.npy")


def decoder_device(competition, device=None, decoder: str = "auto"):
    """The torch.device JPEGs are decoded on, or None for PIL (see load_items)."""
    if decoder not in ("auto", "pil", "torchvision"):
        raise ValueError(f"decoder {decoder!r} is not one of auto, pil, torchvision")
    if decoder == "pil" or competition.kind != "image" or not _default_loader(competition):
        return None
    import torch

    if device in ("", "auto"):
        from kaggletools.model.device import pick

        device = pick()
    device = torch.device(device) if device is not None else None
    if decoder == "torchvision":
        return device or torch.device("cpu")
    return device if device is not None and device.type == "cuda" else None


def _default_loader(competition) -> bool:
    """Whether the competition decodes its items with the default image loader (files as they are)."""
    return not getattr(competition, "custom_load", True)


def _fill_with_pil(out: np.ndarray, competition, data_dir: Path, sources: list, side: int, workers: int, bar,
                   first: np.ndarray) -> np.ndarray:
    def work(i: int) -> None:
        out[i] = first if i == 0 else decode(competition, data_dir, sources[i], side)

    with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
        for _ in pool.map(work, range(len(sources))):
            bar.update(1)
    return out


def _fill_on_device(out: np.ndarray, competition, data_dir: Path, sources: list, side: int, device,
                    workers: int, bar) -> dict:
    from kaggletools.data import gpu_decode

    counts = gpu_decode.fill(out, [data_dir / str(s) for s in sources], side, device,
                             lambda i: decode(competition, data_dir, sources[i], side), workers=workers,
                             on_done=bar.update)
    return {"decoder": f"torchvision.io.decode_jpeg on {device}", **counts.to_dict()}


def decode(competition, data_dir: Path, source, side: int) -> np.ndarray:
    """One item as the cache stores it: an image squared to `side` (uint8), or a float32 array."""
    item = competition.load(source, data_dir, side)
    if competition.kind == "image":
        if item.ndim != 3 or item.shape[2] != 3:
            raise images.ImageError(f"{data_dir / str(source)}: expected an RGB image, got shape {item.shape}")
        return images.square(item, side)
    return np.asarray(item, dtype=np.float32)


def _write_meta(path: Path, competition, data_dir: Path, side: int, n: int, built: dict | None = None) -> None:
    meta = {"competition": competition.slug, "data_dir": str(Path(data_dir).resolve()), "side": side,
            "items": n, "version": CACHE_VERSION, **(built or {})}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
