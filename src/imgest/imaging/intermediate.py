"""The intermediate: one reduced, high-fidelity copy of each original that new pipelines start from.

A 12 MP original costs ~25 ms of entropy decoding whatever the output size; its intermediate
decodes in a few ms. The intermediate is the original's own DCT-scaled decode at 1/k (k = 8,
4 or 2: the largest that leaves a long side of at least `long_side`), not resampled, stored as
JPEG q`quality` `subsampling` (q90 4:4:4, optimised Huffman tables), upright, sRGB, without
metadata: for a 4032 x 3024 photo and `long_side` 720 that is its 1/4 decode, 1008 x 756.

Rendering from it replays what the original's decode would have done (`decode`): a pipeline
whose decode of the original is at M/8 (`decode.dct_eighths`) decodes the intermediate at
M*k/8 (its own DCT scaling), then box-shrinks by the same rule, and places the picture on the
original's grid (`Decoded.content` in original pixels times M/8). The same geometry and the
same reduction ladder as from the original: what differs is the intermediate's codec loss
(docs/intermediate.md measures it). A pipeline is served when that scale is at most 1
(`Intermediate.source_for`), else it renders from the original.

It is stored as a rendition row with the reserved pipeline name `intermediate`
(`renditions/intermediate@<version>/...`), so gc and fsck treat it like any rendition.
JPEG originals only (whose decode is the DCT-scaled one replayed), with sides multiples of 8
(as cameras write them: see `size_for`) and at least twice `long_side` (smaller ones cost
little more to decode); others get none and render from the original.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import simplejpeg
from PIL import Image

from imgest.imaging.decode import Decoded, dct_eighths, shrink
from imgest.imaging.pipeline import Pipeline
from imgest.imaging.sniff import ImageInfo
from imgest.storage.paths import INTERMEDIATE, intermediate_path

Size = tuple[int, int]
RGB = tuple[int, int, int]
Source = Literal["original", "intermediate"]
Subsampling = Literal["4:4:4", "4:2:0"]

NAME = INTERMEDIATE  # the reserved pipeline name of intermediate rendition rows
# Bump when the way an intermediate is made changes (resampling, colour): a new version.
# 2: the original's DCT-scaled JPEG decode at 1/k, not resampled (1: bilinear to `long_side`).
REVISION = 2
FACTORS = (8, 4, 2)  # the reductions an intermediate may be (DCT scales 1/8, 1/4, 1/2)
DEFAULT_LONG_SIDE = 720
# q90 4:4:4 with optimised Huffman tables: 10.1% of the original's bytes (issue 18 wants
# <= 10%), the 224 rendition from it 49.3 dB (worst 43.1) from the original's, and top-1
# agreement as at q95 (98.0%; q95 took 15.5%). q88 (9.4%) met the storage bound but doubled
# the disagreements (95.0%; confident images flipped): fidelity is what an intermediate is
# for. 4:2:0 is no cheaper per dB: the original's 1/k decode rebuilds its chroma at the
# intermediate's full resolution (its chroma plane, half the original's size, is larger than
# the intermediate), so 4:2:0 halves real detail (q93 4:2:0: 10.0% at 47.1 dB, worst 38.0).
# Measured by bench/intermediate.py; the table is in docs/intermediate.md.
DEFAULT_QUALITY = 90
DEFAULT_SUBSAMPLING: Subsampling = "4:4:4"
DEFAULT_OPTIMIZE = True  # 0.3 points of storage for ~3 ms more encode per image


@dataclass(frozen=True)
class Intermediate:
    """How intermediates are made: the long side in pixels, the JPEG quality and chroma
    subsampling, and whether its Huffman tables are optimised (smaller, slower to encode)."""

    long_side: int = DEFAULT_LONG_SIDE
    quality: int = DEFAULT_QUALITY
    background: RGB = (255, 255, 255)  # what transparent pixels were composited onto
    subsampling: Subsampling = DEFAULT_SUBSAMPLING
    optimize: bool = DEFAULT_OPTIMIZE

    def __post_init__(self) -> None:
        if not 64 <= self.long_side <= 8192:
            raise ValueError("intermediate long side must be in 64..8192")
        if not 1 <= self.quality <= 100:
            raise ValueError("intermediate quality must be in 1..100")
        if self.subsampling not in ("4:4:4", "4:2:0"):
            raise ValueError("intermediate subsampling must be 4:4:4 or 4:2:0")

    @property
    def spec(self) -> dict[str, Any]:
        """Everything that determines an intermediate's bytes, as plain JSON-able data
        (`optimize` only when on: the spec, and so the version, of the recipe without it are
        those it had before the knob existed)."""
        output: dict[str, Any] = {
            "format": "jpeg",
            "quality": self.quality,
            "subsampling": self.subsampling,
        }
        if self.optimize:
            output["optimize"] = True
        return {
            "revision": REVISION,
            "long_side": self.long_side,
            "background": list(self.background),
            "reduction": {"factors": list(FACTORS), "of": "jpeg-dct", "sides": "multiple-of-8"},
            "output": output,
        }

    @property
    def version(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical JSON spec."""
        canonical = json.dumps(self.spec, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def factor_for(self, width: int, height: int) -> int | None:
        """The reduction k of an upright `width` x `height` original's intermediate: the
        largest of FACTORS that leaves a long side of at least `long_side`; None: none."""
        return next((k for k in FACTORS if math.ceil(max(width, height) / k) >= self.long_side),
                    None)  # fmt: skip

    def size_for(self, width: int, height: int) -> Size | None:
        """The intermediate's (w, h) for an upright `width` x `height` original (its 1/k DCT
        decode); None when it gets none: too small, or a side not a multiple of 8 (then some
        DCT-scaled decode of it ends in a partial pixel, which EXIF orientation may put at the
        start, where the intermediate's own blocks could not replay it; cameras write
        multiples of 8)."""
        k = self.factor_for(width, height)
        if k is None or width % 8 or height % 8:
            return None
        return width // k, height // k

    def size_of(self, info: ImageInfo) -> Size | None:
        """`size_for` the original `info` describes: None unless it is a JPEG (whose decode
        is DCT-scaled, which the intermediate replays; other formats are box-reduced)."""
        return self.size_for(*info.oriented_size) if info.format == "jpeg" else None

    def make(self, decoded: Decoded, original: Size) -> Image.Image:
        """The intermediate's pixels from a decode of the upright `original` (w, h) at least
        its size: the decode itself when it is the 1/k one (a JPEG's), else box-reduced onto
        the 1/k grid (the picture's top-left at the origin, as a DCT-scaled decode has it)."""
        k = self.factor_for(*original)
        if k is None:
            raise ValueError(f"a {original} original gets no intermediate")
        size = (original[0] // k, original[1] // k)
        image, (x0, y0, x1, y1) = decoded.image, decoded.content
        if image.size == size and (x0, y0) == (0, 0):
            return image
        step = (x1 - x0) / original[0] * k, (y1 - y0) / original[1] * k  # per output pixel
        right = min(image.width, x0 + size[0] * step[0])
        bottom = min(image.height, y0 + size[1] * step[1])
        return image.resize(size, Image.Resampling.BOX, box=(x0, y0, right, bottom))

    def source_for(self, pipeline: Pipeline, original: Size, have: Size | None) -> Source:
        """Where `pipeline` renders an image from: its intermediate (of size `have`, None if
        it has none of this version) when the original's decode for the pipeline would be no
        larger than it (then `decode` replays that decode from it) and transparency was
        composited onto the pipeline's background, else the original (`original`: its width
        and height as catalogued, before EXIF orientation)."""
        if have is None or pipeline.background != self.background:
            return "original"
        width, height = upright(original, have)
        k = reduction(width, height, have)
        if k is None:
            return "original"
        eighths = dct_eighths(width, height, pipeline.min_decode_size(width, height))
        return "intermediate" if eighths * k <= 8 else "original"

    def path(self, image_id: str) -> str:
        """Where the intermediate of image `image_id` made this way is stored."""
        return intermediate_path(self.version, image_id)

    def encode(self, image: Image.Image) -> bytes:
        """The intermediate as a baseline JPEG without metadata."""
        out = io.BytesIO()
        image.save(out, "JPEG", quality=self.quality, subsampling=self.subsampling,
                   optimize=self.optimize)  # fmt: skip
        return out.getvalue()


def upright(original: Size, have: Size) -> Size:
    """The original's upright (w, h) from its catalogued `original` (before EXIF orientation)
    and its intermediate's size `have` (upright): turned when their orientations differ."""
    width, height = original
    if (have[0] >= have[1]) != (width >= height):  # EXIF turned it a quarter
        return height, width
    return width, height


def reduction(width: int, height: int, have: Size) -> int | None:
    """The k of FACTORS with which an upright `width` x `height` original has an intermediate
    of `have` (w, h); None when none fits (not an intermediate of this recipe)."""
    return next((k for k in FACTORS if k * have[0] == width and k * have[1] == height), None)


def decode(data: bytes, have: Size, original: Size, need: Size) -> Decoded:
    """Intermediate `data` (of `have` (w, h)) of an upright `original` (w, h) decoded as the
    original's own decode for a resize needing `need` would be: the original at M/8 is the
    intermediate at M*k/8 (simplejpeg's DCT scaling), box-shrunk by decode's rule, the picture
    placed on the original's grid. ValueError when it cannot stand in for that decode."""
    width, height = original
    k = reduction(width, height, have)
    if k is None:
        raise ValueError(f"a {have} intermediate is not one of a {width}x{height} original")
    eighths = dct_eighths(width, height, need)
    if eighths * k > 8:
        raise ValueError(f"the intermediate is smaller than the decode {need} asks for")
    scale = eighths * k / 8
    pixels = simplejpeg.decode_jpeg(
        data,
        colorspace="RGB",
        min_width=math.ceil(have[0] * scale),
        min_height=math.ceil(have[1] * scale),
    )
    if (pixels.shape[1], pixels.shape[0]) != (
        math.ceil(have[0] * scale),
        math.ceil(have[1] * scale),
    ):
        raise ValueError(f"the intermediate decoded to {pixels.shape[1::-1]}, not at {scale}")
    image, factor = shrink(Image.fromarray(pixels), need)
    content = (0.0, 0.0, width * eighths / 8 / factor, height * eighths / 8 / factor)
    return Decoded(image, content)
