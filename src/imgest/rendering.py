"""Original bytes -> one pipeline's rendition: probe, limits, decode, steps, JPEG encode."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from imgest.catalog.records import RenditionRecord
from imgest.errors import ImageCorrupt, ImgestError
from imgest.imaging.limits import ImageLimits, check
from imgest.imaging.pipeline import Pipeline, Rendition
from imgest.imaging.sniff import ImageInfo, probe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    """What rendering one original yields: its header facts, the rendition, its JPEG bytes
    (empty when not asked for) and the model inputs cut from it (made here, in the worker
    thread, not on the loop)."""

    info: ImageInfo
    rendition: Rendition
    encoded: bytes
    inputs: list[npt.NDArray[np.uint8]]


def render(
    data: bytes, pipeline: Pipeline, limits: ImageLimits, *, encode: bool = True
) -> Rendered:
    """Probe, check limits, decode and render `data` (blocking, CPU-bound); encode the
    rendition as JPEG unless `encode` is false (a rescore whose rendition is stored already).

    Raises the ClientError that explains a refusal; a decoder crashing on hostile bytes is
    ImageCorrupt, never a 500.
    """
    try:
        info = probe(data)
        check(info, limits, min_size=pipeline.min_decode_size(*info.oriented_size))
        rendition = pipeline.render(data, info, max_icc_bytes=limits.max_icc_bytes)
        encoded = rendition.encode() if encode else b""
        inputs = rendition.model_inputs()
    except ImgestError:
        raise
    except Exception as exc:  # a decoder tripping on hostile bytes is still the client's input
        log.warning("decoder failed on client input: %r", exc, exc_info=True)
        raise ImageCorrupt("The image could not be decoded.") from exc
    return Rendered(info=info, rendition=rendition, encoded=encoded, inputs=inputs)


def rendition_record_of(pipeline: Pipeline, path: str, rendered: Rendered) -> RenditionRecord:
    """The catalog record of a stored rendition."""
    return RenditionRecord(
        pipeline=pipeline.name,
        pipeline_version=pipeline.version,
        path=path,
        width=rendered.rendition.width,
        height=rendered.rendition.height,
        content_type=rendered.rendition.content_type,
        bytes=len(rendered.encoded),
    )
