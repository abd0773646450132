"""Done-when for corpus jobs: a corpus of real photos is ingested through the API, rescored
with a tiling pipeline on both engines (same predictions), compared, and exported; a rerun
of the rescore does nothing."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tarfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imgest.catalog.repo import Catalog
from imgest.cli import app
from imgest.config import Settings
from imgest.jobs import rescore
from imgest.jobs.compare import label_matches
from imgest.jobs.exportdir import safe_label
from tests.jobs.conftest import Corpus

TILES = """
[pipelines.tiles2x2]
steps = [
  { step = "resize", size = [448, 448], mode = "crop" },
  { step = "tile", rows = 2, cols = 2, aggregate = "mean" },
]
"""
TRUTH = {"cat": "tabby cat", "coffee": "espresso"}  # astronaut and rocket stay unlabelled
Top = list[tuple[str, float]]


def api_predictions(corpus: Corpus) -> dict[str, dict[str, Top]]:
    """image id -> pipeline -> top-k, as GET /v1/images/{id} reports them."""
    out = {}
    for image_id in corpus.ids:
        body = corpus.client.get(f"/v1/images/{image_id}").json()
        out[image_id] = {
            p["pipeline"]: [(t["label"], t["score"]) for t in p["top"]] for p in body["predictions"]
        }
    return out


def catalog_predictions(settings: Settings, pipeline: str) -> dict[str, Top]:
    catalog = Catalog.open(settings.catalog_url)
    try:
        page = catalog.list_images(limit=1000)
        return {
            image.id: [(t.label, t.score) for t in p.top]
            for image in page.items
            for p in image.predictions
            if p.pipeline == pipeline
        }
    finally:
        catalog.close()


def copy_of(settings: Settings, root: Path) -> Settings:
    """Settings for a byte-for-byte copy of a corpus's store and catalog."""
    shutil.copytree(settings.storage_url, root / "blobs")
    source = sqlite3.connect(settings.catalog_url.removeprefix("sqlite:///"))
    target = sqlite3.connect(root / "catalog.db")
    source.backup(target)  # WAL included: a file copy could miss the last commits
    source.close()
    target.close()
    return settings.model_copy(
        update={"storage_url": str(root / "blobs"), "catalog_url": f"sqlite:///{root}/catalog.db"}
    )


def cli(settings: Settings, *args: str) -> Any:
    env = {"IMGEST_STORAGE_URL": settings.storage_url, "IMGEST_CATALOG_URL": settings.catalog_url}
    env["IMGEST_PIPELINES_FILE"] = str(settings.pipelines_file)
    return CliRunner().invoke(app, list(args), env=env)


def test_corpus_rescored_on_both_engines_compared_and_exported(
    make_corpus: Callable[..., Corpus],
    photo_files: list[tuple[str, bytes, dict[str, Any]]],
    ray_local: Any,
    tmp_path: Path,
) -> None:
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text(TILES)
    corpus = make_corpus(photo_files, pipelines_file=pipelines)
    assert len(set(corpus.ids)) == 32
    photo = {i: name.split("-")[0] for i, (name, _, _) in zip(corpus.ids, photo_files, strict=True)}
    for image_id, name in photo.items():
        if name in TRUTH:
            r = corpus.client.patch(f"/v1/images/{image_id}", json={"label": TRUTH[name]})
            assert r.status_code == 200, r.text
    (tmp_path / "ray").mkdir()
    ray_settings = copy_of(corpus.settings, tmp_path / "ray")

    # Rescore through the tiling pipeline: local process pool here, Ray on the copy.
    result = cli(corpus.settings, "rescore", "--pipeline", "tiles2x2", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "scored 32, skipped 0, failed 0 of 32 matching images" in result.stdout
    on_ray = rescore.run(ray_settings, pipeline="tiles2x2", engine="ray", workers=2, batch_size=4)
    assert (on_ray.scored, on_ray.failed, on_ray.engine) == (32, [], "ray")

    # Both engines: the same top-k labels, scores within 1e-5, for every image.
    local = catalog_predictions(corpus.settings, "tiles2x2")
    ray = catalog_predictions(ray_settings, "tiles2x2")
    assert sorted(local) == sorted(ray) == sorted(corpus.ids)
    for image_id in corpus.ids:
        assert [label for label, _ in local[image_id]] == [label for label, _ in ray[image_id]]
        assert [s for _, s in local[image_id]] == pytest.approx(
            [s for _, s in ray[image_id]], abs=1e-5
        )

    # A rerun does nothing, and says so.
    again = cli(corpus.settings, "rescore", "--pipeline", "tiles2x2", "--workers", "2")
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("nothing to do: all 32 matching images have")
    assert rescore.run(ray_settings, pipeline="tiles2x2", engine="ray").scored == 0

    # Compare default (ingest) with tiles2x2: numbers computed here from the API's answers.
    seen = api_predictions(corpus)
    agree = sum(seen[i]["default"][0][0] == seen[i]["tiles2x2"][0][0] for i in corpus.ids)
    labelled = [i for i in corpus.ids if photo[i] in TRUTH]
    right = sum(label_matches(TRUTH[photo[i]], seen[i]["tiles2x2"][0][0]) for i in labelled)
    report, summary = tmp_path / "compare.html", tmp_path / "compare.json"
    result = cli(
        corpus.settings,
        "compare",
        "efficientnet-lite0@default",
        "efficientnet-lite0@tiles2x2",
        "--html",
        str(report),
        "--json",
        str(summary),
    )
    assert result.exit_code == 0, result.output
    html = report.read_text()
    assert f"<span class=big id=agreement>{agree / 32:.2%}</span>" in html
    assert f"<td id=accuracy-b>{right / len(labelled):.2%}</td>" in html
    assert "http://" not in html and "https://" not in html and "<svg" in html
    assert html.count("data:image/jpeg;base64,") == 32 - agree  # one thumbnail per disagreement
    numbers = json.loads(summary.read_text())
    assert (numbers["images"], numbers["agree"], numbers["labelled"]) == (32, agree, 16)
    assert sum(map(sum, numbers["matrix"]["counts"])) == 32

    # Export the tiles2x2 renditions, both formats; then again: nothing new is written.
    for fmt in ("imagefolder", "webdataset"):
        out = tmp_path / fmt
        # --min-score 0: every image, however unsure its top-1 (the default leaves those out).
        args = ["export", str(out), "--pipeline", "tiles2x2", "--format", fmt, "--min-score", "0"]
        result = cli(corpus.settings, *args, "--shard-size", "10")
        assert result.exit_code == 0, result.output
        assert f"exported 32 images to {out} ({fmt}); 0 were already there" in result.stdout
        manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert sorted(m["id"] for m in manifest) == sorted(corpus.ids)
        for m in manifest:
            if photo[m["id"]] in TRUTH:
                assert (m["ground_truth"], m["label_source"]) == (
                    TRUTH[photo[m["id"]]],
                    "ground_truth",
                )
            else:
                assert (m["class"], m["label_source"]) == (
                    seen[m["id"]]["tiles2x2"][0][0],
                    "prediction",
                )
        if fmt == "imagefolder":
            files = sorted(out.glob("*/*.jpg"))
            assert len(files) == 32
            assert Counter(f.parent.name for f in files) == Counter(
                safe_label(m["label"]) for m in manifest
            )
        else:
            shards = sorted(out.glob("shard-*.tar"))
            assert [s.name for s in shards] == [f"shard-{n:06d}.tar" for n in range(4)]
            classes = (out / "classes.txt").read_text().splitlines()
            labels = {m["id"]: m["label"] for m in manifest}
            samples = 0
            for shard in shards:
                with tarfile.open(shard) as tar:
                    names = tar.getnames()
                    for name in names:
                        if name.endswith(".cls"):
                            member = tar.extractfile(name)
                            assert member is not None
                            key = name.removesuffix(".cls")
                            assert classes[int(member.read())] == labels[key]
                            assert f"{key}.jpg" in names and f"{key}.json" in names
                            samples += 1
            assert samples == 32
        rerun = cli(corpus.settings, *args)
        assert rerun.exit_code == 0, rerun.output
        assert "exported 0 images" in rerun.stdout and "32 were already there" in rerun.stdout
