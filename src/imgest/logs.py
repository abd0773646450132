"""Log output: text or one JSON object per line, each record tagged with its request id.

Text records are escaped so that nothing in them (a client's path, a filename, an exception
message) can start a new line or drive the terminal: see `escape_controls`. JSON records are
safe as they are (the encoder escapes every control character).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str] = ContextVar("imgest_request_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(request_id)s"
TRACEBACK_INDENT = "    "


def _escapes() -> dict[int, str]:
    """The str.translate table of `escape_controls`."""
    table = {ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}
    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]:  # C0, DEL, C1
        table.setdefault(code, f"\\x{code:02x}")
    # Line and paragraph separators, and the bidi controls that reorder what a reader sees.
    bidi = [0x061C, *range(0x200E, 0x2010), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
    for code in [0x2028, 0x2029, *bidi]:
        table[code] = f"\\u{code:04x}"
    return table


_ESCAPES = _escapes()


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (LF as `\\n`, ESC as `\\x1b`,
    U+2028 as `\\u2028`) and backslash doubled, so an escape never reads as one a client typed."""
    return text.translate(_ESCAPES)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (of the request being served, or "-") to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate
        return True


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT with every record on one line: message and arguments escaped
    (`escape_controls`). A traceback or stack keeps its line breaks, each of its lines escaped
    and indented, so a line that starts at column 0 always starts a real record."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = escape_controls(self.formatMessage(record))
        blocks = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            blocks.append(record.exc_text)
        if record.stack_info:
            blocks.append(self.formatStack(record.stack_info))
        for block in blocks:
            for line in block.split("\n"):
                text += "\n" + TRACEBACK_INDENT + escape_controls(line)
        return text


def formatter(fmt: Literal["text", "json"]) -> logging.Formatter:
    """The formatter for `fmt`; JSON names its keys time (ISO 8601 UTC), level, logger, message."""
    if fmt == "json":
        return JsonFormatter(
            JSON_FIELDS,
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
    return TextFormatter(TEXT_FORMAT)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes to whatever `sys.stderr` is when a record comes, not the one
    there when it was made: a command run in-process (a test's CliRunner, an embedding app)
    swaps stderr and closes its own afterwards, and a handler holding that closed stream would
    turn every later record into a "Logging error" traceback."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        del value  # always the current sys.stderr


def configure(fmt: Literal["text", "json"], level: str) -> None:
    """Send every log record (uvicorn's too) to stderr in `fmt` at `level`."""
    handler = StderrHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
