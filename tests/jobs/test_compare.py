"""Compare: naming runs, resolving them against the catalog, label matching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from imgest.errors import JobError
from imgest.jobs import rescore
from imgest.jobs.compare import RunRef, compare, label_matches
from imgest.jobs.report import render_html
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
