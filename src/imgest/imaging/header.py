"""Pieces every header reader shares: the errors they raise and which orientations swap axes."""

from __future__ import annotations

from imgest.errors import ImageCorrupt, ImageTruncated

# The EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
SWAPS_AXES = frozenset({5, 6, 7, 8})


def truncated(fmt: str) -> ImageTruncated:
    """The header of `fmt` ends early."""
    return ImageTruncated(f"The {fmt} header ends before it is complete.")


def corrupt(fmt: str, why: str) -> ImageCorrupt:
    """The header of `fmt` is invalid, and why."""
    return ImageCorrupt(f"The {fmt} header is invalid: {why}.")
