"""Fixtures for the imaging tests (data, encoders and oriented cats live in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Registers pi-heif's plugin (HEIF decoding). The HEIF tests encode with pillow-heif (the
# `encode` fixture; oriented_jpeg(k, img, "HEIF") writes `irot`/`imir`, as Pillow's AVIF
# encoder does for "AVIF").
import imgest.imaging.decode  # noqa: F401


@pytest.fixture(scope="session")
def small_cat(data_dir: Path) -> Image.Image:
    """The 225x150 cat every derived test file is made from (cat.png)."""
    with Image.open(data_dir / "cat.png") as im:
        return im.convert("RGB")


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
