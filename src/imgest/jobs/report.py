"""The compare report as one self-contained HTML page: inline CSS, inline SVG, data: images.

The page is `templates/compare.html` (Jinja2, autoescaping on); this module turns a
`Comparison` into what the template lays out (matrix rows, histogram bars) and renders it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, Template

from imgest.jobs.compare import BINS, Comparison


@dataclass(frozen=True)
class Matrix:
    """The top-1 change matrix as the page lays it out: names, rows of counts, the peak."""

    names: list[str]
    rows: list[tuple[str, list[int]]]
    peak: int


@dataclass(frozen=True)
class Bar:
    """One bin of a confidence histogram, in SVG coordinates."""

    x: float
    y: float
    width: float
    height: float
    low: float
    high: float
    count: int


@dataclass(frozen=True)
class Histogram:
    """A bar chart of top-1 scores over [0, 1] for one side ("A" or "B")."""

    side: str
    colour: str
    bars: list[Bar]
    peak: int  # the largest bin's count, the full height
    width: int
    height: int
    pad: int


def render_html(c: Comparison, *, top: int = 10) -> str:
    """The whole report page for comparison `c`, with the `top` most frequent classes."""
    classes = c.top_labels(top)
    return _template().render(
        c=c,
        classes=classes,
        matrix=matrix(c, classes),
        histograms=[
            histogram(c.a_hist, "A", "#1f6feb"),
            histogram(c.b_hist, "B", "#d1242f"),
        ],
    )


def matrix(c: Comparison, classes: list[str]) -> Matrix:
    """The change matrix over `classes`, the rest folded into "other"."""
    names = [*classes, "other"]
    grid = c.matrix(classes)
    peak = max((n for row in grid for n in row), default=0) or 1
    return Matrix(names, list(zip(names, grid, strict=True)), peak)


def histogram(counts: list[int], side: str, colour: str) -> Histogram:
    """The bars of `counts` (one per bin over [0, 1]) scaled to the chart."""
    width, height, pad = 420, 160, 24
    peak = max(counts) or 1
    bar = (width - 2 * pad) / BINS
    bars = []
    for i, n in enumerate(counts):
        h = (height - 2 * pad) * n / peak
        x, y = pad + i * bar, height - pad - h
        bars.append(Bar(x, y, bar - 1, h, i / BINS, (i + 1) / BINS, n))
    return Histogram(side, colour, bars, peak, width, height, pad)


@cache
def _template() -> Template:
    env = Environment(
        loader=PackageLoader("imgest.jobs", "templates"),
        autoescape=True,  # class names and ground truth come from models and people
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["percent"] = lambda share: f"{share:.2%}"
    env.filters["f1"] = lambda x: f"{x:.1f}"
    env.filters["f2"] = lambda x: f"{x:.2f}"
    return env.get_template("compare.html")
