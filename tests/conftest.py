"""Shared fixtures for the whole suite: test data, encoders, EXIF-oriented photos."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pillow_heif
import pytest
from PIL import Image

# Real services, each a session fixture that starts on first use (tests/services/).
from tests.services.azurite import azurite
from tests.services.postgres import pg_url, postgres
from tests.services.radosgw import radosgw


@pytest.fixture(autouse=True)
def _root_logger_as_it_was() -> Iterator[None]:
    """A command run in-process (`imgest serve` through CliRunner) configures the root logger
    as a real process would; put it back, so one test's INFO level does not print alembic's
    and httpx's INFO lines into the next test's stderr."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


# Tests import onnxruntime too: keep its Linux telemetry off (see imgest/scoring/model.py).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = ["azurite", "pg_url", "postgres", "radosgw"]

DATA = Path(__file__).parent / "data"

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
        if fmt == "HEIF":
            # imgest decodes HEIF with pi-heif, which has no encoder; the tests write HEIC with
            # pillow-heif's x265 (a dev dependency), without registering it as Pillow's opener.
            pillow_heif.from_pillow(img).save(out, format="HEIF", **kwargs)
        else:
            img.save(out, fmt, **kwargs)
        return out.getvalue()

    return _encode


@pytest.fixture(scope="session")
def cat(data_dir: Path) -> Image.Image:
    """The cat photo (cat.jpg, 451x300) as an RGB image."""
    with Image.open(data_dir / "cat.jpg") as im:
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


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, the loop uvicorn serves imgest on."""
    return "asyncio"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: real small images (see its README for sources and licences)."""
    return DATA
