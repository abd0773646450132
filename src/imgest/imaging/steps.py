"""Pipeline steps: pure functions on RGB Pillow images, registered by name in STEPS.

Each step takes the image plus keyword parameters and returns the image unchanged when it has
nothing to do. `resize` and `center_crop` change geometry; `resize_min_input` says how large
the input of `resize` must be, which is what lets the decoder shrink JPEGs in the DCT. `tile`
keeps the pixels whole: it tells the pipeline to cut the rendition into model inputs.

Pipelines find steps by name in the `imgest.steps` entry point group (see
imgest.imaging.registry); STEPS is what this package registers there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from PIL import Image, ImageFilter, ImageOps

Size = tuple[int, int]
RGB = tuple[int, int, int]
Box = tuple[float, float, float, float]
ResizeMode = Literal["crop", "stretch", "pad"]
Aggregate = Literal["mean", "max"]
Step = Callable[..., Image.Image]

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
RESIZE_MODES = ("crop", "stretch", "pad")
AGGREGATES = ("mean", "max")
# Keyword parameters a step gets from the renderer at run time, not from the pipeline spec.
RUNTIME_PARAMS = frozenset({"content"})


def resize(
    img: Image.Image,
    *,
    size: Size,
    mode: ResizeMode = "crop",
    crop: float = 0.875,
    filter: str = "bicubic",
    background: RGB = (255, 255, 255),
    content: Box | None = None,
) -> Image.Image:
    """Resize to exactly `size`: centre `crop` then scale, `stretch` to fit, or `pad` (letterbox).

    crop: the largest box of the output's aspect ratio, times `crop` (0.875 = 224/256 of the
    short side for a square output), centred, scaled to `size`. `filter` defaults to bicubic,
    the model's reference preprocessing (bilinear agreed with it less often: docs/model.md,
    "Fidelity"). `content` is the sub-pixel region of `img` that holds the picture (see
    decode.Decoded); default: all of it.
    """
    check_resize(size=size, mode=mode, crop=crop, filter=filter, background=background)
    resample = FILTERS[filter]
    out_w, out_h = size
    x0, y0, x1, y1 = content if content is not None else (0.0, 0.0, img.width, img.height)
    width, height = x1 - x0, y1 - y0
    exact = content is None or content == (0, 0, img.width, img.height)
    if exact and img.size == size and (mode != "crop" or crop == 1.0):
        return img
    if mode == "stretch":
        return img.resize(size, resample, box=(x0, y0, x1, y1))
    if mode == "crop":
        # As the reference recipe (resize the short side to 224/0.875 = 256, the long side
        # truncated to whole pixels, then crop whole pixels at the rounded centre), in one
        # resize with a fractional box: its sampling grid, no intermediate copy. Half a pixel
        # off that grid flips near-ties (docs/model.md, "Fidelity"). The box is placed on the
        # upright picture, so every EXIF orientation still gets the same one.
        box_w, _ = _crop_box(width, height, size, crop)
        scale = out_w / box_w
        whole_w, whole_h = math.floor(width * scale + 1e-6), math.floor(height * scale + 1e-6)
        scale_x, scale_y = whole_w / width, whole_h / height
        left = x0 + round((whole_w - out_w) / 2) / scale_x
        top = y0 + round((whole_h - out_h) / 2) / scale_y
        box = (left, top, left + out_w / scale_x, top + out_h / scale_y)
        return img.resize(size, resample, box=box)
    scale = min(out_w / width, out_h / height)
    inner = (max(1, round(width * scale)), max(1, round(height * scale)))
    if inner == size:
        return img.resize(size, resample, box=(x0, y0, x1, y1))
    canvas = Image.new("RGB", size, background)
    shrunk = img.resize(inner, resample, box=(x0, y0, x1, y1))
    canvas.paste(shrunk, ((out_w - inner[0]) // 2, (out_h - inner[1]) // 2))
    return canvas


def resize_min_input(
    width: int,
    height: int,
    *,
    size: Size,
    mode: ResizeMode = "crop",
    crop: float = 0.875,
) -> Size:
    """The smallest (w, h), same aspect as `width` x `height`, that `resize` needs as input
    to never upscale; capped at the original size."""
    out_w, out_h = size
    if mode == "stretch":
        scale = max(out_w / width, out_h / height)
    elif mode == "crop":
        box_w, _ = _crop_box(width, height, size, crop)
        scale = out_w / box_w
    else:
        scale = min(out_w / width, out_h / height)
    scale = min(scale, 1.0)
    # The epsilon keeps float noise (256.00000001) from asking for a pixel more.
    return (
        max(1, math.ceil(width * scale - 1e-6)),
        max(1, math.ceil(height * scale - 1e-6)),
    )


def _crop_box(width: float, height: float, size: Size, crop: float) -> tuple[float, float]:
    out_w, out_h = size
    if width * out_h > height * out_w:  # wider than the output: height bounds the box
        box_h = float(height)
        box_w = height * out_w / out_h
    else:
        box_w = float(width)
        box_h = width * out_h / out_w
    return box_w * crop, box_h * crop


def check_resize(*, size: Size, mode: str, crop: float, filter: str, background: RGB) -> None:
    """Raise ValueError for resize parameters that can never work."""
    check_size(size, "resize")
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"resize crop must be in (0, 1], got {crop!r}")
    if filter not in FILTERS:
        raise ValueError(f"resize filter must be one of {tuple(FILTERS)}, got {filter!r}")
    if len(background) != 3 or not all(0 <= v <= 255 for v in background):
        raise ValueError(f"resize background must be an RGB triple, got {background!r}")


def grayscale(img: Image.Image) -> Image.Image:
    """Grey values kept in three RGB channels (the model still wants 3 channels)."""
    return img.convert("L").convert("RGB")


def autocontrast(img: Image.Image, *, cutoff: float = 0.0) -> Image.Image:
    """Stretch each channel's histogram to the full range, ignoring `cutoff` % at each end."""
    return ImageOps.autocontrast(img, cutoff=cutoff)


def equalize(img: Image.Image) -> Image.Image:
    """Equalize each channel's histogram (flattens it: dark photos brighten)."""
    return ImageOps.equalize(img)


def blur(img: Image.Image, *, radius: float = 1.0) -> Image.Image:
    """Gaussian blur of `radius` pixels."""
    check_blur(radius=radius)
    return img if radius == 0 else img.filter(ImageFilter.GaussianBlur(radius))


def sharpen(
    img: Image.Image, *, radius: float = 2.0, percent: int = 150, threshold: int = 3
) -> Image.Image:
    """Unsharp mask: add `percent` % of (image - blurred) where they differ by > `threshold`."""
    check_sharpen(radius=radius, percent=percent, threshold=threshold)
    if radius == 0 or percent == 0:
        return img
    return img.filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=threshold))


def center_crop(img: Image.Image, *, size: Size) -> Image.Image:
    """The centred `size` (w, h) box; the image must be at least that large."""
    check_size(size, "center_crop")
    width, height = size
    if img.size == size:
        return img
    if width > img.width or height > img.height:
        raise ValueError(f"center_crop size {size} is larger than the image {img.size}")
    left, top = (img.width - width) // 2, (img.height - height) // 2
    return img.crop((left, top, left + width, top + height))


def tile(
    img: Image.Image, *, rows: int = 2, cols: int = 2, aggregate: Aggregate = "mean"
) -> Image.Image:
    """Marks the rendition as `rows` x `cols` model inputs whose predictions are aggregated
    (`mean` or `max` per class); the pixels stay whole (see `split`). It must be the last step.
    """
    check_tile(rows=rows, cols=cols, aggregate=aggregate)
    return img


def check_tile(*, rows: int, cols: int, aggregate: str) -> None:
    """Raise ValueError for tile parameters that can never work."""
    for name, value in (("rows", rows), ("cols", cols)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 16:
            raise ValueError(f"tile {name} must be an int in 1..16, got {value!r}")
    if aggregate not in AGGREGATES:
        raise ValueError(f"tile aggregate must be one of {AGGREGATES}, got {aggregate!r}")


def split(img: Image.Image, rows: int, cols: int) -> list[Image.Image]:
    """The image cut into `rows` x `cols` equal tiles, row by row (sizes must divide evenly)."""
    if img.width % cols or img.height % rows:
        raise ValueError(f"a {img.width}x{img.height} image does not split into {rows}x{cols}")
    if rows == cols == 1:
        return [img]
    w, h = img.width // cols, img.height // rows
    return [
        img.crop((c * w, r * h, (c + 1) * w, (r + 1) * h)) for r in range(rows) for c in range(cols)
    ]


def check_size(size: Size, step: str) -> None:
    """Raise ValueError unless `size` is two positive ints."""
    if len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size):
        raise ValueError(f"{step} size must be two positive ints, got {size!r}")


def check_blur(*, radius: float) -> None:
    """Raise ValueError for a negative blur radius."""
    if radius < 0:
        raise ValueError(f"blur radius must be >= 0, got {radius!r}")


def check_sharpen(*, radius: float, percent: int, threshold: int) -> None:
    """Raise ValueError for negative unsharp-mask parameters."""
    if radius < 0 or percent < 0 or threshold < 0:
        raise ValueError("sharpen radius, percent and threshold must be >= 0")


def check_center_crop(*, size: Size) -> None:
    """Raise ValueError unless `size` is two positive ints."""
    check_size(size, "center_crop")


def check_autocontrast(*, cutoff: float) -> None:
    """Raise ValueError unless 0 <= cutoff < 50."""
    if not 0 <= cutoff < 50:
        raise ValueError(f"autocontrast cutoff must be in [0, 50), got {cutoff!r}")


# Parameter checks run when a pipeline is built, so a bad spec fails at start-up, not per image.
CHECKS: dict[str, Callable[..., None]] = {
    "resize": check_resize,
    "center_crop": check_center_crop,
    "autocontrast": check_autocontrast,
    "blur": check_blur,
    "sharpen": check_sharpen,
    "tile": check_tile,
}

STEPS: dict[str, Step] = {
    "resize": resize,
    "center_crop": center_crop,
    "grayscale": grayscale,
    "autocontrast": autocontrast,
    "equalize": equalize,
    "blur": blur,
    "sharpen": sharpen,
    "tile": tile,
}
