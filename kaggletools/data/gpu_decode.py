"""Decode JPEGs in batches with torchvision's `decode_jpeg` on a device (nvjpeg on CUDA) and square
them there, for the decode-once cache (kaggletools.data.cache).

The result is what the PIL path (`images.read_rgb` + `images.square`) stores: (side, side, 3)
uint8, the shorter side resized to `side` with an antialiased bilinear filter, the centre square
kept. Pixel values differ slightly (JPEG decoders round differently, PIL may decode at a reduced
DCT scale, the two resamplers differ in the last bit), by a grey level or two on average.

What goes to PIL instead (the caller's `fallback`): anything that is not a JPEG in RGB or
greyscale (PNG, CMYK/YCCK JPEGs, ...), JPEGs with an EXIF orientation other than 1 (PIL turns
them as a photo viewer does), images over the pixel limit and files without an end-of-image
marker (PIL refuses them with the right message), and any image the device decoder fails on. The device is a parameter: on the CPU
the same code runs with torchvision's CPU decoder, which is how the tests check it.
"""
from __future__ import annotations

import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np

BATCH = 128                 # images per decode call
PIXEL_BUDGET = 2 ** 27      # decoded pixels per decode call (about 400 MB of RGB uint8)
ORIENTATION = 0x0112        # the EXIF orientation tag


@dataclass
class Counts:
    """How many items each decoder produced."""

    device: int = 0
    fallback: int = 0
    reasons: dict = field(default_factory=dict)   # why items went to the fallback, counted

    def to_dict(self) -> dict:
        return {"device": self.device, "fallback": self.fallback, "fallback_reasons": dict(self.reasons)}


class Probe(NamedTuple):
    """A file's bytes and (h, w) when the device decoder can take it as is; else `reason`."""

    data: bytes | None
    size: tuple[int, int] | None
    reason: str


def probe(path: str | Path, max_pixels: int) -> Probe:
    """Only the header is parsed (PIL reads no pixels here)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.format != "JPEG":
                return Probe(None, None, f"not a JPEG ({img.format})")
            if img.mode not in ("RGB", "L"):
                return Probe(None, None, f"JPEG mode {img.mode}")
            w, h = img.size
            if w * h > max_pixels:
                return Probe(None, None, "over the pixel limit")
            if img.getexif().get(ORIENTATION, 1) != 1:
                return Probe(None, None, "EXIF orientation")
        data = Path(path).read_bytes()
        if not data.rstrip(b"\0")[-2:] == b"\xff\xd9":  # truncated? PIL's path decides (and refuses)
            return Probe(None, None, "no end-of-image marker")
        return Probe(data, (h, w), "")
    except Exception as e:  # unreadable, truncated, ...: PIL's path raises the proper error
        return Probe(None, None, type(e).__name__)


def square(image, side: int, via_float: bool | None = None):
    """(C, H, W) uint8 tensor -> (side, side, C) uint8 tensor: the shorter side resized to `side`
    (bilinear, antialiased, as PIL's resize) and the centre square cropped (`images.square`).
    On the CPU torch resizes uint8 directly (its PIL-like fast path; float is 10-100x slower
    there); CUDA has no uint8 kernel, so it resizes in float and rounds (`via_float`)."""
    import torch
    import torch.nn.functional as F

    c, h, w = image.shape
    if (h, w) == (side, side):
        return image.permute(1, 2, 0)
    if via_float is None:
        via_float = image.device.type != "cpu"
    scale = side / min(h, w)
    nh, nw = max(side, round(h * scale)), max(side, round(w * scale))
    top, left = (nh - side) // 2, (nw - side) // 2
    x = image[None].contiguous().float() if via_float else image[None]
    resized = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    resized = resized[:, top:top + side, left:left + side]
    if via_float:
        resized = resized.round_().clamp_(0, 255).to(torch.uint8)
    return resized.permute(1, 2, 0)


def decode_batch(data: Sequence[bytes], side: int, device) -> list:
    """Decode JPEG bytes on `device` and square them: a list of (side, side, 3) uint8 tensors on
    `device`, None where an image could not be decoded (one failure retries the batch image by image)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs in favour of torchcodec
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            decoded = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)
        except (RuntimeError, ValueError):
            decoded = []
            for t in tensors:
                try:
                    decoded.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=device))
                except (RuntimeError, ValueError):
                    decoded.append(None)
    return [None if img is None else square(img, side) for img in decoded]


def fill(out: np.ndarray, paths: Sequence[str | Path], side: int, device, fallback: Callable[[int], np.ndarray], *,
         workers: int = 8, max_pixels: int | None = None, batch: int = BATCH, pixel_budget: int = PIXEL_BUDGET,
         on_done: Callable[[int], None] = lambda n: None) -> Counts:
    """Write every item of `paths` into `out[i]` ((N, side, side, 3) uint8): JPEGs decoded in
    batches on `device`, the rest by `fallback(i)` on a pool of `workers` threads, which also reads
    the next batch's files while the device decodes this one. If every image of the first batch
    fails, the device has no usable decoder and PIL takes everything. `on_done(n)` counts
    progress (called on this thread only)."""
    import torch

    from kaggletools.io import images

    device = torch.device(device)
    limit = images.max_pixels() if max_pixels is None else max_pixels
    counts = Counts()
    usable = True  # False once a whole first batch failed: no decoder on this device, PIL for the rest
    chunks = [range(i, min(i + batch, len(paths))) for i in range(0, len(paths), batch)]

    def read(i: int):
        return probe(paths[i], limit)

    def pil(i: int) -> None:
        out[i] = fallback(i)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        ahead: list[Future] = [pool.submit(read, i) for i in chunks[0]] if chunks else []
        for k, chunk in enumerate(chunks):
            probed = [f.result() for f in ahead]
            ahead = [pool.submit(read, i) for i in chunks[k + 1]] if k + 1 < len(chunks) else []
            jpegs, slow = [], []
            for i, (data, hw, reason) in zip(chunk, probed):
                if data is None or not usable:
                    slow.append((i, reason or "device decoder unusable"))
                else:
                    jpegs.append((i, data, hw))
            failed = []
            for group in _by_pixels(jpegs, pixel_budget):
                squares = decode_batch([d for _, d, _ in group], side, device)
                good = [(i, s) for (i, _, _), s in zip(group, squares) if s is not None]
                failed += [i for (i, _, _), s in zip(group, squares) if s is None]
                if good:
                    host = torch.stack([s for _, s in good]).cpu().numpy()  # one copy per batch
                    out[[i for i, _ in good]] = host
                    counts.device += len(good)
                    on_done(len(good))
                elif counts.device == 0 and len(group) > 1:
                    usable = False
            slow += [(i, "device decoder failed") for i in failed]
            for _, reason in slow:
                counts.reasons[reason] = counts.reasons.get(reason, 0) + 1
            for f in [pool.submit(pil, i) for i, _ in slow]:
                f.result()  # raises the fallback's error (e.g. images.ImageError) here
                on_done(1)
            counts.fallback += len(slow)
    return counts


def _by_pixels(jpegs: list, budget: int) -> list[list]:
    """Split (i, bytes, (h, w)) items into groups of at most `budget` decoded pixels (at least one item)."""
    groups, current, pixels = [], [], 0
    for item in jpegs:
        h, w = item[2]
        if current and pixels + h * w > budget:
            groups.append(current)
            current, pixels = [], 0
        current.append(item)
        pixels += h * w
    return groups + ([current] if current else [])
