"""What a person may attach to an image: a ground-truth label and tags (validated here)."""

from __future__ import annotations

from collections.abc import Iterable

from imgest.errors import InvalidLabel, InvalidParameter

MAX_LABEL_LENGTH = 200  # the catalog column's width
MAX_TAGS = 100
MAX_TAG_LENGTH = 100


def check_label(value: str) -> str:
    """The label with surrounding spaces removed; InvalidLabel (422) if empty, too long or
    holding control characters."""
    label = value.strip()
    if not label:
        raise InvalidLabel("A label must not be empty (send null to clear it).")
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidLabel(f"A label is at most {MAX_LABEL_LENGTH} characters.")
    if not label.isprintable():
        raise InvalidLabel("A label must not contain control characters.")
    return label


def check_tags(values: Iterable[str]) -> list[str]:
    """Tags stripped, empty ones dropped, duplicates removed (first wins), each checked.

    Linear in the input, and it stops at the first tag past MAX_TAGS distinct ones: the
    largest form (every text field full of short tags) costs one pass, not a comparison of
    each tag with every earlier one.
    """
    tags: dict[str, None] = {}
    for raw in values:
        tag = raw.strip()
        if not tag or tag in tags:
            continue
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidParameter(f"A tag is longer than {MAX_TAG_LENGTH} characters.")
        if not tag.isprintable():
            raise InvalidParameter("A tag contains control characters.")
        if len(tags) == MAX_TAGS:
            raise InvalidParameter(f"More than {MAX_TAGS} tags.")
        tags[tag] = None
    return list(tags)
