"""Labels and tags: what is accepted, and what the largest tag form costs."""

from __future__ import annotations

import itertools
import time

import pytest

from imgest.config import Settings
from imgest.errors import InvalidParameter
from imgest.labels import MAX_TAGS, check_tags


def largest_tag_form(distinct: bool = True) -> list[tuple[str, str]]:
    """max_fields `tag` fields, each max_field_bytes of comma-separated short tags."""
    defaults = Settings()
    names = (format(n, "x") for n in itertools.count()) if distinct else itertools.repeat("a")
    pairs = []
    for _ in range(defaults.max_fields):
        value = ""
        for tag in names:
            if len(value) + len(tag) + 1 > defaults.max_field_bytes:
                break
            value += tag + ","
        pairs.append(("tag", value))
    return pairs


def test_tags_keep_first_order_and_drop_duplicates() -> None:
    assert check_tags([" b", "a", "b ", "", "a", "c"]) == ["b", "a", "c"]


def test_more_than_max_tags_is_refused_but_duplicates_do_not_count() -> None:
    assert len(check_tags([str(n % MAX_TAGS) for n in range(10 * MAX_TAGS)])) == MAX_TAGS
    with pytest.raises(InvalidParameter, match=f"More than {MAX_TAGS} tags"):
        check_tags([str(n) for n in range(MAX_TAGS + 1)])


@pytest.mark.timeout(30)
@pytest.mark.parametrize("distinct", [True, False], ids=["distinct", "duplicates"])
def test_the_largest_tag_form_is_checked_in_linear_time(distinct: bool) -> None:
    # Issue 14 item 6: de-duplication compared each tag with every earlier one, so a form of
    # ~190,000 distinct tags took minutes. Now: one pass, stopping past MAX_TAGS distinct.
    raw = [t for _, value in largest_tag_form(distinct) for t in value.split(",")]
    assert len(raw) > 100_000
    started = time.perf_counter()
    try:
        check_tags(raw)
    except InvalidParameter:
        assert distinct
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"{elapsed:.2f} s for {len(raw)} tags"


def test_a_whole_class_name_names_its_class_as_its_synonyms_do() -> None:
    from imgest.labels import Vocabulary

    words = Vocabulary(["tabby, tabby cat", "crane", "crane, bird", "tiger cat"])
    # The gallery and image page suggest class names: picking one must map back to the class.
    assert words.class_of("Tabby, Tabby Cat") == "tabby, tabby cat"
    assert words.class_of("tabby cat") == "tabby, tabby cat"
    assert words.class_of("crane") is None  # two classes: neither


def test_suggestions_are_short_names_that_map_back_to_their_class() -> None:
    from imgest.labels import Vocabulary, suggestions
    from imgest.scoring.model import Model

    classes = Model.bundled(threads=1).labels
    offered = suggestions(classes)
    assert ("tabby", "tabby, tabby cat") in offered
    words = Vocabulary(classes)
    back = [(label, name) for label, name in offered if words.class_of(label) == name]
    assert len(back) >= 990  # 994 of 999: the rest have no name of their own ("harp")
    assert ("Pembroke", "Pembroke, Pembroke Welsh corgi") in back
