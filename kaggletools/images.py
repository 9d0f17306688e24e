"""Decode and verify images, and squeeze them to a square side for the decode-once cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageError(ValueError):
    """An image file that cannot be decoded; the message names the file and the fix."""


def read_rgb(path: str | Path, min_side: int | None = None) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 RGB array.

    Grayscale, CMYK and palette images are converted to RGB. With `min_side`, JPEGs are decoded
    at a reduced scale (1/2, 1/4, 1/8) when that still leaves a shorter side of at least `min_side`,
    which is several times faster than decoding at full size and resizing.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes); delete it or re-download the data")
        with Image.open(path) as img:
            if min_side and img.format == "JPEG":
                w, h = img.size
                scale = min(w, h) / min_side
                if scale >= 2:
                    img.draft("RGB", (max(1, round(w / scale)), max(1, round(h / scale))))
            img.load()
            return np.asarray(img.convert("RGB"))
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found; check the data folder or run `prepare` again") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(
            f"{path}: cannot decode image ({e}); the file is corrupt or truncated: "
            "delete it or re-download the data") from None


def square(image: np.ndarray, side: int) -> np.ndarray:
    """Resize so the shorter side is `side`, then crop the centre square (fastai's Resize crop)."""
    h, w = image.shape[:2]
    if (h, w) == (side, side):
        return image
    scale = side / min(h, w)
    nh, nw = max(side, round(h * scale)), max(side, round(w * scale))
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR, reducing_gap=None))
    top, left = (nh - side) // 2, (nw - side) // 2
    return resized[top:top + side, left:left + side]


def verify(path: str | Path) -> None:
    """Raise ImageError if the file is not a decodable image."""
    read_rgb(path)
