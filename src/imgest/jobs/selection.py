"""`--where key=value` options of corpus jobs, read into the catalog's ImageFilter."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from imgest.catalog.repo import ImageFilter
from imgest.errors import JobError

KEYS = ("label", "tag", "since", "until")


def parse_where(conditions: Iterable[str]) -> ImageFilter:
    """ImageFilter from ["tag=pets", "since=2026-01-01", ...] (the API's list filters)."""
    values: dict[str, str] = {}
    for condition in conditions:
        key, sep, value = condition.partition("=")
        key = key.strip()
        if not sep or key not in KEYS:
            raise JobError(f"bad --where {condition!r}: want KEY=VALUE with KEY one of {KEYS}")
        if key in values:
            raise JobError(f"--where {key}=... given twice")
        values[key] = value.strip()
    return ImageFilter(
        label=values.get("label"),
        tag=values.get("tag"),
        since=_time(values, "since"),
        until=_time(values, "until"),
    )


def _time(values: dict[str, str], key: str) -> datetime | None:
    if key not in values:
        return None
    try:
        return datetime.fromisoformat(values[key])
    except ValueError:
        raise JobError(f"--where {key}={values[key]!r}: not an ISO 8601 date or time") from None
