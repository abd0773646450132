"""bench/photoset.tsv (the fidelity benchmark's real photos) is well formed, and its intervals true.

The photos themselves are fetched by `make bench` (pip and apt-get), never here: these checks
read the table and the code only.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import imgest
from bench import photoset
from bench.fidelity import wilson
from bench.photoset import PACKAGES, TABLE, table

LABELS = Path(imgest.__file__).parent / "scoring/models/efficientnet-lite0/labels.txt"


def test_the_table_names_several_hundred_photos_with_known_sources() -> None:
    """Several hundred distinct rows, each from a pinned package with a licence; 57 core ones."""
    entries = table()
    assert len(entries) >= 300
    assert len({(e.package, e.member) for e in entries}) == len(entries)
    assert {e.package for e in entries} <= set(PACKAGES)
    assert all(p.version and p.licence and p.folder.endswith("/") for p in PACKAGES.values())
    core = [e for e in entries if e.core]
    assert len(core) == 57  # what the near-duplicate bench and --quick keep measuring
    assert {e.package for e in core} == {
        "foolbox",
        "scikit-image",
        "opencv-doc",
        "mate-backgrounds",
    }
    assert not [e.member for e in entries if "mirror" in e.member.lower()]  # mirrored copies


def test_labels_are_imagenet_classes_and_their_names_are_the_ones_shown() -> None:
    """Every label is an ImageNet-1k index, and the table's name column says which class it is."""
    names = LABELS.read_text().splitlines()
    assert len(names) == 1000
    rows = [line.split("\t") for line in TABLE.read_text().splitlines() if line[:1] != "#"]
    labelled = 0
    for row in rows:
        labels = [int(x) for x in row[2].split()]
        assert all(0 <= label < 1000 for label in labels), row
        assert row[4] == "; ".join(names[label].split(",")[0] for label in labels), row
        labelled += bool(labels)
    assert labelled >= 150
    assert Counter(len(row) for row in rows) == {5: len(rows)}


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),
        (95, 100, 0.8883, 0.9785),
        (57, 57, 0.9369, 1.0),
        (1, 2, 0.0945, 0.9055),
    ],
)
def test_wilson_interval(k: int, n: int, low: float, high: float) -> None:
    """The Wilson score interval at 95%, checked against published values."""
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=5e-4)


def test_a_cache_of_another_table_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first manifest (a bare list) and one built from another table count as no cache."""
    monkeypatch.setattr(photoset, "CACHE", tmp_path)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.jpg").write_bytes(b"")
    row = {"file": "files/a.jpg", "source": "foolbox 3.3.4", "labels": [1], "core": True}
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps([row]))
    with pytest.raises(SystemExit):
        photoset.photos(fetch=False)
    fresh = {"version": photoset.VERSION, "table": photoset._table_digest(), "photos": [row]}
    manifest.write_text(json.dumps({**fresh, "table": "0" * 64}))
    with pytest.raises(SystemExit):
        photoset.photos(fetch=False)
    manifest.write_text(json.dumps(fresh))
    assert [p.labels for p in photoset.photos(fetch=False)] == [(1,)]
