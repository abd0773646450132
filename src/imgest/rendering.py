"""Original bytes -> one pipeline's rendition (and, at ingest, the image's intermediate from the
same decode): probe, limits, decode, steps, JPEG encode; and the server's `Renderer`, which runs
that work in worker threads under one CPU limiter."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar, TypeVarTuple

import anyio.to_thread
import numpy as np
import numpy.typing as npt
from anyio import CapacityLimiter
from PIL import Image

from imgest.catalog.records import RenditionRecord
from imgest.errors import ImageCorrupt, ImgestError
from imgest.imaging.colour import RGB
from imgest.imaging.decode import Decoded, decode_exact
from imgest.imaging.intermediate import NAME as INTERMEDIATE
from imgest.imaging.intermediate import Intermediate, Source, upright
from imgest.imaging.intermediate import decode as decode_intermediate
from imgest.imaging.limits import ImageLimits, check
from imgest.imaging.pipeline import Pipeline, Rendition
from imgest.imaging.sniff import ImageInfo, probe

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")


@dataclass(frozen=True)
class Reduced:
    """An intermediate made along with a rendition: its size and JPEG bytes."""

    width: int
    height: int
    encoded: bytes


@dataclass(frozen=True)
class Rendered:
    """What rendering one original yields: its header facts, the rendition, its JPEG bytes
    (empty when not asked for) and the model inputs cut from it (made here, in the worker
    thread, not on the loop)."""

    info: ImageInfo
    rendition: Rendition
    encoded: bytes
    inputs: list[npt.NDArray[np.uint8]]
    intermediate: Reduced | None = None  # asked for, and the original is larger than it


@dataclass(frozen=True)
class Renderer:
    """What the server's renders share: the decode limits, how intermediates are made (None:
    off) and one CPU limiter, so that uploads and on-demand renditions compete for the same
    cores."""

    limits: ImageLimits
    cpu: CapacityLimiter
    intermediate: Intermediate | None = None

    async def run(self, work: Callable[[*_Args], _T], *args: *_Args) -> _T:
        """`work(*args)` (CPU-bound: decode, steps, encode) in a worker thread, within the
        CPU limiter."""
        return await anyio.to_thread.run_sync(work, *args, limiter=self.cpu)


@contextmanager
def _decoder_faults(whose: str) -> Iterator[None]:
    """A decoder tripping on `whose` bytes (hostile ones, say) raises ImageCorrupt, logged,
    never a 500; the ImgestErrors that refuse an image on purpose pass as they are."""
    try:
        yield
    except ImgestError:
        raise
    except Exception as exc:
        log.warning("decoder failed on %s: %r", whose, exc, exc_info=True)
        raise ImageCorrupt("The image could not be decoded.") from exc


def _decode_checked(
    data: bytes,
    info: ImageInfo,
    limits: ImageLimits,
    least: tuple[int, int],
    background: RGB,
) -> Decoded:
    """`data` decoded upright at `least` that size, once the limits allow decoding that much."""
    check(info, limits, min_size=least)
    return decode_exact(
        data, info, min_size=least, background=background, max_icc_bytes=limits.max_icc_bytes
    )


def render(
    data: bytes,
    pipeline: Pipeline,
    limits: ImageLimits,
    *,
    encode: bool = True,
    intermediate: Intermediate | None = None,
    source: Source = "original",
    original: tuple[int, int] | None = None,
) -> Rendered:
    """Probe, check limits, decode and render `data` (blocking, CPU-bound); encode the
    rendition as JPEG unless `encode` is false (a rescore whose rendition is stored already).
    With `intermediate`, the same decode (at least the intermediate's size) also yields the
    image's intermediate, where the original is larger than one. `source` "intermediate":
    `data` is the intermediate of an original of size `original` (as catalogued), decoded as
    the original's decode would be (imaging.intermediate.decode).

    Raises the ClientError that explains a refusal; a decoder crashing on hostile bytes is
    ImageCorrupt, never a 500.
    """
    if source == "intermediate" and original is None:
        raise ValueError("rendering from an intermediate needs the original's size")
    with _decoder_faults("client input"):
        info = probe(data)
        need = pipeline.min_decode_size(*info.oriented_size)
        size = None
        if intermediate is not None and intermediate.background == pipeline.background:
            size = intermediate.size_of(info)
        if source == "intermediate":
            assert original is not None  # checked above
            check(info, limits)
            whole = upright(original, info.oriented_size)
            need = pipeline.min_decode_size(*whole)
            rendition = pipeline.apply(decode_intermediate(data, info.oriented_size, whole, need))
            reduced = None
        elif size is None:
            check(info, limits, min_size=need)
            rendition = pipeline.render(data, info, max_icc_bytes=limits.max_icc_bytes)
            reduced = None
        else:
            assert intermediate is not None
            least = (max(need[0], size[0]), max(need[1], size[1]))
            decoded = _decode_checked(data, info, limits, least, pipeline.background)
            rendition = pipeline.apply(decoded)
            encoded_reduced = intermediate.encode(intermediate.make(decoded, info.oriented_size))
            reduced = Reduced(size[0], size[1], encoded_reduced)
        encoded = rendition.encode() if encode else b""
        inputs = rendition.model_inputs()
    return Rendered(
        info=info, rendition=rendition, encoded=encoded, inputs=inputs, intermediate=reduced
    )


def render_decoded(
    data: bytes, image: Image.Image, pipeline: Pipeline, limits: ImageLimits, *, encode: bool
) -> Rendered:
    """`render` from pixels decoded elsewhere (the GPU decoder's: full size, upright, RGB):
    the limits are checked on `data`'s header as usual, the pixels box-reduced by an integer
    factor toward what the pipeline needs, then the steps run."""
    info = probe(data)
    need = pipeline.min_decode_size(*info.oriented_size)
    check(info, limits, min_size=need)
    if image.size != info.oriented_size or image.mode != "RGB":
        raise ImageCorrupt("The decoded image does not have the size its header says.")
    factor = max(1, min(image.width // need[0], image.height // need[1]))
    if factor > 1:
        image = image.reduce(factor)
    # reduce() rounds sizes up: the picture is the exact scaled box, as decode_exact says.
    content = (0.0, 0.0, info.oriented_size[0] / factor, info.oriented_size[1] / factor)
    rendition = pipeline.apply(Decoded(image, content))
    encoded = rendition.encode() if encode else b""
    return Rendered(
        info=info, rendition=rendition, encoded=encoded, inputs=rendition.model_inputs()
    )


def reduce(data: bytes, intermediate: Intermediate, limits: ImageLimits) -> Reduced | None:
    """The intermediate of original `data` alone (a backfill), decoded at the smallest DCT
    scale that covers it; None when the original is not larger than an intermediate."""
    with _decoder_faults("a stored original"):
        info = probe(data)
        size = intermediate.size_of(info)
        if size is None:
            return None
        decoded = _decode_checked(data, info, limits, size, intermediate.background)
        encoded = intermediate.encode(intermediate.make(decoded, info.oriented_size))
    return Reduced(size[0], size[1], encoded)


def rendition_record_of(
    pipeline: Pipeline, path: str, rendered: Rendered, source: Source = "original"
) -> RenditionRecord:
    """The catalog record of a stored rendition, rendered from `source`."""
    return RenditionRecord(
        pipeline=pipeline.name,
        pipeline_version=pipeline.version,
        path=path,
        width=rendered.rendition.width,
        height=rendered.rendition.height,
        content_type=rendered.rendition.content_type,
        bytes=len(rendered.encoded),
        source=source,
    )


def intermediate_record_of(
    intermediate: Intermediate, path: str, reduced: Reduced
) -> RenditionRecord:
    """The catalog record of a stored intermediate (a rendition row of its reserved name)."""
    return RenditionRecord(
        pipeline=INTERMEDIATE,
        pipeline_version=intermediate.version,
        path=path,
        width=reduced.width,
        height=reduced.height,
        content_type="image/jpeg",
        bytes=len(reduced.encoded),
    )
