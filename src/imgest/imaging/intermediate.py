"""The intermediate: one reduced, high-fidelity copy of each original that new pipelines start from.

A 12 MP original costs ~25 ms of entropy decoding whatever the output size; its intermediate
(long side `long_side`, JPEG q`quality` 4:4:4, upright, sRGB, no metadata) decodes in a few ms.
It is stored as a rendition row with the reserved pipeline name `intermediate`
(`renditions/intermediate@<version>/...`), so gc and fsck treat it like any rendition. A pipeline
renders from it when it holds at least the pixels the pipeline's resize needs
(`Intermediate.serves`), else from the original. Originals whose long side is not above
`long_side` get none: decoding them is as cheap as decoding an intermediate would be.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from imgest.imaging.decode import Decoded
from imgest.imaging.pipeline import Pipeline
from imgest.storage.paths import INTERMEDIATE, intermediate_path

Size = tuple[int, int]
RGB = tuple[int, int, int]
Source = Literal["original", "intermediate"]

NAME = INTERMEDIATE  # the reserved pipeline name of intermediate rendition rows
# Bump when the way an intermediate is made changes (resampling, colour): a new version.
REVISION = 1
SUBSAMPLING = "4:4:4"  # chroma at full resolution: pipelines may crop and tile it further
DEFAULT_LONG_SIDE = 768
DEFAULT_QUALITY = 90


@dataclass(frozen=True)
class Intermediate:
    """How intermediates are made: the long side in pixels and the JPEG quality."""

    long_side: int = DEFAULT_LONG_SIDE
    quality: int = DEFAULT_QUALITY
    background: RGB = (255, 255, 255)  # what transparent pixels were composited onto

    def __post_init__(self) -> None:
        if not 64 <= self.long_side <= 8192:
            raise ValueError("intermediate long side must be in 64..8192")
        if not 1 <= self.quality <= 100:
            raise ValueError("intermediate quality must be in 1..100")

    @property
    def spec(self) -> dict[str, Any]:
        """Everything that determines an intermediate's bytes, as plain JSON-able data."""
        return {
            "revision": REVISION,
            "long_side": self.long_side,
            "background": list(self.background),
            "resample": "bilinear",
            "output": {"format": "jpeg", "quality": self.quality, "subsampling": SUBSAMPLING},
        }

    @property
    def version(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical JSON spec."""
        canonical = json.dumps(self.spec, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def size_for(self, width: int, height: int) -> Size | None:
        """The intermediate's (w, h) for an upright `width` x `height` original; None when
        the original is not larger than the intermediate would be (none is stored)."""
        if max(width, height) <= self.long_side:
            return None
        scale = self.long_side / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def make(self, decoded: Decoded, size: Size) -> Image.Image:
        """The intermediate's pixels from a decode at least `size` (its picture region)."""
        image = decoded.image
        if image.size == size and decoded.content == (0, 0, *size):
            return image
        # Bilinear with Pillow's antialiasing support (the filter widens with the scale): an
        # area-weighted reduction, the same filter the built-in pipelines use.
        return image.resize(size, Image.Resampling.BILINEAR, box=decoded.content)

    def source_for(self, pipeline: Pipeline, original: Size, have: Size | None) -> Source:
        """Where `pipeline` renders an image from: its intermediate (of size `have`, None if
        it has none of this version) when that holds the pixels the pipeline's resize needs
        and transparency was composited onto the pipeline's background, else the original
        (`original`: its width and height as catalogued, before EXIF orientation)."""
        if have is None or pipeline.background != self.background:
            return "original"
        width, height = original
        if (have[0] >= have[1]) != (width >= height):  # EXIF turned it a quarter
            width, height = height, width
        need = pipeline.min_decode_size(width, height)
        return "intermediate" if serves(need, (width, height), have) else "original"

    def path(self, image_id: str) -> str:
        """Where the intermediate of image `image_id` made this way is stored."""
        return intermediate_path(self.version, image_id)

    def encode(self, image: Image.Image) -> bytes:
        """The intermediate as a baseline JPEG, 4:4:4, without metadata."""
        out = io.BytesIO()
        image.save(out, "JPEG", quality=self.quality, subsampling=SUBSAMPLING)
        return out.getvalue()


def serves(need: Size, original: Size, have: Size) -> bool:
    """Whether an intermediate of `have` (w, h) holds the `need` (w, h) pixels a pipeline's
    resize asks of the upright `original` (`Pipeline.min_decode_size`). A need capped at the
    original's full size is never served; a pixel short is (the intermediate's rounding)."""
    if need[0] >= original[0] and need[1] >= original[1]:
        return False
    return have[0] >= need[0] - 1 and have[1] >= need[1] - 1
