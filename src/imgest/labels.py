"""What a person may attach to an image: a ground-truth label and tags (validated here),
and how free-text labels meet a model's class names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from imgest.errors import InvalidLabel, InvalidParameter

MAX_LABEL_LENGTH = 200  # the catalog column's width
MAX_TAGS = 100
MAX_TAG_LENGTH = 100
# Below this a model's top-1 is a guess: export leaves it out, the UI marks it "?".
MIN_SCORE = 0.5
MAX_BULK_LABELS = 500  # images one bulk label request (PATCH /v1/images) may name


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


def label_matches(truth: str, predicted: str) -> bool:
    """Ground truth matches a predicted label when equal to it or to one of its names
    (ImageNet labels are comma-separated synonyms: "tabby, tabby cat"), ignoring case. The
    list filter `disagrees` asks the same in SQL (`catalog.filters.agrees`)."""
    want = truth.strip().casefold()
    names = [predicted.strip().casefold(), *(n.strip().casefold() for n in predicted.split(","))]
    return want in names


def synonyms(class_name: str) -> list[str]:
    """A model class name's comma-separated synonyms ("tabby, tabby cat" -> tabby, tabby cat)."""
    return [s.strip() for s in class_name.split(",") if s.strip()]


class Vocabulary:
    """A model's class names, for mapping free-text ground truth onto them.

    A label matches a class when it equals the class name or one of its synonyms,
    case-insensitively ("Tabby Cat" -> "tabby, tabby cat"). A synonym two classes share
    (ImageNet has two "crane"s) maps to neither. A class's short name is its first synonym,
    unless another class has the same first synonym: then its full name.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        owners: dict[str, set[str]] = {}
        for name in classes:
            # The whole class name names it too ("tabby, tabby cat", as the UI suggests it).
            for word in {name.strip(), *synonyms(name)}:
                owners.setdefault(word.casefold(), set()).add(name)
        self._class_of = {w: next(iter(n)) for w, n in owners.items() if len(n) == 1}
        firsts: dict[str, int] = {}
        for name in classes:
            first = (synonyms(name) or [name])[0]
            firsts[first] = firsts.get(first, 0) + 1
        self._short = {}
        for name in classes:
            first = (synonyms(name) or [name])[0]
            self._short[name] = first if firsts[first] == 1 else name

    def class_of(self, label: str) -> str | None:
        """The class `label` names (full class name), or None."""
        return self._class_of.get(label.strip().casefold())

    def short(self, class_name: str) -> str:
        """The name an export uses for a class: its first synonym where that is unique."""
        return self._short.get(class_name, class_name)


def suggestions(classes: Sequence[str]) -> list[tuple[str, str]]:
    """(label to set, class name) for each class, sorted by label: the first of its short
    name, its whole name and its synonyms that the vocabulary maps back to it (its whole name
    where none does, as for "harp", which another class has as a synonym too); what the UI
    offers as ground truth."""
    words = Vocabulary(classes)
    offered = set()
    for name in classes:
        names = [words.short(name), name, *synonyms(name)]
        offered.add((next((n for n in names if words.class_of(n) == name), name), name))
    return sorted(offered)
