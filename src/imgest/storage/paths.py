"""The blob layout: where originals, renditions and intermediates live in a store
(content-addressed)."""

from __future__ import annotations

import re

ORIGINALS_PREFIX = "originals/"
RENDITIONS_PREFIX = "renditions/"
MODELS_PREFIX = "models/"
# The reserved pipeline name of intermediates: `renditions/intermediate@<version>/...`, so gc
# and fsck see them as the renditions they are (see imgest.imaging.intermediate).
INTERMEDIATE = "intermediate"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PIPELINE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_VERSION = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_EXT = re.compile(r"[a-z0-9]{1,10}")


# Either layout, capturing the image id (the SHA-256 of the original).
_BLOB = re.compile(
    r"originals/[0-9a-f]{2}/[0-9a-f]{2}/(?P<o>[0-9a-f]{64})"
    r"|renditions/[^/]+/[0-9a-f]{2}/[0-9a-f]{2}/(?P<r>[0-9a-f]{64})\.[a-z0-9]{1,10}"
)


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"invalid {what}: {value!r} (want {pattern.pattern})")
    return value


def _fanout(sha256_hex: str) -> str:
    sha = _check(_SHA256, sha256_hex, "sha256 (64 lowercase hex digits)")
    return f"{sha[:2]}/{sha[2:4]}/{sha}"


def original_path(sha256_hex: str) -> str:
    """`originals/ab/cd/<sha256>`: where the uploaded bytes with this SHA-256 are stored."""
    return ORIGINALS_PREFIX + _fanout(sha256_hex)


def rendition_prefix(pipeline_name: str, spec_version: str) -> str:
    """`renditions/<pipeline>@<version>/`: the prefix of every rendition of one pipeline version."""
    name = _check(_PIPELINE, pipeline_name, "pipeline name")
    version = _check(_VERSION, spec_version, "pipeline spec version")
    return f"{RENDITIONS_PREFIX}{name}@{version}/"


def rendition_path(pipeline_name: str, spec_version: str, sha256_hex: str, ext: str) -> str:
    """`renditions/<pipeline>@<version>/ab/cd/<sha256>.<ext>` (`ext` without the dot: "jpg")."""
    extension = _check(_EXT, ext, "file extension (lowercase, without the dot)")
    return f"{rendition_prefix(pipeline_name, spec_version)}{_fanout(sha256_hex)}.{extension}"


def intermediate_path(spec_version: str, sha256_hex: str) -> str:
    """`renditions/intermediate@<version>/ab/cd/<sha256>.jpg`: an image's intermediate."""
    return rendition_path(INTERMEDIATE, spec_version, sha256_hex, "jpg")


def model_path(sha256_hex: str) -> str:
    """`models/<sha256>.onnx`: where a registered model's ONNX bytes are stored."""
    return f"{MODELS_PREFIX}{_check(_SHA256, sha256_hex, 'sha256 (64 lowercase hex digits)')}.onnx"


def image_id_of(path: str) -> str | None:
    """The image id (SHA-256) a layout path belongs to, or None for a path outside the layout."""
    match = _BLOB.fullmatch(path)
    if match is None:
        return None
    sha: str = match["o"] or match["r"]
    return sha if f"/{_fanout(sha)}" in path else None
