"""Decode and verify images, and squeeze them to a square side for the decode-once cache.

Every image becomes (H, W, 3) uint8 RGB, oriented as a photo viewer shows it (EXIF orientation):
- 8-bit L, P, RGB, YCbCr, 1-bit and CMYK (Planet's chips, Adobe-inverted or not): Pillow's RGB.
- 16-bit and deeper greyscale (I;16, I;16B, I, F) is scaled by the range of its type, not by
  each image's min/max, so two images keep their relative brightness: 16-bit and I by 65535
  (Pillow stores 16-bit data in mode I), F by 1.0 (the float convention); values outside clip.
  Pillow itself already reduces 16-bit colour PNGs (48/64-bit) to 8-bit RGB/RGBA.
- Transparency (RGBA, LA, PA, palette or colour-key transparency) is composed on black, so fully
  transparent pixels are black whatever colour the encoder left under them.
- Images over KAGGLETOOLS_MAX_IMAGE_PIXELS pixels are refused (see max_pixels).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PIXEL_LIMIT_VAR = "KAGGLETOOLS_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default MAX_IMAGE_PIXELS, about 9,459 x 9,459


class ImageError(ValueError):
    """An image file that cannot be decoded; the message names the file and the fix."""


def max_pixels() -> int:
    """The most pixels an image may have: $KAGGLETOOLS_MAX_IMAGE_PIXELS, else Pillow's default.

    Unlike Pillow, which only warns up to twice its limit, anything above is refused: a
    decode-once cache of small squares never needs such images, and a decompression bomb (a tiny
    file declaring a huge size) would otherwise take gigabytes of memory in every worker.
    """
    value = os.environ.get(PIXEL_LIMIT_VAR, "").strip().replace("_", "").replace(",", "")
    if not value:
        return DEFAULT_MAX_PIXELS
    if not value.isdigit() or int(value) == 0:
        raise ValueError(f"{PIXEL_LIMIT_VAR}={os.environ[PIXEL_LIMIT_VAR]!r} is not a positive whole "
                         f"number of pixels; set e.g. {PIXEL_LIMIT_VAR}=200000000 or unset it")
    return int(value)


def read_rgb(path: str | Path, min_side: int | None = None) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 RGB array (see the module notes on modes).

    With `min_side`, JPEGs are decoded at a reduced scale (1/2, 1/4, 1/8) when that still leaves a
    shorter side of at least `min_side`, several times faster than decoding at full size.
    """
    path = Path(path)
    limit = max_pixels()
    # Pillow refuses above twice its own global limit before we see the size: let a raised limit
    # through (raised only, and only to what the user asked for; Pillow's check stays on).
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes); delete it or re-download the data")
        with Image.open(path) as img:
            _check_pixels(path, img.size, limit)
            if img.format != "PNG":
                return _decode(img, min_side)
            img.verify()  # the only check of PNG chunk CRCs; it reads no pixels but spends `img`
        with Image.open(path) as img:
            return _decode(img, min_side)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found; check the data folder or run `prepare` again") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # Warning: under -W error
        pixels = re.search(r"\((\d+) pixels\)", str(e))  # Pillow refused before telling us w x h
        raise _too_big(path, int(pixels.group(1)) if pixels else None, limit) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(
            f"{path}: cannot decode image ({e}); the file is corrupt, truncated or not an image: "
            "delete it or re-download the data") from None


def _check_pixels(path: Path, size: tuple[int, int], limit: int) -> None:
    w, h = size
    if w * h > limit:
        raise _too_big(path, w * h, limit, f"{w} x {h}")


def _too_big(path: Path, pixels: int | None, limit: int, size: str | None = None) -> ImageError:
    return ImageError(
        f"{path}: image of {size or pixels or 'too many'} pixels exceeds the safety limit of {limit} "
        "pixels (a corrupt file or a decompression bomb); if the file is genuine, raise the limit "
        f"with {PIXEL_LIMIT_VAR}={pixels or '<n>'}")


def _decode(img: Image.Image, min_side: int | None) -> np.ndarray:
    """Load `img` (reduced in size for a JPEG when `min_side` allows), orient it, make it RGB."""
    if min_side and img.format == "JPEG":
        # The short side is the same before and after an EXIF rotation, so the scale computed on
        # the stored image keeps `min_side` on the oriented one; draft takes stored (w, h).
        w, h = img.size
        scale = min(w, h) / min_side
        if scale >= 2:
            img.draft("RGB", (max(1, round(w / scale)), max(1, round(h / scale))))
    img.load()
    ImageOps.exif_transpose(img, in_place=True)
    return _to_rgb(img)


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I", "F") or img.mode.startswith("I;"):
        full = 1.0 if img.mode == "F" else 65535.0  # the type's range: see the module notes
        grey = np.clip(np.asarray(img, dtype=np.float64) * (255 / full), 0, 255).round().astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.has_transparency_data:  # compose on black: colour times alpha
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)
        return ((rgba[:, :, :3] * rgba[:, :, 3:] + 127) // 255).astype(np.uint8)
    return np.asarray(img.convert("RGB"))


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
    """Raise ImageError if the file is not a decodable image (including a PNG with a bad CRC)."""
    read_rgb(path)
