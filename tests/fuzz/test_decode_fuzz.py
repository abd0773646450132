"""Fuzz probe -> limits -> decode -> pipeline on mutated real images.

Properties: our own header readers (`probe`, `check`) raise nothing but ImgestError; a render
either yields an exact 224x224 RGB rendition or raises (the ingest service turns a decoder's
exception into 422 image_corrupt); and no input takes unbounded time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgest.errors import ImgestError
from imgest.imaging.limits import ImageLimits, check
from imgest.imaging.pipeline import builtin_pipelines
from imgest.imaging.sniff import probe

# A failing example of a long run can be a large bytes object; its repr must not turn into an
# error that hides the real failure (filterwarnings = error).
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

DATA = Path(__file__).parent.parent / "data"
SEEDS = {
    name: (DATA / name).read_bytes()
    for name in (
        "cat.jpg",
        "cat-progressive.jpg",
        "cat.png",
        "cat-palette.png",
        "cat.webp",
        "cat.tiff",
        "cat-animated.gif",
        "cat.bmp",
        "cat.heic",
        "cat.avif",
        "cat-cmyk.jpg",
        "rocket.jpg",
    )
}
PIPELINE = builtin_pipelines()["default"]
LIMITS = ImageLimits(max_pixels=20_000_000, max_frames=100)
SECONDS = 10.0


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 24))):
        pos = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "byte", "ff", "insert", "delete"]))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "ff":
            data[pos : pos + 2] = b"\xff" + bytes([draw(st.integers(0xC0, 0xFE))])
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        else:
            del data[pos : pos + draw(st.integers(1, 64))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@given(data=mutated())
def test_mutated_images_render_or_fail_cleanly(data: bytes) -> None:
    started = time.monotonic()
    try:
        info = probe(data)
        check(info, LIMITS)
    except ImgestError:
        return
    try:
        rendition = PIPELINE.render(data, info)
    except ImgestError:
        return
    except Exception:  # a decoder's own error: the ingest service answers 422 image_corrupt
        return
    finally:
        assert time.monotonic() - started < SECONDS
    assert rendition.image.mode == "RGB" and rendition.image.size == (224, 224)
    assert len(rendition.encode()) > 0
