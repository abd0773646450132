"""Export: labels from ground truth or the model's top-1, renditions made when missing, resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgest.jobs import export, exportdir
from imgest.jobs.exportdir import safe_label
from imgest.labels import Vocabulary
from tests.jobs.conftest import Corpus

Files = list[tuple[str, bytes, dict[str, Any]]]


def manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_missing_renditions_are_made_and_labels_fall_back_to_predictions(
    make_corpus: Callable[..., Corpus], photo_files: Files, tmp_path: Path
) -> None:
    corpus = make_corpus(photo_files[:4])
    corpus.client.patch(f"/v1/images/{corpus.ids[0]}", json={"label": "my cat"})
    out = tmp_path / "set"
    summary = export.run(corpus.settings, pipeline="pad", out=out, min_score=0.0)
    assert (summary.written, summary.rendered, summary.failed) == (4, 4, [])
    assert summary.sources == {"ground_truth": 1, "prediction": 3}
    entries = {m["id"]: m for m in manifest(out)}
    assert entries[corpus.ids[0]]["label"] == "my cat"
    for image_id in corpus.ids[1:]:
        entry = entries[image_id]
        top1 = corpus.client.get(f"/v1/images/{image_id}").json()["predictions"][0]["top"][0]
        assert (entry["class"], entry["label_source"]) == (top1["label"], "prediction")
        assert entry["label"] == top1["label"].split(",")[0]  # the first synonym names it
        assert entry["predicted_through"].startswith("default@")  # no pad prediction exists
        # The exported file is the rendition the API now serves.
        served = corpus.client.get(f"/v1/images/{image_id}/renditions/pad")
        assert served.status_code == 200
        assert (out / entry["path"]).read_bytes() == served.content
    assert (out / "my cat" / f"{corpus.ids[0]}.jpg").is_file()
    again = export.run(corpus.settings, pipeline="pad", out=out, min_score=0.0)
    assert (again.written, again.already, again.rendered) == (0, 4, 0)


def test_an_interrupted_webdataset_export_resumes_at_its_last_whole_shard(
    make_corpus: Callable[..., Corpus],
    photo_files: Files,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    corpus = make_corpus(photo_files[:8])
    out = tmp_path / "wds"
    real = export._Source._rendition
    calls = 0

    def dies_on_the_fifth(self: Any, image: Any) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt  # as if killed while the second shard was open
        return real(self, image)

    monkeypatch.setattr(export._Source, "_rendition", dies_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        export.run(
            corpus.settings,
            pipeline="default",
            out=out,
            format="webdataset",
            shard_size=3,
            min_score=0.0,
        )
    assert [p.name for p in sorted(out.iterdir())] == [
        "classes.txt",
        "manifest.jsonl",
        "shard-000000.tar",
        "shard-000001.tar.partial",
    ]
    assert len(manifest(out)) == 3  # only the finished shard's samples
    monkeypatch.setattr(export._Source, "_rendition", real)
    summary = export.run(
        corpus.settings,
        pipeline="default",
        out=out,
        format="webdataset",
        shard_size=3,
        min_score=0.0,
    )
    assert (summary.written, summary.already) == (5, 3)
    assert sorted(p.name for p in out.glob("shard-*")) == [f"shard-00000{n}.tar" for n in range(3)]
    assert sorted(m["id"] for m in manifest(out)) == sorted(corpus.ids)


def test_labels_become_safe_directory_names() -> None:
    assert safe_label("tabby, tabby cat") == "tabby, tabby cat"
    assert safe_label("../etc/passwd") == "_.._etc_passwd"
    assert safe_label("a/b\\c") == "a_b_c"
    assert safe_label(".hidden") == "_.hidden"


def test_long_labels_fit_a_file_name_and_stay_apart(
    make_corpus: Callable[..., Corpus], photo_files: Files, tmp_path: Path
) -> None:
    # Issue 14 item 10: a 200-emoji label was cut to 120 characters (480 bytes) and the
    # export died on "File name too long". Now cut to 255 bytes, whole code points, unique.
    corpus = make_corpus(photo_files[:2])
    labels = ["😀" * 199 + "a", "😀" * 199 + "b"]
    for image_id, label in zip(corpus.ids, labels, strict=True):
        assert corpus.client.patch(f"/v1/images/{image_id}", json={"label": label}).is_success
    out = tmp_path / "set"
    summary = export.run(corpus.settings, pipeline="default", out=out)
    assert (summary.written, summary.failed) == (2, [])
    directories = [p.name for p in out.iterdir() if p.is_dir()]
    assert len(set(directories)) == 2
    for name in directories:
        assert 250 <= len(name.encode()) <= exportdir.NAME_BYTES
        assert name.startswith("😀" * 60)


@pytest.mark.parametrize("char", ["a", "é", "€", "😀", "e\u0301"])
def test_safe_label_cuts_at_a_code_point_within_the_byte_budget(char: str) -> None:
    for length in range(240, 270):
        name = safe_label(char * length)
        assert len(name.encode()) <= exportdir.NAME_BYTES
        assert name.encode().decode() == name  # valid UTF-8: no code point split
    assert safe_label(char * 300) != safe_label(char * 299 + "x")
    assert safe_label("x\ud800y") == "x_y"


def test_low_scores_are_left_out_and_ground_truth_meets_the_class_names(
    make_corpus: Callable[..., Corpus], photo_files: Files, tmp_path: Path
) -> None:
    corpus = make_corpus(photo_files[:4])
    scores = {
        i: corpus.client.get(f"/v1/images/{i}").json()["predictions"][0]["top"][0]
        for i in corpus.ids
    }
    truth, *rest = corpus.ids
    corpus.client.patch(f"/v1/images/{truth}", json={"label": "Tabby Cat"})
    cut = sorted(scores[i]["score"] for i in rest)[1]  # between the lowest and the others
    out = tmp_path / "set"
    summary = export.run(corpus.settings, pipeline="default", out=out, min_score=cut)
    kept = [i for i in rest if scores[i]["score"] >= cut]
    assert summary.low_score == len(rest) - len(kept) >= 1
    assert summary.written == 1 + len(kept) and summary.mapped == 1
    assert "below" in summary.lines()[0] and "1 mapped" in summary.lines()[1]
    entries = {m["id"]: m for m in manifest(out)}
    assert sorted(entries) == sorted([truth, *kept])
    assert entries[truth]["label"] == "tabby" and entries[truth]["class"] == "tabby, tabby cat"
    assert entries[truth]["ground_truth"] == "Tabby Cat"
    assert (out / "tabby" / f"{truth}.jpg").is_file()
    assert all(entries[i]["score"] >= cut for i in kept)


def test_vocabulary_maps_synonyms_and_keeps_free_text() -> None:
    words = Vocabulary(["tabby, tabby cat", "tiger cat", "crane", "crane, derrick", "Persian cat"])
    assert words.class_of("tabby cat") == "tabby, tabby cat"
    assert words.class_of(" TABBY ") == "tabby, tabby cat"
    assert words.class_of("persian CAT") == "Persian cat"
    assert words.class_of("cat") is None  # not a synonym of any class
    assert words.class_of("crane") is None  # two classes: ambiguous, kept as free text
    assert words.short("tabby, tabby cat") == "tabby" and words.short("tiger cat") == "tiger cat"
    assert words.short("crane, derrick") == "crane, derrick"  # its first synonym is shared
