"""Shared fixtures for the imaging tests: test data, encoders and EXIF-oriented cats."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"

# The stored pixels for EXIF orientation k, given the upright image (EXIF 2.3, tag 0x0112):
# a viewer applies the inverse of this to show the photo upright.
STORED_FOR_ORIENTATION: dict[int, Callable[[Image.Image], Image.Image]] = {
    1: lambda im: im.copy(),
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),  # shown after 90 deg clockwise
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data."""
    return DATA


@pytest.fixture(scope="session")
def read(data_dir: Path) -> Callable[[str], bytes]:
    """read(name) -> the bytes of tests/data/name."""

    def _read(name: str) -> bytes:
        return (data_dir / name).read_bytes()

    return _read


@pytest.fixture(scope="session")
def encode() -> Callable[..., bytes]:
    """encode(img, "PNG", **save_kwargs) -> bytes."""

    def _encode(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
        out = io.BytesIO()
        img.save(out, fmt, **kwargs)
        return out.getvalue()

    return _encode


@pytest.fixture(scope="session")
def cat(data_dir: Path) -> Image.Image:
    """The cat photo (cat.jpg, 451x300) as an RGB image."""
    with Image.open(data_dir / "cat.jpg") as im:
        return im.convert("RGB")


@pytest.fixture(scope="session")
def small_cat(data_dir: Path) -> Image.Image:
    """The 225x150 cat every derived test file is made from (cat.png)."""
    with Image.open(data_dir / "cat.png") as im:
        return im.convert("RGB")


@pytest.fixture(scope="session")
def oriented_jpeg(cat: Image.Image, encode: Callable[..., bytes]) -> Callable[..., bytes]:
    """oriented_jpeg(k, img=cat) -> a JPEG that shows `img` upright once EXIF orientation k
    is applied."""

    def _make(k: int, img: Image.Image | None = None, fmt: str = "JPEG") -> bytes:
        exif = Image.Exif()
        exif[0x0112] = k
        stored = STORED_FOR_ORIENTATION[k](img if img is not None else cat)
        extra = {"quality": 95} if fmt == "JPEG" else {}
        return encode(stored, fmt, exif=exif.tobytes(), **extra)

    return _make


@pytest.fixture(scope="session")
def big_jpeg(cat: Image.Image, encode: Callable[..., bytes]) -> Callable[..., bytes]:
    """big_jpeg(width, height, mode="RGB") -> a JPEG of the cat tiled at native resolution."""

    def _make(width: int, height: int, mode: str = "RGB") -> bytes:
        canvas = Image.new("RGB", (width, height))
        for y in range(0, height, cat.height):
            for x in range(0, width, cat.width):
                canvas.paste(cat, (x, y))
        return encode(canvas.convert(mode), "JPEG", quality=90)

    return _make


def _mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size, (a.size, b.size)
    pa = np.asarray(a.convert("RGB"), dtype=np.int16)
    pb = np.asarray(b.convert("RGB"), dtype=np.int16)
    return float(np.abs(pa - pb).mean())


@pytest.fixture(scope="session")
def diff() -> Callable[[Image.Image, Image.Image], float]:
    """diff(a, b) -> mean absolute difference per RGB value of two same-size images."""
    return _mean_abs_diff
