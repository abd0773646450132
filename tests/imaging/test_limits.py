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


# --- scans and decode memory (issue 14 items 3 and 4) ----------------------------------------


def test_scan_limit_is_inclusive() -> None:
    from imgest.errors import ImageTooComplex

    jpeg = ImageInfo("jpeg", "image/jpeg", 100, 100, 1, scans=100, scalable=True)
    check(jpeg, ImageLimits(max_scans=100))
    with pytest.raises(ImageTooComplex, match="101 scans"):
        check(ImageInfo("jpeg", "image/jpeg", 100, 100, 1, scans=101), ImageLimits())


def test_real_progressive_jpeg_is_under_the_scan_limit(read: Callable[[str], bytes]) -> None:
    progressive = probe(read("cat-progressive.jpg"))
    assert 1 < progressive.scans <= 20
    check(progressive, ImageLimits())


def test_decode_memory_is_pixels_times_bytes_per_pixel() -> None:
    from imgest.errors import ImageTooMuchMemory
    from imgest.imaging.limits import decode_bytes

    grey16 = ImageInfo("png", "image/png", 7000, 7000, 1, bytes_per_pixel=3)
    assert decode_bytes(grey16) == 7000 * 7000 * 3
    check(grey16, ImageLimits(max_decode_bytes=7000 * 7000 * 3))
    with pytest.raises(ImageTooMuchMemory, match="3 bytes per pixel"):
        check(grey16, ImageLimits(max_decode_bytes=7000 * 7000 * 3 - 1))


def test_jpeg_counts_at_its_reduced_decode_size() -> None:
    from imgest.imaging.limits import decode_bytes

    photo = ImageInfo("jpeg", "image/jpeg", 8000, 6000, 1, bytes_per_pixel=7, scalable=True)
    assert decode_bytes(photo) == 8000 * 6000 * 7  # no target: full size
    assert decode_bytes(photo, (224, 224)) == 1000 * 750 * 7  # 1/8
    assert decode_bytes(photo, (3000, 3000)) == 4000 * 3000 * 7  # 1/2 (3000 <= 6000 / 2)
    assert decode_bytes(photo, (4001, 10)) == 8000 * 6000 * 7
    rotated = ImageInfo(
        "jpeg", "image/jpeg", 8000, 6000, 1, orientation=6, bytes_per_pixel=7, scalable=True
    )
    assert decode_bytes(rotated, (3000, 4000)) == 4000 * 3000 * 7  # upright target, swapped
    png = ImageInfo("png", "image/png", 8000, 6000, 1, bytes_per_pixel=4)
    assert decode_bytes(png, (224, 224)) == 8000 * 6000 * 4  # no reduced decode


@pytest.mark.parametrize(
    ("width", "height", "fmt", "bpp"),
    [(8660, 5773, "jpeg", 7), (8660, 5773, "png", 4), (8660, 5773, "tiff", 4)],
)
def test_default_budget_takes_50_mp_8_bit_rgb_photos(
    width: int, height: int, fmt: str, bpp: int
) -> None:
    photo = ImageInfo(fmt, f"image/{fmt}", width, height, 1, bytes_per_pixel=bpp)
    check(photo, ImageLimits())  # even a JPEG decoded at full size


def test_limits_from_settings() -> None:
    from imgest.config import load_settings

    limits = ImageLimits.from_settings(
        load_settings(max_scans=7, max_decode_bytes=123, max_icc_bytes=45, max_frames=3)
    )
    assert (limits.max_scans, limits.max_decode_bytes, limits.max_icc_bytes) == (7, 123, 45)
    assert limits.max_frames == 3
