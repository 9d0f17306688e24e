"""Building blocks for competitions' generated downloads (`make_fixture`): learnable synthetic
images per class, and archives packed as Kaggle packs them. For tests and demos only; no real
data is involved."""
from __future__ import annotations

import colorsys
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def class_image(index: int, n_classes: int, rng: np.random.Generator, side: int = 96,
                background=(96, 80, 64)) -> Image.Image:
    """An image a small network tells apart by class: class `index` of `n_classes` draws its own
    shape (ellipse, square, triangle, cross, ring) in its own hue, at a random place and size,
    over a noisy background; 1-3 copies."""
    img = _background(rng, side, background)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        _mark(draw, index, n_classes, rng, side, (0.12, 0.22))
    return img.filter(ImageFilter.GaussianBlur(0.5))


def tags_image(present, n_classes: int, rng: np.random.Generator, side: int = 96,
               background=(96, 80, 64)) -> Image.Image:
    """A multi-label image: one mark (as `class_image` draws it, smaller) of each class index in
    `present`, so a small network learns each tag on its own."""
    img = _background(rng, side, background)
    draw = ImageDraw.Draw(img)
    for index in present:
        _mark(draw, int(index), n_classes, rng, side, (0.08, 0.14))
    return img.filter(ImageFilter.GaussianBlur(0.5))


def random_tags(n: int, n_classes: int, rng: np.random.Generator, p: float = 0.3) -> list[list[int]]:
    """n rows of class indices for a multi-label fixture: each class with probability `p`, at
    least one per row, and the first rows covering every class."""
    rows = []
    for i in range(n):
        row = set(np.flatnonzero(rng.random(n_classes) < p).tolist())
        row.add(i % n_classes if i < n_classes else int(rng.integers(n_classes)))
        rows.append(sorted(row))
    return rows


def _background(rng: np.random.Generator, side: int, background) -> Image.Image:
    return Image.fromarray(np.clip(np.array(background) + rng.normal(0, 14, (side, side, 3)), 0, 255).astype(np.uint8))


def _mark(draw: ImageDraw.ImageDraw, index: int, n_classes: int, rng: np.random.Generator, side: int,
          radius: tuple[float, float]) -> None:
    """Class `index`'s shape in its hue, at a random place and size."""
    colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(index / max(n_classes, 1), 0.85, 0.95))
    r = side * rng.uniform(*radius)
    cx, cy = rng.uniform(r, side - r, 2)
    box = [cx - r, cy - r, cx + r, cy + r]
    shape = index % 5
    if shape == 0:
        draw.ellipse(box, fill=colour)
    elif shape == 1:
        draw.rectangle(box, fill=colour)
    elif shape == 2:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
    elif shape == 3:
        w = max(2, int(r / 2.5))
        draw.line([(cx - r, cy), (cx + r, cy)], fill=colour, width=w)
        draw.line([(cx, cy - r), (cx, cy + r)], fill=colour, width=w)
    else:
        draw.ellipse(box, outline=colour, width=max(2, int(r / 3)))


def encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    """The image as a file of format `fmt` (any PIL writes: JPEG, PNG, TIFF, ...)."""
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    """A zip (stored, not compressed: images are compressed already) of `entries` name -> bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, payload in entries.items():
            z.writestr(name, payload)
    return buf.getvalue()


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    """`entries` zipped into `path` (written under a temporary name, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(zip_bytes(entries))
    partial.replace(path)
    return path


def write_tar(path: Path, entries: dict[str, bytes]) -> Path:
    """`entries` in a tar at `path`, compressed as its name says (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz)."""
    import tarfile

    path = Path(path)
    name = path.name.lower()
    mode = next((m for suffixes, m in (((".tar.gz", ".tgz"), "w:gz"), ((".tar.bz2", ".tbz2"), "w:bz2"),
                                       ((".tar.xz", ".txz"), "w:xz")) if name.endswith(suffixes)), "w")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with tarfile.open(partial, mode) as tar:
        for member, payload in entries.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(payload), 0o644
            tar.addfile(info, io.BytesIO(payload))
    partial.replace(path)
    return path


def hex_ids(n: int, rng: np.random.Generator, length: int = 32) -> list[str]:
    """n distinct lower-case hexadecimal ids."""
    ids: set[str] = set()
    out = []
    while len(out) < n:
        text = "".join(rng.choice(list("0123456789abcdef"), length))
        if text not in ids:
            ids.add(text)
            out.append(text)
    return out


def balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """n class indices, each class as often as possible, shuffled."""
    return rng.permutation(np.arange(n) % n_classes)
