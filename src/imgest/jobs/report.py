"""The compare report as one self-contained HTML page: inline CSS, inline SVG, data: images."""

from __future__ import annotations

from html import escape

from imgest.catalog.records import PredictionKey
from imgest.jobs.compare import BINS, Comparison

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4}th.row{text-align:left;max-width:14em;overflow:hidden}
.big{font-size:2em;font-weight:600}.runs td{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.card{width:132px;font-size:11px;border:1px solid #ddd;padding:4px}
.card img{width:112px;height:112px;object-fit:contain;display:block;margin:0 auto}
.a{color:#1f6feb}.b{color:#d1242f}.muted{color:#888}
"""


def render_html(c: Comparison, *, top: int = 10) -> str:
    """The whole report page for comparison `c`."""
    labels = c.top_labels(top)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>imgest compare: {escape(_name(c.a))} vs {escape(_name(c.b))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(_name(c.a))} <span class=muted>vs</span> {escape(_name(c.b))}</h1>",
        _runs(c),
        "<h2>Agreement (top-1)</h2>",
        f"<p><span class=big id=agreement>{c.agreement:.2%}</span> "
        f"({c.agree} of {c.images} images with both predictions)</p>",
        _accuracy(c),
        f"<h2>Top-1 change matrix (the {len(labels)} most frequent labels)</h2>",
        "<p>Rows: top-1 under A; columns: top-1 under B; the diagonal is agreement.</p>",
        _matrix(c, labels),
        "<h2>Confidence (top-1 score)</h2>",
        _histogram(c.a_hist, "A", "#1f6feb"),
        _histogram(c.b_hist, "B", "#d1242f"),
        f"<h2>Disagreements ({c.images - c.agree}; the {len(c.disagreements)} most confident "
        "shown)</h2>",
        _grid(c),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _name(key: PredictionKey) -> str:
    return f"{key.model}@{key.pipeline}"


def _runs(c: Comparison) -> str:
    rows = "".join(
        f"<tr><th>{side}</th><td>{escape(k.model)}</td><td><code>{k.model_version[:12]}</code>"
        f"</td><td>{escape(k.pipeline)}</td><td><code>{escape(k.pipeline_version)}</code></td></tr>"
        for side, k in (("A", c.a), ("B", c.b))
    )
    head = "<tr><th></th><th>model</th><th>version</th><th>pipeline</th><th>version</th></tr>"
    return f"<table class=runs>{head}{rows}</table>"


def _accuracy(c: Comparison) -> str:
    if not c.labelled:
        return "<p class=muted>No image has a ground-truth label: no accuracy.</p>"
    a, b = c.accuracy("a"), c.accuracy("b")
    assert a is not None and b is not None
    return (
        f"<h2>Accuracy against ground truth ({c.labelled} labelled images)</h2>"
        f"<table><tr><th>A</th><td id=accuracy-a>{a:.2%}</td></tr>"
        f"<tr><th>B</th><td id=accuracy-b>{b:.2%}</td></tr></table>"
    )


def _matrix(c: Comparison, labels: list[str]) -> str:
    names = [*labels, "other"]
    grid = c.matrix(labels)
    peak = max((n for row in grid for n in row), default=0) or 1
    head = "<tr><th>A \\ B</th>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"
    rows = []
    for name, row in zip(names, grid, strict=True):
        cells = "".join(
            f'<td style="background:rgba(31,111,235,{n / peak * 0.8:.2f})">{n or ""}</td>'
            for n in row
        )
        rows.append(f'<tr><th class=row title="{escape(name)}">{escape(name)}</th>{cells}</tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def _histogram(counts: list[int], side: str, colour: str) -> str:
    """A bar chart of `counts` over [0, 1] as inline SVG."""
    width, height, pad = 420, 160, 24
    peak = max(counts) or 1
    bar = (width - 2 * pad) / BINS
    bars = []
    for i, n in enumerate(counts):
        h = (height - 2 * pad) * n / peak
        x, y = pad + i * bar, height - pad - h
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" '
            f'fill="{colour}"><title>{i / BINS:.2f}-{(i + 1) / BINS:.2f}: {n}</title></rect>'
        )
    axis = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#888"/>'
        f'<text x="{pad}" y="{height - 6}" font-size="11">0</text>'
        f'<text x="{width - pad - 6}" y="{height - 6}" font-size="11">1</text>'
        f'<text x="{pad}" y="14" font-size="12">{side}: top-1 score (max bin {peak})</text>'
    )
    return (
        f'<svg width="{width}" height="{height}" '
        f'role="img" aria-label="confidence histogram {side}">{axis}{"".join(bars)}</svg>'
    )


def _grid(c: Comparison) -> str:
    if not c.disagreements:
        return "<p class=muted>A and B agree on every image.</p>"
    cards = []
    for d in c.disagreements:
        p = d.pair
        image = (
            f'<img src="{d.thumbnail}" alt="{p.image_id[:12]}">'
            if d.thumbnail
            else "<p class=muted>(no rendition)</p>"
        )
        truth = f"<div>truth: {escape(p.truth)}</div>" if p.truth else ""
        cards.append(
            f'<div class=card title="{p.image_id}">{image}<code>{p.image_id[:12]}</code>'
            f"<div class=a>A: {escape(p.a_label)} {p.a_score:.2f}</div>"
            f"<div class=b>B: {escape(p.b_label)} {p.b_score:.2f}</div>{truth}</div>"
        )
    return f"<div class=grid>{''.join(cards)}</div>"
