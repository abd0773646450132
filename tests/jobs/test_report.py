"""The compare report: rendered from its Jinja2 template, every outside string escaped."""

from __future__ import annotations

from html.parser import HTMLParser

from imgest.catalog.records import PredictionKey, PredictionPair
from imgest.jobs.compare import Comparison, Disagreement
from imgest.jobs.report import render_html
from tests.glossary import bare_labels

# Strings a model's class list or a person's ground truth may hold: markup, both quotes,
# an ampersand and Jinja2's own delimiters (which must come out as text, not be evaluated).
HOSTILE = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "it's a 'cat'",
    "{{ 7 * 7 }}",
    "{% raw %}",
    "R&D <b>",
)


class Page(HTMLParser):
    """The tags and text of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.names: list[str] = []  # attribute names
        self.attributes: list[str] = []  # attribute values
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.names += [name for name, _ in attrs]
        self.attributes += [value or "" for _, value in attrs]

    def handle_data(self, data: str) -> None:
        self.text += data


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def hostile_comparison() -> Comparison:
    key = PredictionKey("m", "v" * 64, "p", "pv")
    c = Comparison(key, PredictionKey(HOSTILE[2], "w" * 64, "p", HOSTILE[3]))
    for i, text in enumerate(HOSTILE):
        other = HOSTILE[(i + 1) % len(HOSTILE)]
        c.add(PredictionPair(f"{i:064x}", other, text, 0.9, other, 0.5))
    c.disagreements = [
        Disagreement(
            PredictionPair(f"{i:064x}", text, text, 0.9, text, 0.5),
            "data:image/jpeg;base64,AAAA" if i == 0 else "",
        )
        for i, text in enumerate(HOSTILE)
    ]
    return c


def test_hostile_class_names_and_ground_truth_are_text() -> None:
    html = render_html(hostile_comparison(), top=len(HOSTILE))
    page = parse(html)
    # No markup got in: only the report's own tags, and no attribute that a string broke out of.
    assert "script" not in page.tags and "b" not in page.tags
    assert page.tags.count("img") == 1 and "onerror" not in page.names
    # Each string reads back exactly, as text: in the matrix, the cards and the ground truth.
    for text in HOSTILE:
        assert f"A: {text} 0.90" in page.text
        assert f"B: {text} 0.50" in page.text
        assert f"ground truth: {text}" in page.text
        assert text in page.attributes  # the matrix row's title
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '"><img src=x' not in html and "it's" not in html  # quotes escaped in attributes too
    assert "49" not in page.text and "{{ 7 * 7 }}" in page.text  # not evaluated
    assert "R&amp;D &lt;b&gt;" in html


def test_run_names_are_escaped_too() -> None:
    page = parse(render_html(hostile_comparison()))
    assert "imgest compare: m@p vs it's a 'cat'@p" in page.text
    assert "{{ 7 * 7 }}" in page.text  # B's pipeline version, shown as typed


def test_report_layout() -> None:
    c = hostile_comparison()
    html = render_html(c, top=2)
    page = parse(html)
    # top=2: two classes and "other" in the header, and one row each.
    assert html.count("<th class=row") == 3
    assert page.tags.count("svg") == 2 and page.tags.count("rect") == 2 * 20
    assert f"<span class=big id=agreement>{c.agreement:.2%}</span>" in html
    assert "<td id=accuracy-a>" in html and "<td id=accuracy-b>" in html
    assert f"Disagreements ({c.images - c.agree}; the {len(c.disagreements)} most" in page.text
    assert page.text.count("(no rendition)") == len(c.disagreements) - 1
    empty = parse(render_html(Comparison(c.a, c.a)))
    assert "No image has ground truth: no accuracy." in empty.text
    assert "A and B agree on every image." in empty.text


def test_report_uses_the_glossary_words() -> None:
    """Class, ground truth, images with ground truth: never the bare "label"
    (docs/glossary.md)."""
    key = PredictionKey("m", "v" * 64, "p", "pv")
    c = Comparison(key, key)
    c.add(PredictionPair("a" * 64, "tabby", "tabby", 0.9, "lynx", 0.5))
    c.disagreements = [Disagreement(PredictionPair("a" * 64, "tabby", "tabby", 0.9, "lynx", 0.5))]
    for comparison in (c, Comparison(key, key)):
        assert bare_labels(render_html(comparison)) == []
    page = parse(render_html(c))
    assert "(over the 1 images that have it)" in page.text and "ground truth: tabby" in page.text
