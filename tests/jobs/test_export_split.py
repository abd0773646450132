"""Export --split: deterministic by seed, groups kept whole, shares within tolerance, per-split
class counts, and splits that do not move when images are added."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imgest.cli import app
from imgest.errors import JobError
from imgest.exits import EXIT_USAGE
from imgest.jobs import export
from imgest.jobs.exportdir import Split
from tests.jobs.conftest import Corpus

Files = list[tuple[str, bytes, dict[str, Any]]]
SPLIT = "train=0.8,val=0.1,test=0.1"


def ids(n: int, start: int = 0) -> list[str]:
    return [f"{i:064x}" for i in range(start, start + n)]


def test_split_parses_names_and_shares_and_refuses_bad_ones() -> None:
    split = Split.parse(" train=0.8, val=0.1,test=0.1", seed=7)
    assert (split.names, split.shares, split.seed) == (("train", "val", "test"), (0.8, 0.1, 0.1), 7)
    assert str(split) == SPLIT
    for bad in (
        "train=0.8,val=0.1",  # adds up to 0.9
        "train=0.8,train=0.2",
        "train=1.2,val=-0.2",
        "train=0,val=1",
        "train",
        "Train=1",
        "../x=1",
        "train=abc",
        "",
    ):
        with pytest.raises(JobError):
            Split.parse(bad)


def test_the_same_seed_gives_the_same_split_and_another_seed_another() -> None:
    groups = ids(2000)
    first = [Split.parse(SPLIT, seed=1).of(g) for g in groups]
    assert first == [Split.parse(SPLIT, seed=1).of(g) for g in groups]
    other = [Split.parse(SPLIT, seed=2).of(g) for g in groups]
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 400


def test_shares_are_met_within_tolerance() -> None:
    n = 20_000
    counts = Counter(Split.parse(SPLIT, seed=3).of(g) for g in ids(n))
    # Binomial standard deviation at n=20000: 0.28 % for 0.8, 0.21 % for 0.1; allow ~5 sigma.
    assert abs(counts["train"] / n - 0.8) < 0.015
    assert abs(counts["val"] / n - 0.1) < 0.01
    assert abs(counts["test"] / n - 0.1) < 0.01


def test_adding_groups_never_moves_existing_ones() -> None:
    split = Split.parse(SPLIT, seed=5)
    before = {g: split.of(g) for g in ids(500)}
    after = {g: split.of(g) for g in ids(1500)}  # 1000 more groups
    assert {g: after[g] for g in before} == before


def labels_of(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_export_keeps_groups_in_one_split_counts_classes_and_stays_put_when_images_come(
    make_corpus: Callable[..., Corpus], photo_files: Files, tmp_path: Path
) -> None:
    # Two photos, four variants each (flips, crops, ...): near-duplicate groups of four.
    files = photo_files[0:4] + photo_files[8:12]
    corpus = make_corpus(files)
    cat, coffee = corpus.ids[:4], corpus.ids[4:]
    groups = {i: min(cat) for i in cat} | {i: min(coffee) for i in coffee}
    for image_id in cat[:2]:
        assert corpus.client.patch(f"/v1/images/{image_id}", json={"label": "Tabby Cat"}).is_success
    split = Split.parse(SPLIT, seed=11)
    out = tmp_path / "set"
    summary = export.run(
        corpus.settings, pipeline="default", out=out, split=split, groups=groups, min_score=0
    )
    assert (summary.written, summary.failed) == (8, [])
    entries = labels_of(out)
    by_id = {e["id"]: e for e in entries}
    for members in (cat, coffee):  # each group whole in its group's split
        assert {by_id[i]["split"] for i in members} == {split.of(min(members))}
        for i in members:
            e = by_id[i]
            assert e["path"].startswith(f"{e['split']}/")
            assert (out / e["path"]).is_file()
            assert e.get("group", i) == min(members)
    # Ground truth goes through the model's vocabulary: "Tabby Cat" is the class "tabby".
    assert {by_id[i]["label"] for i in cat[:2]} == {"tabby"}
    want = {n: Counter(e["label"] for e in entries if e["split"] == n) for n in split.names}
    assert {n: summary.counts.get(n, Counter()) for n in split.names} == want
    written = json.loads((out / "split.json").read_text())
    assert (written["split"], written["seed"]) == (SPLIT, 11)
    assert written["counts"] == {n: dict(c) for n, c in want.items()}
    lines = "\n".join(summary.lines())
    assert "split train=0.8,val=0.1,test=0.1 (seed 11), groups: 2 given" in lines
    assert "tabby" in lines and "images" in lines

    # The same seed into another directory: the same split; and a rerun writes nothing new.
    again = export.run(
        corpus.settings, pipeline="default", out=out, split=split, groups=groups, min_score=0
    )
    assert (again.written, again.already) == (0, 8)
    assert again.counts == summary.counts
    with pytest.raises(JobError, match="seed 11"):
        export.run(corpus.settings, pipeline="default", out=out, split=Split.parse(SPLIT, 12))
    with pytest.raises(JobError, match="split export"):
        export.run(corpus.settings, pipeline="default", out=out)

    # More images come (another photo's variants): the first eight keep their splits.
    more = make_corpus(photo_files[16:20])
    new_out = tmp_path / "later"
    export.run(
        more.settings, pipeline="default", out=new_out, split=split, groups=groups, min_score=0
    )
    later = {e["id"]: e["split"] for e in labels_of(new_out)}
    assert len(later) == 12
    assert {i: later[i] for i in by_id} == {i: e["split"] for i, e in by_id.items()}


def test_min_score_leaves_out_unsure_predictions_before_splitting(
    make_corpus: Callable[..., Corpus], photo_files: Files, tmp_path: Path
) -> None:
    corpus = make_corpus(photo_files[0:3])
    split = Split.parse("a=0.5,b=0.5", seed=1)
    summary = export.run(
        corpus.settings, pipeline="default", out=tmp_path / "x", split=split, min_score=1.0
    )
    # No prediction scores 1.0 and nothing has ground truth: nothing is exported.
    assert (summary.written, summary.low_score) == (0, 3)
    assert sum(sum(c.values()) for c in summary.counts.values()) == 0
    # The bundled model records embeddings at upload, so the groups are its near-duplicates.
    assert summary.groups.startswith("near-duplicates of efficientnet-lite0@")


def test_the_cli_splits_by_the_near_duplicate_groups_of_the_stored_embeddings(
    make_corpus: Callable[..., Corpus], photo_files: Files, tmp_path: Path
) -> None:
    # The original, a mirror image and a centre crop of two photos: each photo's three copies
    # are near-duplicates by the embeddings the bundled model recorded at upload.
    files = [photo_files[i] for i in (0, 1, 4, 8, 9, 12)]
    corpus = make_corpus(files)
    env = {
        "IMGEST_STORAGE_URL": corpus.settings.storage_url,
        "IMGEST_CATALOG_URL": corpus.settings.catalog_url,
    }
    args = ["--pipeline", "default", "--min-score", "0", "--split", "a=0.5,b=0.5", "--seed", "3"]
    out = tmp_path / "grouped"
    result = CliRunner().invoke(app, ["export", str(out), *args], env=env)
    assert result.exit_code == 0, result.output
    assert "groups: near-duplicates of efficientnet-lite0@" in result.stdout
    entries = {e["id"]: e for e in labels_of(out)}
    assert set(entries) == set(corpus.ids)
    photos = [corpus.ids[0:3], corpus.ids[3:6]]
    groups = [{entries[i].get("group", i) for i in ids} for ids in photos]
    assert [len(g) for g in groups] == [1, 1]  # each photo's copies: one group
    assert groups[0] != groups[1]  # and two photos, two groups
    for ids in photos:
        assert len({entries[i]["split"] for i in ids}) == 1


def test_a_bad_split_is_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "o"), "--pipeline", "default", "--split", "train=0.5"]
    )
    assert result.exit_code == EXIT_USAGE, result.output
    assert "add up to 0.5, not 1" in result.output
