"""Decoding uploaded bytes to an sRGB RGB Pillow image: orientation, colour management, alpha.

JPEGs are decoded at a reduced DCT scale (simplejpeg, or Pillow's draft for CMYK/YCCK) so a
12 MP photo never exists at full size when a 224 px rendition is all that is wanted; other
formats are decoded whole and box-reduced by an integer factor right away, to no less than
twice the size wanted (the antialiased resize does the rest, closer to the reference recipe).
HEIF (HEVC, through pi-heif's libheif and libde265) and AVIF (AV1, Pillow's own plugin) have no
reduced decode either.
High-bit-depth and float grey is brought to 8 bits a band of rows at a time, so the conversion
adds one byte per pixel, not several full-size copies. Colours go to sRGB through
`imaging.colour` (cached ICC transforms); a profile over `max_icc_bytes` is ignored.

Why one long module: each format's decode and the box reduction after it share one piece of
bookkeeping (which stored edge becomes which upright edge, and where a reduction's partial
blocks go, so every EXIF orientation of a lossless image gives one model input); split apart,
the same orientation tables would travel between modules.
"""

from __future__ import annotations

import io
import logging
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pi_heif
import simplejpeg
from PIL import AvifImagePlugin, Image, UnidentifiedImageError

from imgest.errors import (
    ImageCorrupt,
    ImageTooManyPixels,
    ImageTruncated,
    ImgestError,
    UnsupportedPixelFormat,
)
from imgest.imaging.colour import RGB, to_srgb
from imgest.imaging.header import SWAPS_AXES
from imgest.imaging.sniff import ImageInfo, jpeg_segments, jpeg_without_header_junk

log = logging.getLogger(__name__)

Size = tuple[int, int]
DEFAULT_MAX_ICC_BYTES = 4 * 1024 * 1024  # ImageLimits.max_icc_bytes
Box = tuple[float, float, float, float]

_PILLOW_FORMATS = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "tiff": "TIFF",
    "bmp": "BMP",
    "heif": "HEIF",  # pi-heif's plugin, registered below for HEIF only
    "avif": "AVIF",  # Pillow's own plugin (libavif)
}
# libheif applies `clap`, `irot` and `imir` while decoding, so it delivers the upright picture;
# Pillow's AVIF plugin leaves the transforms to us, like EXIF orientation. Recent Pillows turn
# TIFFs upright themselves (TiffImagePlugin runs exif_transpose on load): see _decoder_orients.
_DECODER_ORIENTS = frozenset({"heif"})


@lru_cache(maxsize=1)
def _pillow_orients_tiff() -> bool:
    """Whether this Pillow turns a TIFF upright on load (it then reports the upright size)."""
    out = io.BytesIO()
    Image.new("L", (2, 1)).save(out, "TIFF", tiffinfo={274: 6})
    with Image.open(out) as im:
        return bool(im.size == (1, 2))


def _decoder_orients(fmt: str) -> bool:
    return fmt in _DECODER_ORIENTS or (fmt == "tiff" and _pillow_orients_tiff())


# pi-heif (pillow-heif's decode-only build: no x265, which is GPL) decodes HEVC only (its
# libheif has no AV1 decoder), so registering it cannot take AVIF away from Pillow's plugin;
# each format is opened by name anyway. Embedded thumbnails, depth maps and auxiliary images
# are never used, so they are not even read.
# One decoder thread, as for every other format: renders already run one per core.
pi_heif.register_heif_opener(
    thumbnails=False, depth_images=False, aux_images=False, decode_threads=1
)
AvifImagePlugin.DEFAULT_MAX_THREADS = 1

# What each EXIF orientation needs to be shown upright (as in PIL.ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Pillow's exceptions for bad input; anything here becomes ImageCorrupt or ImageTruncated.
_DECODER_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    struct.error,
    EOFError,
    ZeroDivisionError,
    IndexError,
    KeyError,
    TypeError,
    RuntimeError,  # how pi-heif and Pillow's AVIF plugin report most decoder failures
)
# How the decoders word running out of data (libjpeg/Pillow; libheif).
_TRUNCATED = ("truncated", "end of file")
# Where a point (x, y) of a w x h image lands after each transpose.
_POINT_AFTER: dict[Image.Transpose, Callable[[float, float, int, int], tuple[float, float]]] = {
    Image.Transpose.FLIP_LEFT_RIGHT: lambda x, y, w, h: (w - x, y),
    Image.Transpose.FLIP_TOP_BOTTOM: lambda x, y, w, h: (x, h - y),
    Image.Transpose.ROTATE_180: lambda x, y, w, h: (w - x, h - y),
    Image.Transpose.TRANSPOSE: lambda x, y, w, h: (y, x),
    Image.Transpose.ROTATE_90: lambda x, y, w, h: (y, w - x),
    Image.Transpose.ROTATE_270: lambda x, y, w, h: (h - y, x),
    Image.Transpose.TRANSVERSE: lambda x, y, w, h: (h - y, w - x),
}


@dataclass(frozen=True)
class Decoded:
    """A decoded image and the exact region of it that holds the whole picture.

    Scaling by a factor that does not divide the size (a 451 px JPEG at 1/2 is 225.5 px)
    leaves a partly filled edge pixel; after EXIF orientation it may be on any side. Steps
    that place crops use `content` so every orientation yields the same rendition.
    """

    image: Image.Image
    content: Box


def decode_exact(
    data: bytes,
    info: ImageInfo,
    *,
    min_size: Size | None,
    background: RGB = (255, 255, 255),
    max_icc_bytes: int = DEFAULT_MAX_ICC_BYTES,
) -> Decoded:
    """Decode to an upright sRGB "RGB" image at least `min_size` (w, h) when the original is,
    saying which sub-pixel region of it is the picture.

    `info` must come from `probe(data)` and have passed `limits.check`.
    """
    if _decoder_orients(info.format) and info.orientation != 1:
        width, height = info.oriented_size
        info = replace(info, width=width, height=height, orientation=1)
    pillow_max = Image.MAX_IMAGE_PIXELS
    if pillow_max is not None and info.pixels > pillow_max:
        raise ImageTooManyPixels(
            f"The image has {info.pixels} pixels; this server decodes at most {pillow_max}."
        )
    target = None
    if min_size is not None:
        target = (min_size[1], min_size[0]) if info.orientation in SWAPS_AXES else min_size
        target = (max(1, target[0]), max(1, target[1]))
    try:
        if info.format == "jpeg":
            img, icc = _load_jpeg(data, info, target)
        else:
            img, icc = _load_pillow(data, info)
        scale = _dct_scale(info, img.size)
        img = _normalise_mode(img)
        # A partial block of the reduction goes where the upright picture's right and bottom
        # edges will be, as it does for orientation 1 (libjpeg's DCT scaling cannot choose).
        first = _partial_first(info.orientation) if scale == 1 else (False, False)
        img, factor = shrink(img, target, first)
        scale /= factor
        # Where the picture starts: inside the first pixel when that is a partial block.
        rx, ry = (info.width % factor) * first[0], (info.height % factor) * first[1]
        x0, y0 = (1 - rx / factor if rx else 0.0), (1 - ry / factor if ry else 0.0)
        content: Box = (x0, y0, x0 + info.width * scale, y0 + info.height * scale)
        if icc is not None and len(icc) > max_icc_bytes:
            log.warning(
                "ignoring an embedded ICC profile of %d bytes (max_icc_bytes %d): "
                "the pixels are taken as sRGB",
                len(icc),
                max_icc_bytes,
            )
            icc = None
        img = to_srgb(img, icc, background)
        transpose = _UPRIGHT.get(info.orientation)
        if transpose is None:
            return Decoded(img, content)
        moved = [_POINT_AFTER[transpose](x, y, *img.size) for x, y in _corners(content)]
        xs, ys = [p[0] for p in moved], [p[1] for p in moved]
        return Decoded(img.transpose(transpose), (min(xs), min(ys), max(xs), max(ys)))
    except ImgestError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooManyPixels() from exc
    except UnidentifiedImageError as exc:
        if info.format != "tiff":
            raise ImageCorrupt() from exc
        # The header parsed (sniff), but Pillow's TIFF reader has no mode for its samples.
        raise UnsupportedPixelFormat(
            "The TIFF's sample layout (bits, sample format, photometric interpretation and "
            "channel count together) is not one this server can decode."
        ) from exc
    except MemoryError as exc:
        raise ImageTooManyPixels(
            "The image needs more memory to decode than is available."
        ) from exc
    except _DECODER_ERRORS as exc:
        message = str(exc).lower()
        if "security limit" in message:  # libheif's own ceilings on size and memory
            raise ImageTooManyPixels() from exc
        if any(cut in message for cut in _TRUNCATED) or isinstance(exc, EOFError):
            raise ImageTruncated() from exc
        raise ImageCorrupt() from exc


# --- loading -------------------------------------------------------------------------------


def _open(data: bytes, info: ImageInfo) -> Image.Image:
    im = Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[info.format]])
    # Our header reader and Pillow must agree, or the limits checked the wrong size. A TIFF
    # turned by Pillow on load may not be turned yet (XMP orientation): _load_pillow checks
    # the size again after loading.
    sizes = {(info.width, info.height)}
    if info.format == "tiff" and _pillow_orients_tiff():
        sizes.add((info.height, info.width))
    if im.size not in sizes:
        raise ImageCorrupt(
            f"The image header is ambiguous ({info.width}x{info.height} or "
            f"{im.size[0]}x{im.size[1]})."
        )
    return im


def _load_pillow(data: bytes, info: ImageInfo) -> tuple[Image.Image, bytes | None]:
    im = _open(data, info)
    im.load()  # frame 0 of animations
    if im.size != (info.width, info.height):  # libheif may only find out while decoding
        raise ImageCorrupt("The decoded image does not have the size its header says.")
    icc = im.info.get("icc_profile")
    return im, icc if isinstance(icc, bytes) and icc else None


def _load_jpeg(
    data: bytes, info: ImageInfo, target: Size | None
) -> tuple[Image.Image, bytes | None]:
    try:
        segments, scan_start = jpeg_segments(data)
    except (struct.error, IndexError) as exc:
        raise ImageTruncated() from exc
    # libjpeg only warns on a cut-off scan and fills the rest with grey; an EOI marker can
    # only appear after the scan data if the file is whole (0xFF is byte-stuffed in scans).
    if data.rfind(b"\xff\xd9", scan_start) < 0:  # rfind: EOI is normally at the end
        raise ImageTruncated("The JPEG data ends before the image is complete.")
    components = 0
    icc_parts: dict[int, bytes] = {}
    for marker, start, end in segments:
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and not components:
            components = data[start + 5]
        elif marker == 0xE2 and data[start : start + 12] == b"ICC_PROFILE\x00":
            icc_parts.setdefault(data[start + 12], data[start + 14 : end])
    icc = b"".join(icc_parts[k] for k in sorted(icc_parts)) or None
    data = jpeg_without_header_junk(data, segments, scan_start)  # offsets above are stale now

    if components in (1, 3):
        min_w, min_h = 0, 0  # full size
        if target is not None and dct_eighths(info.width, info.height, target) < 8:
            min_w, min_h = target  # simplejpeg picks the M/8 dct_eighths says
        colorspace = "GRAY" if components == 1 else "RGB"
        # strict=False: the benign warnings real cameras trigger ("extraneous bytes before
        # marker") must not fail an upload; truncation was ruled out above.
        arr = simplejpeg.decode_jpeg(
            data, colorspace=colorspace, min_width=min_w, min_height=min_h, strict=False
        )
        if components == 1:
            arr = arr[:, :, 0]
        return Image.fromarray(np.ascontiguousarray(arr)), icc

    # CMYK / YCCK (Adobe): simplejpeg can't output them converted; Pillow draft scales too.
    im = _open(data, info)
    if target is not None:
        im.draft(im.mode, target)
    im.load()
    return im, icc


# --- pixels --------------------------------------------------------------------------------


def _corners(box: Box) -> tuple[tuple[float, float], tuple[float, float]]:
    return (box[0], box[1]), (box[2], box[3])


def dct_eighths(width: int, height: int, target: Size | None) -> int:
    """The M/8 scale (M in 1..8) a `width` x `height` JPEG of 1 or 3 components is decoded at
    for at least `target` (w, h): the smallest that covers it, and 8/8 unless the JPEG is at
    least twice the target both ways. (Scale in the DCT only by 1/2 or more: a 7/8 or 3/4
    decode saves little time, and its resampling phase depends on where the 8 px block grid
    falls, which EXIF-rotated copies of one photo do not share, so their renditions would
    differ more.) The intermediate's renders replay this rule (imaging.intermediate)."""
    if target is None or width < 2 * target[0] or height < 2 * target[1]:
        return 8
    return next(
        m
        for m in range(1, 9)
        if math.ceil(width * m / 8) >= target[0] and math.ceil(height * m / 8) >= target[1]
    )


def _dct_scale(info: ImageInfo, size: Size) -> float:
    """The M/8 factor libjpeg decoded at, found from the sizes it rounded up to."""
    width, height = size
    for eighths in range(8, 0, -1):
        if (
            math.ceil(info.width * eighths / 8) == width
            and math.ceil(info.height * eighths / 8) == height
        ):
            return eighths / 8
    return width / info.width


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Bring any Pillow mode to one of L, LA, RGB, RGBA, CMYK or LAB."""
    mode = im.mode
    has_trns = "transparency" in im.info
    if mode in ("P", "PA"):
        return im.convert("RGBA" if has_trns or mode == "PA" else "RGB")
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_l(im)
    if mode in ("La", "RGBa"):
        return im.convert(mode[:-1] + "A")
    if mode in ("RGBX", "YCbCr", "HSV"):
        return im.convert("RGB")
    if mode in ("L", "RGB") and has_trns:  # PNG tRNS colour key
        return im.convert(mode + "A" if mode == "L" else "RGBA")
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK", "LAB"):
        return im
    return im.convert("RGB")


_BAND_PIXELS = 1 << 20  # pixels converted at a time: a few MB of temporaries


def _bands(im: Image.Image) -> Iterator[tuple[int, npt.NDArray[Any]]]:
    """(first row, array) of successive bands of rows, each copied out on its own."""
    rows = max(1, _BAND_PIXELS // max(1, im.width))
    for top in range(0, im.height, rows):
        bottom = min(im.height, top + rows)
        yield top, np.asarray(im.crop((0, top, im.width, bottom)))


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float grey to 8-bit, by the range the mode implies.

    A band of rows at a time: whole-image numpy temporaries cost 12-16 bytes a pixel (a 7000 x
    7000 float TIFF took 796 MiB), the bands a few MB.
    """
    out = np.empty((im.height, im.width), np.uint8)
    if im.mode.startswith("I;16"):
        for top, arr in _bands(im):
            out[top : top + len(arr)] = arr >> 8
    elif im.mode == "F":
        # fmax skips NaN; an all-NaN image keeps a NaN peak and scale 1, as before banding.
        peak = np.float32(np.nan)
        for _, arr in _bands(im):
            peak = np.fmax(peak, np.fmax.reduce(arr, axis=None, initial=np.nan))
        scale = np.float32(255.0 if peak <= 1.0 else 1.0)
        for top, arr in _bands(im):
            out[top : top + len(arr)] = np.clip(np.nan_to_num(arr) * scale, 0, 255)
    else:  # "I": 32-bit signed; PNG and TIFF put 16-bit data here
        peak_i = max((int(a.max()) for _, a in _bands(im) if a.size), default=0)
        shift = 8 if peak_i > 255 else 0
        for top, arr in _bands(im):
            out[top : top + len(arr)] = np.clip(arr, 0, 65535) >> shift
    return Image.fromarray(out)


def _partial_first(orientation: int) -> tuple[bool, bool]:
    """Whether the stored right (x) and bottom (y) edges end up at the upright picture's left
    or top: then a reduction's partial blocks belong at the stored start of that axis."""
    transpose = _UPRIGHT.get(orientation)
    if transpose is None:
        return False, False
    move = _POINT_AFTER[transpose]
    right, bottom = move(10, 10, 10, 20), move(5, 20, 10, 20)  # edge midpoints of a 10 x 20
    return 0 in right, 0 in bottom


def shrink(
    im: Image.Image, target: Size | None, first: tuple[bool, bool] = (False, False)
) -> tuple[Image.Image, int]:
    """Integer box reduction (sizes rounded up) while the result stays at least twice
    `target`; `first` puts the partial block of each axis at its start instead of its end.

    Twice: the pipeline's antialiased resize then does the last 2x or more itself, as the
    reference recipe's resize from full size does (a box reduction all the way down agreed
    with it less often: docs/model.md, "Fidelity")."""
    if target is None:
        return im, 1
    factor = min(im.width // (2 * target[0]), im.height // (2 * target[1]))
    if factor < 2:
        return im, 1
    rx = im.width % factor if first[0] else 0
    ry = im.height % factor if first[1] else 0
    if not rx and not ry:
        return im.reduce(factor), factor
    # Pillow premultiplies alpha for each reduce(): once here, for the four boxes.
    alpha = im.mode in ("LA", "RGBA")
    src = im.convert(im.mode[:-1] + "a") if alpha else im
    out = Image.new(src.mode, (-(-im.width // factor), -(-im.height // factor)))
    xs = [(0, rx, 0), (rx, im.width, 1)] if rx else [(0, im.width, 0)]
    ys = [(0, ry, 0), (ry, im.height, 1)] if ry else [(0, im.height, 0)]
    for left, right, at_x in xs:
        for top, bottom, at_y in ys:
            out.paste(src.reduce(factor, box=(left, top, right, bottom)), (at_x, at_y))
    return (out.convert(im.mode) if alpha else out), factor
