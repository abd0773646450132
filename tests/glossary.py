"""Shared checks against docs/glossary.md: the bare word "label" in shown text, and the table
of existing names that deviate from the glossary's words."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

GLOSSARY = Path(__file__).resolve().parent.parent / "docs" / "glossary.md"
# "label" means four things; shown text uses class, ground truth, top-1 filter or class list.
BARE_LABEL = re.compile(r"\blabel(s|led)?\b", re.IGNORECASE)
SHOWN_ATTRIBUTES = ("title", "aria-label", "placeholder", "alt")


def names_that_stay() -> str:
    """The glossary's table of deviating names, as text."""
    return GLOSSARY.read_text().split("## Names that stay", 1)[1]


def listed(name: str) -> bool:
    """Whether `name` appears inside a code span of the names-that-stay table."""
    spans = re.findall(r"`([^`]+)`", names_that_stay())
    pattern = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
    return any(pattern.search(span) for span in spans)


class _Shown(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        self.parts += [v or "" for k, v in attrs if k in SHOWN_ATTRIBUTES]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def shown_text(html: str) -> str:
    """What a reader sees of a page: text (no script or style) and shown attributes."""
    parser = _Shown()
    parser.feed(html)
    parser.close()
    return " ".join(parser.parts)


def bare_labels(html: str) -> list[str]:
    """Each place where a page shows the bare word "label", with some context."""
    text = re.sub(r"\s+", " ", shown_text(html))
    return [text[max(0, m.start() - 40) : m.end() + 40] for m in BARE_LABEL.finditer(text)]
