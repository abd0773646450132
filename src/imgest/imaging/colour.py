"""Colour management: pixels in any mode and embedded ICC profile to sRGB RGB, alpha flattened.

ICC -> sRGB transforms are cached by the profile's SHA-256 in an LRU bounded by profile bytes
(`TRANSFORMS`); a profile that does not match the pixels' colour space, or that lcms cannot
read, is ignored, as browsers do.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from functools import lru_cache

from PIL import Image, ImageCms

RGB = tuple[int, int, int]

_ICC_SPACES = {"RGB": "RGB ", "L": "GRAY", "CMYK": "CMYK"}


def to_srgb(im: Image.Image, icc: bytes | None, background: RGB) -> Image.Image:
    """Convert colours to sRGB and composite any alpha onto `background`."""
    alpha = None
    if im.mode in ("LA", "RGBA"):
        alpha = im.getchannel("A")
        im = im.convert(im.mode[:-1])
    transform = _transform(icc, im.mode) if icc or im.mode == "LAB" else None
    if transform is not None:
        rgb = transform.apply(im)
    else:
        rgb = im if im.mode == "RGB" else im.convert("RGB")
    if alpha is None:
        return rgb
    flat = Image.new("RGB", rgb.size, background)
    flat.paste(rgb, mask=alpha)
    return flat


@lru_cache(maxsize=1)
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


class TransformCache:
    """LRU of ICC -> sRGB transforms keyed by (profile SHA-256, mode), bounded by bytes.

    Keyed on a digest so the cache never holds the profiles themselves; each entry is charged
    its profile's size plus `ENTRY_BYTES` for lcms's tables, and least recently used entries
    go once the total passes `max_bytes`. Thread-safe: renders run in worker threads.
    """

    ENTRY_BYTES = 256 * 1024

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[
            tuple[bytes, str], tuple[ImageCms.ImageCmsTransform | None, int]
        ] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, icc: bytes | None, mode: str) -> ImageCms.ImageCmsTransform | None:
        """The transform for `icc` (or CIELAB when None) and `mode`, built on a miss."""
        key = (hashlib.sha256(icc or b"").digest(), mode)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit[0]
        transform = _build_transform(icc, mode)  # outside the lock: may take milliseconds
        cost = len(icc or b"") + self.ENTRY_BYTES
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (transform, cost)
                self.bytes += cost
            while self.bytes > self.max_bytes and len(self._entries) > 1:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
        return transform

    def clear(self) -> None:
        """Forget every transform."""
        with self._lock:
            self._entries.clear()
            self.bytes = 0


# 16 MiB: dozens of ordinary profiles (a few KB to ~1 MB each), four at the 4 MiB cap.
TRANSFORMS = TransformCache(16 * 1024 * 1024)


def _transform(icc: bytes | None, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A cached transform from the embedded profile (or CIELAB) to sRGB; None if unusable."""
    return TRANSFORMS.get(icc, mode)


def _build_transform(icc: bytes | None, mode: str) -> ImageCms.ImageCmsTransform | None:
    try:
        if mode == "LAB":
            source = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
        else:
            assert icc is not None
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            # A profile for another colour space than the pixels is ignored, as browsers do.
            if source.profile.xcolor_space != _ICC_SPACES.get(mode):
                return None
        return ImageCms.buildTransform(
            source,
            _srgb(),
            mode,
            "RGB",
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            # The 1-pixel cache makes a transform unsafe to share between threads.
            flags=ImageCms.Flags.NOCACHE,
        )
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None  # a broken profile is ignored rather than failing the upload
