"""Text logs: one record is one line, and nothing a client sends can forge a line or reach
the terminal as a control sequence (issue 14 item 8)."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from imgest.logs import RequestIdFilter, escape_controls, formatter

# Every character a terminal or a log reader may act on: C0 (NUL..US, with TAB, LF, CR, ESC),
# DEL, C1 (NEL, CSI...), Unicode's line/paragraph separators and every bidi control (Unicode's
# Bidi_Control property: ALM, LRM, RLM, LRE..RLO, LRI..PDI), as the filename cleaner strips.
CONTROLS = [
    *map(chr, range(0x20)),
    "\x7f",
    *map(chr, range(0x80, 0xA0)),
    "\u2028",
    "\u2029",
    "\u061c",
    *map(chr, [0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]),
]
FORGED = "\n1999-12-31 23:59:59,000 INFO imgest.access [-]: DELETE /v1/images/x 204 1.0 ms"


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nvalue" + FORGED)
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("imgest.test", logging.INFO, __file__, 1, msg, args, exc_info)
    RequestIdFilter().filter(rec)
    return rec


@pytest.mark.parametrize("char", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_every_control_character_is_escaped_in_message_and_args(char: str) -> None:
    text = formatter("text").format(record("msg" + char + " %s", "arg" + char + "end"))
    assert char not in text
    assert text.count(escape_controls(char)) == 2, text
    assert "\n" not in text


def test_a_forged_line_stays_inside_its_record() -> None:
    text = formatter("text").format(record("%s %s", "GET", "/x" + FORGED + "\x1b[2J\r"))
    assert len(text.splitlines()) == 1
    assert "\\n1999-12-31" in text and "\\x1b[2J\\r" in text


def test_escapes_cannot_be_confused_with_what_a_client_typed() -> None:
    # A client sending the two characters backslash and n is not shown as a line break.
    assert escape_controls("a\\nb") != escape_controls("a\nb")
    assert escape_controls("plain text, ünïcode ok") == "plain text, ünïcode ok"


def test_a_traceback_keeps_its_lines_but_no_line_of_it_looks_like_a_record() -> None:
    text = formatter("text").format(record("failed %s", "x\ny", exc=True))
    first, *rest = text.split("\n")
    assert first.endswith("failed x\\ny")
    assert rest and all(line.startswith("    ") for line in rest), text
    assert any("ValueError: bad" in line for line in rest)
    assert not any(line.startswith("1999") for line in text.split("\n"))


def test_json_records_stay_one_line_too() -> None:
    text = formatter("json").format(record("%s", "/x" + FORGED + "\x1b[31m\x85"))
    assert len(text.splitlines()) == 1
    assert json.loads(text)["message"] == "/x" + FORGED + "\x1b[31m\x85"


def test_the_handler_writes_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command run in-process (CliRunner) configures logging while stderr is its own stream
    and closes that stream afterwards: later records must not hit the closed one."""
    import io
    import logging
    import sys

    from imgest import logs

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    root = logging.getLogger()
    saved = root.handlers, root.level
    try:
        logs.configure("text", "info")
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("imgest.test").info("after the first stream closed")
        written = second.getvalue()
        assert "after the first stream closed" in written and "Logging error" not in written
    finally:
        root.handlers, root.level = saved[0], saved[1]
