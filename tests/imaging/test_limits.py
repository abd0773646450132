"""Tests for imgest.imaging.limits: the checks that run before any decode."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PIL import Image

from imgest.errors import ImageCorrupt, ImageTooManyFrames, ImageTooManyPixels
from imgest.imaging.limits import ImageLimits, check
from imgest.imaging.sniff import ImageInfo, probe


def info(width: int, height: int, frames: int = 1) -> ImageInfo:
    return ImageInfo("png", "image/png", width, height, frames)


def test_defaults() -> None:
    limits = ImageLimits()
    assert (limits.max_pixels, limits.max_frames, limits.max_side) == (50_000_000, 1000, 65_500)


def test_ordinary_photo_passes(read: Callable[[str], bytes]) -> None:
    check(probe(read("cat.jpg")), ImageLimits())
    check(info(4000, 3000), ImageLimits())


def test_pixel_limit_is_inclusive() -> None:
    limits = ImageLimits(max_pixels=1000)
    check(info(100, 10), limits)
    with pytest.raises(ImageTooManyPixels):
        check(info(101, 10), limits)


def test_decompression_bomb_is_refused_from_its_header(read: Callable[[str], bytes]) -> None:
    bomb = probe(read("bomb.png"))
    with pytest.raises(ImageTooManyPixels):
        check(bomb, ImageLimits())
    with pytest.raises(ImageTooManyPixels):
        check(bomb, ImageLimits(max_side=200_000))


@pytest.mark.parametrize(("width", "height"), [(1, 100_000), (100_000, 1)])
def test_long_strip_is_refused_by_side(width: int, height: int) -> None:
    with pytest.raises(ImageTooManyPixels):
        check(info(width, height), ImageLimits())
    check(info(width, height), ImageLimits(max_side=100_000))


def test_frame_limit(read: Callable[[str], bytes]) -> None:
    gif = probe(read("cat-animated.gif"))
    check(gif, ImageLimits(max_frames=3))
    with pytest.raises(ImageTooManyFrames):
        check(gif, ImageLimits(max_frames=2))


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (0, 0)])
def test_zero_dimension_is_corrupt(width: int, height: int) -> None:
    with pytest.raises(ImageCorrupt):
        check(info(width, height), ImageLimits())


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_frames"):
        ImageLimits(max_frames=0)
    assert Image.MAX_IMAGE_PIXELS is not None
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS"):
        ImageLimits(max_pixels=Image.MAX_IMAGE_PIXELS + 1)
