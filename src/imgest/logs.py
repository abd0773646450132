"""Log output: text or one JSON object per line, each record tagged with its request id."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str] = ContextVar("imgest_request_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(request_id)s"


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (of the request being served, or "-") to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate
        return True


def formatter(fmt: Literal["text", "json"]) -> logging.Formatter:
    """The formatter for `fmt`; JSON names its keys time (ISO 8601 UTC), level, logger, message."""
    if fmt == "json":
        return JsonFormatter(
            JSON_FIELDS,
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
    return logging.Formatter(TEXT_FORMAT)


def configure(fmt: Literal["text", "json"], level: str) -> None:
    """Send every log record (uvicorn's too) to stderr in `fmt` at `level`."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
