"""Client values parsed in one place: every edge is InvalidParameter, never another error."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from imgest.catalog.repo import ImageFilter
from imgest.errors import InvalidParameter
from imgest.params import day, day_end, decode_cursor, encode_cursor, utc

ID = "ab" * 32


def test_a_cursor_round_trips() -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert decode_cursor(encode_cursor(stamp, ID)) == (stamp, ID)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "%%%",
        "é",
        encode_cursor(datetime(2026, 1, 1), "not-an-id"),
        encode_cursor(datetime(2026, 1, 1), ID)[:-3],
        # Stamps that parse but have no UTC equivalent (OverflowError before issue 14 item 9).
        base64.urlsafe_b64encode(f"0001-01-01T00:00:00+05:00|{ID}".encode()).decode(),
        base64.urlsafe_b64encode(f"9999-12-31T23:59:59-05:00|{ID}".encode()).decode(),
    ],
)
def test_any_other_cursor_is_an_invalid_parameter(cursor: str) -> None:
    with pytest.raises(InvalidParameter, match="cursor"):
        decode_cursor(cursor)


def test_times_without_a_utc_equivalent_are_invalid_parameters() -> None:
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    late = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1)))
    for value in (early, late):
        with pytest.raises(InvalidParameter, match="since"):
            utc(value, "since")
        with pytest.raises(InvalidParameter, match="until"):
            ImageFilter(until=value)
    assert ImageFilter(since=datetime(2026, 1, 1)).since == datetime(2026, 1, 1, tzinfo=UTC)


def test_the_last_day_ends_at_the_last_instant() -> None:
    assert day_end(date(2026, 2, 28), "to") == datetime(2026, 3, 1, tzinfo=UTC)
    assert day_end(date.max, "to") == datetime.max.replace(tzinfo=UTC)
    assert day("", "to") is None
    with pytest.raises(InvalidParameter, match="To is not a date"):
        day("2026-02-30", "To")
