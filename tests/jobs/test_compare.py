"""Compare: naming runs, resolving them against the catalog, label matching."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from imgest.catalog.records import Label, PredictionRecord
from imgest.errors import JobError
from imgest.jobs import rescore
from imgest.jobs.compare import RunRef, compare, label_matches
from imgest.jobs.report import render_html
from imgest.runtime import Runtime
from tests.jobs.conftest import Corpus


def test_run_names() -> None:
    assert RunRef.parse("efficientnet-lite0@default") == RunRef("efficientnet-lite0", "default")
    assert RunRef.parse("m:e1659a@tiles2x2:a6f6") == RunRef("m", "tiles2x2", "e1659a", "a6f6")
    for bad in ("", "model", "@default", "m@", "m@Default", "m:xyz@p"):
        with pytest.raises(JobError, match="MODEL"):
            RunRef.parse(bad)


def test_ground_truth_matches_any_name_of_a_label() -> None:
    assert label_matches("tabby cat", "tabby, tabby cat")
    assert label_matches("Tabby", "tabby, tabby cat")
    assert label_matches("espresso", "espresso")
    assert not label_matches("cat", "tabby, tabby cat")


def test_compare_picks_versions_and_refuses_unknown_runs(
    make_corpus: Callable[..., Corpus], photo_files: list[tuple[str, bytes, dict[str, Any]]]
) -> None:
    corpus = make_corpus(photo_files[:6])
    done = rescore.run(corpus.settings, pipeline="stretch", workers=0)
    with pytest.raises(JobError, match="no predictions of efficientnet-lite0@pad"):
        compare(corpus.settings, "efficientnet-lite0@default", "efficientnet-lite0@pad")
    with pytest.raises(JobError, match="no predictions"):
        compare(corpus.settings, "efficientnet-lite0:ffffff@default", "efficientnet-lite0@stretch")
    version = done.key.model_version[:8]
    result = compare(
        corpus.settings,
        f"efficientnet-lite0:{version}@default",
        f"efficientnet-lite0@stretch:{done.key.pipeline_version}",
        thumbnails=2,
    )
    assert result.b == done.key and result.images == 6 and result.labelled == 0
    assert len(result.disagreements) == min(2, 6 - result.agree)
    html = render_html(result)
    assert "No image has ground truth" in html
    assert sum(result.a_hist) == sum(result.b_hist) == 6


def test_the_report_counts_disagreements_in_near_duplicate_groups_or_says_not_computed(
    make_corpus: Callable[..., Corpus], photo_files: list[tuple[str, bytes, dict[str, Any]]]
) -> None:
    corpus = make_corpus(photo_files[:6])
    ids = corpus.ids
    # Run B: a "fake" model that disagrees with the served top-1 on the first five images.
    catalog = Runtime(corpus.settings).open_catalog()
    try:
        for n, image_id in enumerate(ids):
            served = corpus.client.get(f"/v1/images/{image_id}").json()["predictions"][0]
            label = served["top"][0]["label"] if n == 5 else "not a class"
            top = (Label(label, 0, 0.9),)
            record = PredictionRecord("fake", "e" * 64, "default", "v1", top, datetime.now(UTC))
            assert catalog.add_prediction(image_id, record)
    finally:
        catalog.close()
    a, b = "efficientnet-lite0@default", "fake@default"
    alone = compare(corpus.settings, a, b, thumbnails=0)
    assert (alone.images, alone.agree, alone.grouped_disagreements) == (6, 1, None)
    assert alone.summary()["near_duplicates"] == {"disagreements": None, "groups": None}
    assert "In near-duplicate groups: not computed" in render_html(alone)

    # Groups {0, 1} and {2, 3}; 4 is a group of its own; 5 (which agrees) is in none.
    groups = {ids[0]: ids[0], ids[1]: ids[0], ids[2]: ids[2], ids[3]: ids[2], ids[4]: ids[4]}
    result = compare(corpus.settings, a, b, thumbnails=0, groups=groups)
    assert (result.grouped_disagreements, result.disagreeing_groups) == (4, 2)
    assert "<strong>4</strong> of the 5 disagreements" in render_html(result)
    assert result.summary()["near_duplicates"] == {"disagreements": 4, "groups": 2}
