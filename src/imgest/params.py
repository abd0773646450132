"""Client-supplied values parsed in one place: a parse failure is InvalidParameter, never a 500.

Query parameters, path segments, form values and cursors all reach the server as text, and
the ways such text breaks Python's parsers are few: ValueError (and its subclasses
UnicodeDecodeError, binascii.Error, json.JSONDecodeError), OverflowError (a date next to
datetime.min/max moved by a time zone offset or a timedelta), and a few TypeErrors.
`parsing` turns exactly those into a 422 `invalid_parameter` whose sentence names the
parameter; everything here that computes with a client's value (times to UTC, a day to its
next midnight, the keyset cursor) does so under it, so an edge that the parsers accept cannot
fail later as a 500. The catalog's ImageFilter runs its values through here when it is built.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

from imgest.errors import InvalidParameter

# What Python's parsers raise for text they cannot read or values they cannot compute with.
PARSE_ERRORS = (ValueError, OverflowError, TypeError)
_IMAGE_ID = re.compile(r"[0-9a-f]{64}")


@contextmanager
def parsing(detail: str) -> Iterator[None]:
    """Run the block; a parse error in it becomes InvalidParameter(detail), a sentence that
    names the parameter."""
    try:
        yield
    except PARSE_ERRORS:
        raise InvalidParameter(detail) from None


def utc(value: datetime, name: str) -> datetime:
    """`value` as an aware UTC datetime (naive means UTC); InvalidParameter if it has no UTC
    equivalent (e.g. 0001-01-01T00:00+01:00 is before datetime.min in UTC)."""
    with parsing(f"{name} is not a time within the years 1 to 9999 in UTC."):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def filter_text(value: str | None, name: str) -> str | None:
    """A free-text filter value; InvalidParameter for a NUL, which no stored value holds and
    PostgreSQL cannot even compare with."""
    if value is not None and "\x00" in value:
        raise InvalidParameter(f"{name} must not contain NUL characters.")
    return value


def percent(raw: str | None, name: str) -> float | None:
    """A percentage from 0 to 100 (empty means none) as a share from 0 to 1."""
    if not raw or not raw.strip():
        return None
    with parsing(f"{name} is a percentage from 0 to 100."):
        value = float(raw)
        if not (math.isfinite(value) and 0.0 <= value <= 100.0):
            raise ValueError("out of range")
        return value / 100


def day(raw: str | None, name: str) -> date | None:
    """A YYYY-MM-DD value (empty means none)."""
    if not raw:
        return None
    with parsing(f"{name} is not a date of the form YYYY-MM-DD."):
        return date.fromisoformat(raw)


def day_start(value: date) -> datetime:
    """Midnight UTC at the start of `value`."""
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def day_end(value: date, name: str) -> datetime:
    """Midnight UTC after `value` (the exclusive end of that day); for 9999-12-31, which has
    no next day, the last representable instant (nothing is stored after it either)."""
    with parsing(f"{name} is not a date within the years 1 to 9999."):
        try:
            return day_start(value + timedelta(days=1))
        except OverflowError:
            return datetime.max.replace(tzinfo=UTC)


def encode_cursor(created_at: datetime, image_id: str) -> str:
    """Opaque keyset cursor for the position after (created_at, id)."""
    raw = f"{utc(created_at, 'cursor').isoformat()}|{image_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of encode_cursor; anything this server did not issue is InvalidParameter."""
    with parsing("The cursor is not one this server issued."):
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, image_id = raw.split("|", 1)
        if not _IMAGE_ID.fullmatch(image_id):
            raise ValueError("not an image id")
        return utc(datetime.fromisoformat(stamp), "cursor"), image_id


def encode_score_cursor(sort: str, score: float, image_id: str) -> str:
    """Opaque keyset cursor for the position after (score, id) in a page sorted by `sort`."""
    raw = f"{sort}|{score!r}|{image_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_score_cursor(cursor: str, sort: str) -> tuple[float, str]:
    """Inverse of encode_score_cursor for pages sorted by `sort`; InvalidParameter for
    anything else (a cursor of another sort order included)."""
    with parsing(f"The cursor is not one this server issued for sort={sort}."):
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        name, score, image_id = raw.split("|", 2)
        value = float(score)
        if name != sort or not math.isfinite(value) or not _IMAGE_ID.fullmatch(image_id):
            raise ValueError("not a cursor of this order")
        return value, image_id
