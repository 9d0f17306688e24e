"""Hostile inputs for images.read_rgb: deep and transparent modes, EXIF orientation (also with the
reduced-size JPEG draft), decompression bombs, CMYK JPEGs (Planet's real chips) and broken files."""
from __future__ import annotations

import csv
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from kaggletools.io import images


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, depth: int, colour: int, rows: np.ndarray | None = None) -> bytes:
    """A PNG written by hand (Pillow cannot write 48-bit colour, nor lie about its size)."""
    raw = b"" if rows is None else b"".join(b"\x00" + row.tobytes() for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def _save(tmp_path, image: Image.Image, name: str, **params):
    path = tmp_path / name
    image.save(path, **params)
    return path


# -- deep, transparent and 1-bit modes -----------------------------------------------------------
RAMP16 = np.array([[0, 257, 1000, 32768, 65535]], dtype=np.uint16)
RAMP16_8BIT = [0, 1, 4, 128, 255]  # value * 255 / 65535, rounded: scaled, not clipped to white


@pytest.mark.parametrize("mode,name", [("I;16", "g.png"), ("I;16B", "g.tif"), ("I;16", "g.tif")])
def test_16_bit_greyscale_is_scaled_by_the_type_range_not_clipped(tmp_path, mode, name):
    data = RAMP16.astype("<u2" if mode == "I;16" else ">u2").tobytes()
    path = _save(tmp_path, Image.frombytes(mode, (5, 1), data), name)
    with Image.open(path) as img:
        assert img.mode == mode  # the file really is deep
    out = images.read_rgb(path)
    assert out.shape == (1, 5, 3) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == RAMP16_8BIT and (out == out[:, :, :1]).all()


def test_two_16_bit_images_keep_their_relative_brightness(tmp_path):
    dim = _save(tmp_path, Image.frombytes("I;16", (2, 1), np.array([[0, 4000]], "<u2").tobytes()), "dim.png")
    bright = _save(tmp_path, Image.frombytes("I;16", (2, 1), np.array([[0, 60000]], "<u2").tobytes()), "b.png")
    assert images.read_rgb(dim)[0, 1, 0] == 16 and images.read_rgb(bright)[0, 1, 0] == 233  # no min/max stretch


def test_32_bit_int_and_float_greyscale(tmp_path):
    ints = _save(tmp_path, Image.fromarray(np.array([[-5, 0, 32768, 65535, 70000]], np.int32)), "i.tif")
    floats = _save(tmp_path, Image.fromarray(np.array([[-1.0, 0.0, 0.5, 1.0, 3.0]], np.float32)), "f.tif")
    with Image.open(ints) as a, Image.open(floats) as b:
        assert (a.mode, b.mode) == ("I", "F")
    assert images.read_rgb(ints)[0, :, 1].tolist() == [0, 0, 128, 255, 255]
    assert images.read_rgb(floats)[0, :, 2].tolist() == [0, 0, 128, 255, 255]


def test_48_bit_colour_png_keeps_its_colours(tmp_path):
    rows = np.zeros((2, 3, 3), ">u2")
    rows[:, :] = [[65535, 32768, 256], [0, 65535, 12850], [1000, 0, 65535]]
    path = tmp_path / "deep.png"
    path.write_bytes(_png(3, 2, 16, 2, rows))
    out = images.read_rgb(path).astype(int)
    expected = np.round(rows.astype(float) / 257)
    assert out.shape == (2, 3, 3) and np.abs(out - expected).max() <= 1  # Pillow drops the low byte


def test_64_bit_rgba_png_is_composed_on_black(tmp_path):
    rows = np.zeros((1, 2, 4), ">u2")
    rows[0] = [[65535, 32768, 0, 65535], [65535, 65535, 65535, 0]]
    path = tmp_path / "deep-alpha.png"
    path.write_bytes(_png(2, 1, 16, 6, rows))
    assert images.read_rgb(path)[0].tolist() == [[255, 128, 0], [0, 0, 0]]


def test_alpha_is_composed_on_black(tmp_path):
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [200, 100, 50, 128]]], np.uint8)
    out = images.read_rgb(_save(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png"))
    assert out[0].tolist() == [[200, 100, 50], [0, 0, 0], [100, 50, 25]]
    la = Image.fromarray(np.array([[[200, 255], [200, 0], [200, 128]]], np.uint8), "LA")
    assert images.read_rgb(_save(tmp_path, la, "la.png"))[0, :, 0].tolist() == [200, 0, 100]


def test_palette_transparency_is_black_whatever_colour_sits_under_it(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 255, 255, 10, 200, 30] + [0] * 762)  # index 0 white, index 1 green
    img.putpixel((1, 0), 1)
    path = _save(tmp_path, img, "p.png", transparency=0)
    with Image.open(path) as check:
        assert check.mode == "P" and check.info.get("transparency") == 0
    assert images.read_rgb(path)[0].tolist() == [[0, 0, 0], [10, 200, 30]]


def test_one_bit_image_is_black_and_white(tmp_path):
    img = Image.new("1", (3, 1))
    img.putpixel((1, 0), 1)
    assert images.read_rgb(_save(tmp_path, img, "bw.png"))[0].tolist() == [[0, 0, 0], [255, 255, 255], [0, 0, 0]]


# -- EXIF orientation ------------------------------------------------------------------------------
def _marked(width=600, height=400) -> np.ndarray:
    """Red top-left, blue bottom-left, green top-right blocks on black."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:100, :100], a[-100:, :100], a[:100, -100:] = (255, 0, 0), (0, 0, 255), (0, 255, 0)
    return a


ORIENTED = {3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("min_side,shrink", [(None, 1), (100, 4)])
@pytest.mark.parametrize("orientation", sorted(ORIENTED))
def test_exif_orientation_is_applied_also_with_draft(tmp_path, monkeypatch, orientation, min_side, shrink):
    source = _marked()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path, Image.fromarray(source), "o.jpg", exif=exif, quality=95)
    drafts = []
    original = JpegImageFile.draft
    monkeypatch.setattr(JpegImageFile, "draft", lambda self, *a: drafts.append(a) or original(self, *a))
    out = images.read_rgb(path, min_side=min_side)
    expected = ORIENTED[orientation](source)[::shrink, ::shrink]
    assert out.shape == expected.shape and bool(drafts) == (shrink > 1)
    assert min(out.shape[:2]) >= (min_side or 0)
    for y, x in [(3, 3), (3, -4), (-4, 3), (-4, -4)]:
        assert np.abs(out[y, x].astype(int) - expected[y, x]).max() < 40, (y, x, out[y, x], expected[y, x])


def test_draft_keeps_min_side_on_a_rotated_image(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path, Image.fromarray(_marked(1000, 300)), "tall.jpg", exif=exif)
    out = images.read_rgb(path, min_side=140)  # 300 / 140 > 2: decoded at half size
    assert out.shape == (500, 150, 3)


# -- decompression bombs ---------------------------------------------------------------------------
def test_a_tiny_png_declaring_a_huge_size_is_a_named_error(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(100_000, 100_000, 8, 2))
    assert path.stat().st_size < 100
    with pytest.raises(images.ImageError, match=r"bomb\.png: image of .*exceeds the safety limit") as e:
        images.read_rgb(path)
    assert "KAGGLETOOLS_MAX_IMAGE_PIXELS=10000000000" in str(e.value)


def test_the_limit_comes_from_the_environment(tmp_path, monkeypatch):
    path = _save(tmp_path, Image.new("RGB", (60, 40)), "big.png")
    monkeypatch.setenv("KAGGLETOOLS_MAX_IMAGE_PIXELS", "2399")
    with pytest.raises(images.ImageError, match=r"big\.png: image of 60 x 40 pixels exceeds the safety "
                                                r"limit of 2399 .*KAGGLETOOLS_MAX_IMAGE_PIXELS=2400"):
        images.verify(path)
    monkeypatch.setenv("KAGGLETOOLS_MAX_IMAGE_PIXELS", "2400")
    assert images.read_rgb(path).shape == (40, 60, 3)
    monkeypatch.setenv("KAGGLETOOLS_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="KAGGLETOOLS_MAX_IMAGE_PIXELS='lots' is not a positive"):
        images.read_rgb(path)


def test_a_raised_limit_lets_through_what_pillow_alone_would_refuse(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # restored after the test
    path = _save(tmp_path, Image.new("RGB", (60, 40)), "big.png")  # 2400 > 2 x 1000: Pillow raises
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    monkeypatch.setenv("KAGGLETOOLS_MAX_IMAGE_PIXELS", "5000")
    assert images.read_rgb(path).shape == (40, 60, 3)


@pytest.mark.parametrize("warnings_as", ["ignore", "error"])
def test_pillow_warning_zone_is_refused_by_name(tmp_path, monkeypatch, warnings_as):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setenv("KAGGLETOOLS_MAX_IMAGE_PIXELS", "1000")
    path = _save(tmp_path, Image.new("RGB", (40, 40)), "warn.png")  # 1600: Pillow only warns
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(path).close()
    with warnings.catch_warnings():
        warnings.simplefilter(warnings_as, Image.DecompressionBombWarning)
        with pytest.raises(images.ImageError, match=r"warn\.png: image of .*exceeds the safety limit of 1000"):
            images.read_rgb(path)


# -- CMYK JPEGs ------------------------------------------------------------------------------------
FOREST_CHIP = "train_95"  # tagged "clear primary" in train_v2.csv: rainforest under a clear sky


def test_planet_cmyk_chip_decodes_to_natural_forest_green(shared_data):
    planet = shared_data / "planet"
    path = planet / "train-jpg" / f"{FOREST_CHIP}.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found: the partial Planet download in ../shared lacks it")
    with open(planet / "train_v2.csv", newline="") as f:
        tags = next(row["tags"] for row in csv.DictReader(f) if row["image_name"] == FOREST_CHIP).split()
    assert {"primary", "clear"} <= set(tags) and not {"cloudy", "haze"} & set(tags)
    with Image.open(path) as img:
        assert img.mode == "CMYK"
        raw = np.asarray(img)
    assert (raw[:, :, 3] == 0).all()  # the fourth plane is empty, as docs/competitions.md says
    for min_side in (None, 64):
        red, green, blue = images.read_rgb(path, min_side=min_side).reshape(-1, 3).mean(axis=0)
        assert green > red and green > blue, (red, green, blue)
    red, green, blue = raw[:, :, :3].reshape(-1, 3).mean(axis=0)
    assert not (green > red and green > blue)  # the raw planes read as RGB are inverted (magenta)
    assert np.array_equal(images.read_rgb(path), 255 - raw[:, :, :3])


@pytest.mark.parametrize("cmyk,rgb", [((0, 255, 255, 0), (255, 0, 0)), ((255, 0, 255, 0), (0, 255, 0)),
                                      ((0, 0, 0, 255), (0, 0, 0)), ((0, 0, 0, 0), (255, 255, 255))])
def test_adobe_inverted_cmyk_jpeg_keeps_its_colours(tmp_path, cmyk, rgb):
    path = _save(tmp_path, Image.new("CMYK", (16, 16), cmyk), "adobe.jpg")
    with Image.open(path) as img:
        assert img.info.get("adobe")  # Pillow writes an Adobe marker and inverted planes
    assert np.abs(images.read_rgb(path).astype(int) - rgb).max() <= 3


# -- broken files ----------------------------------------------------------------------------------
def _good_png() -> bytes:
    return _png(2, 2, 8, 2, np.full((2, 2, 3), 90, np.uint8))


@pytest.mark.parametrize("name,payload", [
    ("empty.png", b""),
    ("notes.png", b"id,label\n1,cat\n" * 20),  # a text file with an image's name
    ("zero.png", _png(0, 0, 8, 2)),
    ("truncated.png", _good_png()[:40]),
    ("header-crc.png", _good_png()[:29] + b"\0\0\0\0" + _good_png()[33:]),
    ("data-crc.png", _good_png()[:-16] + b"\0\0\0\0" + _good_png()[-12:]),  # the pixels decode fine
], ids=lambda v: v if isinstance(v, str) else None)
def test_broken_files_are_named_errors(tmp_path, name, payload):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(images.ImageError, match=rf"{name}: .*(empty|corrupt)") as e:
        images.read_rgb(path)
    assert "re-download" in str(e.value)
    with pytest.raises(images.ImageError):
        images.verify(path)


def test_the_good_png_behind_the_broken_ones_decodes(tmp_path):
    path = tmp_path / "good.png"
    path.write_bytes(_good_png())
    assert images.read_rgb(path).tolist() == np.full((2, 2, 3), 90).tolist()
    images.verify(path)


def test_missing_file_is_a_named_error(tmp_path):
    with pytest.raises(images.ImageError, match=r"gone\.jpg: file not found"):
        images.read_rgb(tmp_path / "gone.jpg")
