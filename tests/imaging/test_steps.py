"""Tests for imgest.imaging.steps: resize modes, geometry, early returns, the registry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgest.imaging.steps import FILTERS, STEPS, autocontrast, grayscale, resize, resize_min_input

GREEN = (0, 200, 0)
RED = (220, 0, 0)


def target(width: int, height: int, inner: tuple[int, int]) -> Image.Image:
    """Red image with a green centred box of size `inner`."""
    img = Image.new("RGB", (width, height), RED)
    left, top = (width - inner[0]) // 2, (height - inner[1]) // 2
    img.paste(GREEN, (left, top, left + inner[0], top + inner[1]))
    return img


def test_crop_takes_the_centre_fraction_of_the_short_side() -> None:
    # 400x200: the crop box is 0.875 * 200 = 175 px square, centred; it is all green.
    out = resize(target(400, 200, (175, 175)), size=(224, 224), mode="crop", crop=0.875)
    arr = np.asarray(out).astype(int)
    assert out.size == (224, 224)
    assert np.abs(arr[2:-2, 2:-2] - GREEN).max() <= 2
    # With crop=1.0 the box is 200 px and the red margin shows at the edges.
    wider = np.asarray(resize(target(400, 200, (175, 175)), size=(224, 224), crop=1.0))
    assert wider[112, 0, 0] > 150 and wider[112, 112, 1] > 150


def test_crop_to_a_non_square_output_keeps_its_aspect() -> None:
    out = resize(target(300, 300, (300, 150)), size=(200, 100), mode="crop", crop=1.0)
    assert out.size == (200, 100)
    assert np.abs(np.asarray(out).astype(int)[2:-2, 2:-2] - GREEN).max() <= 2


def test_stretch_ignores_aspect() -> None:
    out = resize(target(400, 100, (200, 100)), size=(224, 224), mode="stretch")
    arr = np.asarray(out)
    assert out.size == (224, 224)
    assert tuple(arr[112, 112]) == GREEN and tuple(arr[112, 5]) == RED
    assert tuple(arr[2, 112]) == GREEN  # full height is the green box: stretched, not cropped


@pytest.mark.parametrize("background", [(255, 255, 255), (1, 2, 3)])
def test_pad_letterboxes_on_the_background(background: tuple[int, int, int]) -> None:
    out = resize(
        Image.new("RGB", (400, 200), GREEN), size=(224, 224), mode="pad", background=background
    )
    arr = np.asarray(out)
    assert out.size == (224, 224)
    assert tuple(arr[0, 112]) == background and tuple(arr[223, 112]) == background
    assert tuple(arr[112, 0]) == GREEN and tuple(arr[112, 223]) == GREEN
    rows = np.where((arr == GREEN).all(axis=2).any(axis=1))[0]
    assert len(rows) == 112  # 400x200 -> 224x112, centred


@pytest.mark.parametrize("mode", ["crop", "stretch", "pad"])
@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1), (1, 1), (3, 2000), (224, 224)])
def test_extreme_aspect_ratios_give_exactly_the_size(mode: Any, shape: tuple[int, int]) -> None:
    img = Image.new("RGB", shape, GREEN)
    out = resize(img, size=(224, 224), mode=mode)
    assert out.size == (224, 224) and out.mode == "RGB"


@pytest.mark.parametrize("mode", ["stretch", "pad"])
def test_nothing_to_do_returns_the_same_image(mode: Any) -> None:
    img = Image.new("RGB", (224, 224), GREEN)
    assert resize(img, size=(224, 224), mode=mode) is img
    assert resize(img, size=(224, 224), mode="crop", crop=1.0) is img
    assert resize(img, size=(224, 224), mode="crop", crop=0.875) is not img


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_filter(name: str) -> None:
    out = resize(target(300, 200, (100, 100)), size=(50, 50), filter=name)
    assert out.size == (50, 50)


@pytest.mark.parametrize(
    ("size", "mode", "crop", "expected"),
    [
        ((4000, 3000), "crop", 0.875, (342, 256)),  # short side 256 = 224 / 0.875
        ((3000, 4000), "crop", 0.875, (256, 342)),
        ((4000, 3000), "crop", 1.0, (299, 224)),
        ((4000, 3000), "stretch", 0.875, (299, 224)),
        ((4000, 3000), "pad", 0.875, (224, 168)),
        ((200, 100), "crop", 0.875, (200, 100)),  # never more than the original
        ((1, 5000), "crop", 0.875, (1, 5000)),
        ((1, 5000), "pad", 0.875, (1, 224)),
    ],
)
def test_resize_min_input(
    size: tuple[int, int], mode: Any, crop: float, expected: tuple[int, int]
) -> None:
    assert resize_min_input(*size, size=(224, 224), mode=mode, crop=crop) == expected


@pytest.mark.parametrize("shape", [(4000, 3000), (1000, 3000), (640, 427), (5000, 300)])
@pytest.mark.parametrize("mode", ["crop", "stretch", "pad"])
def test_min_input_never_needs_upscaling(shape: tuple[int, int], mode: Any) -> None:
    w, h = resize_min_input(*shape, size=(224, 224), mode=mode, crop=0.875)
    scale = w / shape[0]
    if mode == "crop":
        assert 0.875 * min(w, h) >= 224 - 1e-6
    elif mode == "stretch":
        assert w >= 224 and h >= 224
    else:
        assert max(w, h) >= 224
    assert abs(h / shape[1] - scale) < 2 / min(w, h) + 1e-3  # same aspect ratio


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": (0, 224)},
        {"size": (224,)},
        {"mode": "fill"},
        {"crop": 0.0},
        {"crop": 1.5},
        {"filter": "sinc"},
        {"background": (0, 0, 300)},
    ],
)
def test_bad_resize_parameters(kwargs: dict[str, Any]) -> None:
    params: dict[str, Any] = {"size": (224, 224), **kwargs}
    with pytest.raises(ValueError):
        resize(Image.new("RGB", (10, 10)), **params)


def test_grayscale_keeps_three_channels() -> None:
    out = grayscale(Image.new("RGB", (4, 4), (200, 10, 10)))
    r, g, b = out.getpixel((0, 0))  # type: ignore[misc]
    assert out.mode == "RGB" and r == g == b


def test_autocontrast_stretches() -> None:
    ramp = np.repeat(np.arange(100, 164, dtype=np.uint8)[None, :, None], 3, axis=2)
    out = np.asarray(autocontrast(Image.fromarray(ramp)))
    assert int(out.min()) == 0 and int(out.max()) >= 250  # Pillow maps 163 to 254


def test_registry() -> None:
    assert STEPS["resize"] is resize
    assert {"resize", "grayscale", "autocontrast"} <= set(STEPS)
