"""Security limits on image dimensions and frames, checked from the header before any decode."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from imgest.errors import ImageCorrupt, ImageTooManyFrames, ImageTooManyPixels
from imgest.imaging.sniff import ImageInfo


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

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_frames", "max_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"ImageLimits.{name} must be at least 1")
        pillow_max = Image.MAX_IMAGE_PIXELS
        if pillow_max is not None and self.max_pixels > pillow_max:
            raise ValueError(
                f"ImageLimits.max_pixels ({self.max_pixels}) exceeds PIL.Image.MAX_IMAGE_PIXELS "
                f"({pillow_max}); raise that first"
            )


def check(info: ImageInfo, limits: ImageLimits) -> None:
    """Raise if the image described by `info` is outside `limits`."""
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
