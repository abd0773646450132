"""What the corpus jobs' human summaries share: the one line when no image needed the work, and
one line per image the job failed on, after the job's own facts."""

from __future__ import annotations

from collections.abc import Sequence


def failed_lines(failed: Sequence[tuple[str, str]]) -> list[str]:
    """One `failed ID: REASON` line per (image id, reason)."""
    return [f"failed {image_id}: {reason}" for image_id, reason in failed]


def summary_lines(
    *,
    matched: int,
    pending: int,
    have: str,
    facts: list[str],
    failed: Sequence[tuple[str, str]],
) -> list[str]:
    """`facts` and the failures; where none of the `matched` images was pending, only
    `nothing to do: all N matching images have HAVE`."""
    if pending == 0:
        return [f"nothing to do: all {matched} matching images have {have}"]
    return facts + failed_lines(failed)
