"""Security limits on what one image may cost to decode, checked from the header before decode.

Pixels, frames, JPEG scans and the memory the decode path needs (pixels x bytes per pixel of
the decoder's modes, after JPEG's reduced-size decode) are all known from the header (`sniff`),
so an image over any limit is refused before a decoder allocates or loops over anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from imgest import config
from imgest.errors import (
    ImageCorrupt,
    ImageTooComplex,
    ImageTooManyFrames,
    ImageTooManyPixels,
    ImageTooMuchMemory,
)
from imgest.imaging.header import SWAPS_AXES
from imgest.imaging.sniff import MAX_SCANS_COUNTED, ImageInfo

if TYPE_CHECKING:
    from imgest.config import Settings

MiB = 1024 * 1024
Size = tuple[int, int]


@dataclass(frozen=True)
class ImageLimits:
    """The largest image the server agrees to decode.

    `max_pixels` may not exceed Pillow's process-wide `Image.MAX_IMAGE_PIXELS`: above it Pillow
    warns or refuses on its own, and a per-call override does not exist. Raise that global at
    start-up first if you really need bigger images.
    """

    max_pixels: int = 50_000_000
    max_frames: int = 1000
    # libjpeg's own ceiling (JPEG_MAX_DIMENSION); no camera comes near it, and it keeps
    # degenerate strips such as 1 x 100000 out of the resize arithmetic.
    max_side: int = 65_500
    max_scans: int = 100
    max_decode_bytes: int = 512 * MiB
    max_icc_bytes: int = 4 * MiB

    def __post_init__(self) -> None:
        for name in (
            "max_pixels",
            "max_frames",
            "max_side",
            "max_scans",
            "max_decode_bytes",
            "max_icc_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ImageLimits.{name} must be at least 1")
        if self.max_scans >= MAX_SCANS_COUNTED:
            raise ValueError(f"ImageLimits.max_scans must be below {MAX_SCANS_COUNTED}")
        pillow_max = Image.MAX_IMAGE_PIXELS
        if pillow_max is not None and self.max_pixels > pillow_max:
            raise ValueError(
                f"ImageLimits.max_pixels ({self.max_pixels}) exceeds PIL.Image.MAX_IMAGE_PIXELS "
                f"({pillow_max}); raise that first"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        """The limits of `settings` (same names); max_side, libjpeg's, is not configurable."""
        return config.from_settings(cls, settings, fixed=("max_side",))


def decode_bytes(info: ImageInfo, min_size: Size | None = None) -> int:
    """Peak bytes the decode path holds for `info`, decoding for an upright `min_size`."""
    pixels = info.pixels
    if info.scalable and min_size is not None:
        target = (min_size[1], min_size[0]) if info.orientation in SWAPS_AXES else min_size
        scale = _dct_reduction(info.width, info.height, target)
        pixels = math.ceil(info.width / scale) * math.ceil(info.height / scale)
    return pixels * info.bytes_per_pixel


def _dct_reduction(width: int, height: int, target: Size) -> int:
    """The largest of 1, 2, 4, 8 that keeps a JPEG at least `target` whole times over: decode
    reduces at least that much (simplejpeg also has the M/8 steps between them)."""
    tw, th = max(1, target[0]), max(1, target[1])
    for reduction in (8, 4, 2):
        if width >= reduction * tw and height >= reduction * th:
            return reduction
    return 1


def check(info: ImageInfo, limits: ImageLimits, *, min_size: Size | None = None) -> None:
    """Raise if the image described by `info` is outside `limits`; `min_size` is what the
    pipeline needs decoded (upright), which lets a JPEG be counted at its reduced size."""
    if info.width < 1 or info.height < 1:
        raise ImageCorrupt(f"The image header says {info.width}x{info.height} pixels.")
    if info.width > limits.max_side or info.height > limits.max_side:
        raise ImageTooManyPixels(
            f"The image is {info.width}x{info.height}; neither side may exceed "
            f"{limits.max_side} pixels."
        )
    if info.pixels > limits.max_pixels:
        # A HEIF crop (`clap`) is applied after decoding the whole canvas: that is what counts.
        cropped = " once cropped" if info.canvas_pixels else ""
        raise ImageTooManyPixels(
            f"The image is {info.width}x{info.height}{cropped} ({info.pixels} pixels to "
            f"decode); the limit is {limits.max_pixels} pixels."
        )
    if info.frames > limits.max_frames:
        raise ImageTooManyFrames(
            f"The image has {info.frames} frames; the limit is {limits.max_frames}."
        )
    if info.scans > limits.max_scans:
        more = " or more" if info.scans >= MAX_SCANS_COUNTED else ""
        raise ImageTooComplex(
            f"The JPEG has {info.scans}{more} scans; the limit is {limits.max_scans} "
            "(encoders write about 10)."
        )
    needed = decode_bytes(info, min_size)
    if needed > limits.max_decode_bytes:
        raise ImageTooMuchMemory(
            f"Decoding this {info.width}x{info.height} {info.format.upper()} takes about "
            f"{needed // MiB} MiB ({info.bytes_per_pixel} bytes per pixel); the limit is "
            f"{limits.max_decode_bytes // MiB} MiB."
        )
