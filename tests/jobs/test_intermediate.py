"""The intermediate (issue 18, part 1): stored once at ingest, used by on-demand renditions and
rescore where it is large enough (else the original), backfilled by a resumable job, known to
gc and fsck."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PIL import Image, JpegImagePlugin
from typer.testing import CliRunner

from imgest.catalog.records import ImageRecord
from imgest.catalog.repo import Catalog
from imgest.cli import app
from imgest.config import Settings
from imgest.errors import JobError
from imgest.imaging.intermediate import Intermediate
from imgest.jobs import backfill, rescore
from imgest.runtime import Runtime
from imgest.storage.paths import INTERMEDIATE, original_path
from tests.jobs.conftest import PHOTOS, Corpus

LONG_SIDE = 512
# `wide` (two 224 px tiles side by side) needs 448 x 297 px of a 1352 x 896 photo: its decode
# at 3/8 (507 x 336), which the intermediate (its 1/2 decode, 676 x 448) holds at 6/8.
# `tiles2x2` (448 px, 2 x 2 tiles) needs 773 x 512: a full decode, only the original.
PIPELINES = """
[pipelines.wide]
steps = [
  { step = "resize", size = [448, 224], mode = "stretch" },
  { step = "tile", rows = 1, cols = 2, aggregate = "mean" },
]

[pipelines.tiles2x2]
steps = [
  { step = "resize", size = [448, 448], mode = "crop" },
  { step = "tile", rows = 2, cols = 2, aggregate = "mean" },
]
"""
Files = list[tuple[str, bytes, dict[str, Any]]]


def jpeg(img: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="module")
def big_photos(data_dir: Path) -> Files:
    """The real test photos enlarged about 3x to sides that are multiples of 8, as cameras
    write them (1352 x 896 and the like), plus one flipped copy of each: eight distinct
    originals that get a 512 px intermediate."""
    files = []
    for name in PHOTOS:
        with Image.open(data_dir / name) as im:
            rgb = im.convert("RGB")
        size = (rgb.width * 3 // 8 * 8, rgb.height * 3 // 8 * 8)
        big = rgb.resize(size, Image.Resampling.BICUBIC)
        stem = name.removesuffix(".jpg")
        files.append((f"{stem}.jpg", jpeg(big), {"tag": stem}))
        flipped = big.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        files.append((f"{stem}-flip.jpg", jpeg(flipped), {"tag": stem}))
    return files


@pytest.fixture
def pipelines_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipelines.toml"
    path.write_text(PIPELINES)
    return path


@pytest.fixture
def corpus_of(
    make_corpus: Callable[..., Corpus], big_photos: Files, pipelines_file: Path
) -> Callable[..., Corpus]:
    def make(files: Files | None = None, **overrides: Any) -> Corpus:
        settings: dict[str, Any] = {"intermediate": LONG_SIDE, "pipelines_file": pipelines_file}
        return make_corpus(big_photos if files is None else files, **{**settings, **overrides})

    return make


def records(settings: Settings) -> list[ImageRecord]:
    catalog = Catalog.open(settings.catalog_url)
    try:
        return list(catalog.list_images(limit=1000).items)
    finally:
        catalog.close()


def intermediate_blobs(settings: Settings) -> list[Path]:
    return sorted(Path(settings.storage_url, "renditions").glob(f"{INTERMEDIATE}@*/*/*/*.jpg"))


def drop_originals(settings: Settings, ids: list[str]) -> None:
    """Delete the originals' blobs: whatever renders afterwards did not read them."""
    for image_id in ids:
        Path(settings.storage_url, original_path(image_id)).unlink()


def test_ingest_stores_one_intermediate_per_image_and_only_once(
    corpus_of: Callable[..., Corpus], big_photos: Files
) -> None:
    corpus = corpus_of()
    spec = Runtime(corpus.settings).intermediate
    assert spec is not None
    for image_id in corpus.ids:
        body = corpus.client.get(f"/v1/images/{image_id}").json()
        inter = body["renditions"][INTERMEDIATE]
        # The 1/2 DCT decode of a 1352 x 896 photo: 676 x 448.
        assert (inter["width"], inter["height"]) == spec.size_for(body["width"], body["height"])
        assert max(inter["width"], inter["height"]) >= LONG_SIDE
        assert inter["pipeline_version"] == spec.version
        assert inter["source"] == "original"
        assert body["renditions"]["default"]["source"] == "original"
        got = corpus.client.get(inter["url"])
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(got.content)) as im:
            assert im.size == (inter["width"], inter["height"])
    assert len(intermediate_blobs(corpus.settings)) == len(corpus.ids)
    # The same bytes again: nothing new is decoded or stored.
    name, data, _ = big_photos[0]
    again = corpus.client.post("/v1/images", files=[("file", (name, data, "image/jpeg"))])
    assert again.json()["images"][0]["status"] == "existing"
    assert len(intermediate_blobs(corpus.settings)) == len(corpus.ids)
    assert all(len([r for r in rec.renditions if r.pipeline == INTERMEDIATE]) == 1
               for rec in records(corpus.settings))  # fmt: skip


def test_small_originals_get_no_intermediate(
    corpus_of: Callable[..., Corpus], data_dir: Path
) -> None:
    small = [("cat.jpg", (data_dir / "cat.jpg").read_bytes(), {})]  # 451 x 300
    corpus = corpus_of(small)
    body = corpus.client.get(f"/v1/images/{corpus.ids[0]}").json()
    assert INTERMEDIATE not in body["renditions"]
    assert intermediate_blobs(corpus.settings) == []


def test_on_demand_renditions_start_from_the_intermediate_when_it_is_large_enough(
    corpus_of: Callable[..., Corpus],
) -> None:
    corpus = corpus_of()
    drop_originals(corpus.settings, corpus.ids)
    for image_id in corpus.ids:
        got = corpus.client.get(f"/v1/images/{image_id}/renditions/wide")
        assert got.status_code == 200, got.text
        with Image.open(io.BytesIO(got.content)) as im:
            assert im.size == (448, 224)
        body = corpus.client.get(f"/v1/images/{image_id}").json()
        assert body["renditions"]["wide"]["source"] == "intermediate"
    page = corpus.client.get(f"/images/{corpus.ids[0]}")
    assert "from the intermediate" in page.text
    # Too small for tiles2x2: it needs the original, which is gone.
    tiles = corpus.client.get(f"/v1/images/{corpus.ids[0]}/renditions/tiles2x2")
    assert tiles.status_code == 503, tiles.text


def test_on_demand_falls_back_to_the_original(corpus_of: Callable[..., Corpus]) -> None:
    corpus = corpus_of()
    image_id = corpus.ids[0]
    assert corpus.client.get(f"/v1/images/{image_id}/renditions/tiles2x2").status_code == 200
    body = corpus.client.get(f"/v1/images/{image_id}").json()
    assert body["renditions"]["tiles2x2"]["source"] == "original"
    assert body["renditions"]["tiles2x2"]["width"] == 448


def test_intermediates_off_render_from_originals(corpus_of: Callable[..., Corpus]) -> None:
    corpus = corpus_of(intermediate=0)
    assert intermediate_blobs(corpus.settings) == []
    image_id = corpus.ids[0]
    assert corpus.client.get(f"/v1/images/{image_id}/renditions/wide").status_code == 200
    body = corpus.client.get(f"/v1/images/{image_id}").json()
    assert INTERMEDIATE not in body["renditions"]
    assert body["renditions"]["wide"]["source"] == "original"


def top1(settings: Settings, pipeline: str) -> dict[str, str]:
    return {
        rec.id: p.top[0].label
        for rec in records(settings)
        for p in rec.predictions
        if p.pipeline == pipeline
    }


def test_rescore_of_a_new_pipeline_renders_from_intermediates(
    corpus_of: Callable[..., Corpus], tmp_path: Path
) -> None:
    corpus = corpus_of()
    from_originals = rescore.run(
        corpus.settings.model_copy(update={"intermediate": 0}), pipeline="wide", workers=0
    )
    assert from_originals.scored == len(corpus.ids) and not from_originals.failed
    want = top1(corpus.settings, "wide")
    sources = {r.source for rec in records(corpus.settings) for r in rec.renditions
               if r.pipeline == "wide"}  # fmt: skip
    assert sources == {"original"}

    # A second catalog of the same corpus, originals gone: wide can only come from the
    # intermediates, and agrees with the originals' top-1 on these photos.
    other = corpus_of(storage_url=str(tmp_path / "b2"), catalog_url=f"sqlite:///{tmp_path}/2.db")
    drop_originals(other.settings, other.ids)
    summary = rescore.run(other.settings, pipeline="wide", workers=0)
    assert summary.scored == len(other.ids) and not summary.failed, summary.failed
    sources = {r.source for rec in records(other.settings) for r in rec.renditions
               if r.pipeline == "wide"}  # fmt: skip
    assert sources == {"intermediate"}
    assert top1(other.settings, "wide") == want
    # tiles2x2 needs 773 x 512 of the 1352 x 896 cat: a full decode, which its 1/2
    # intermediate cannot stand in for, so it is read from its (missing) original. The others
    # (1536 to 1920 px) are decoded at 1/2 or less for it: their intermediates, whole.
    cats = {rec.id for rec in records(other.settings) if rec.width == 1352}
    assert len(cats) == 2
    tiles = rescore.run(other.settings, pipeline="tiles2x2", workers=0)
    assert tiles.scored == len(other.ids) - len(cats)
    assert {image_id for image_id, _ in tiles.failed} == cats
    assert all("original missing" in reason for _, reason in tiles.failed)


class Interrupted(Exception):
    """What the test raises from on_batch to stop a backfill mid-way (like ^C)."""


def test_backfill_is_resumable(
    corpus_of: Callable[..., Corpus], big_photos: Files, data_dir: Path
) -> None:
    small = ("cat-small.jpg", (data_dir / "cat.jpg").read_bytes(), {})  # 451 px: needs none
    # Neither a PNG nor a JPEG with a side not a multiple of 8 gets one: never pending.
    with Image.open(io.BytesIO(big_photos[0][1])) as im:
        png = io.BytesIO()
        im.save(png, "PNG")
        odd = jpeg(im.resize((1353, 900)))
    others = [("cat-big.png", png.getvalue(), {}), ("cat-odd.jpg", odd, {})]
    corpus = corpus_of([*big_photos, small, *others], intermediate=0)
    assert intermediate_blobs(corpus.settings) == []
    settings = corpus.settings.model_copy(update={"intermediate": LONG_SIDE})

    def stop(summary: backfill.BackfillSummary) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        backfill.run(settings, workers=0, batch_size=3, on_batch=stop)
    assert len(intermediate_blobs(settings)) == 3
    rest = backfill.run(settings, workers=0, batch_size=3)
    assert (rest.pending, rest.made, rest.failed) == (len(big_photos) - 3, len(big_photos) - 3, [])
    assert len(intermediate_blobs(settings)) == len(big_photos)
    done = records(settings)
    assert sum(1 for rec in done for r in rec.renditions if r.pipeline == INTERMEDIATE) == len(
        big_photos
    )
    again = backfill.run(settings, workers=0)
    assert (again.pending, again.made) == (0, 0)
    assert again.lines()[0].startswith("nothing to do")
    # What the backfill stored is what on-demand renditions then start from.
    drop_originals(settings, [rec.id for rec in done if rec.width > LONG_SIDE])
    big = next(rec.id for rec in done if any(r.pipeline == INTERMEDIATE for r in rec.renditions))
    served = corpus.client.app.state.corpus  # type: ignore[attr-defined]
    served.renderer = replace(served.renderer, intermediate=Runtime(settings).intermediate)
    assert corpus.client.get(f"/v1/images/{big}/renditions/wide").status_code == 200


def test_an_older_recipes_intermediate_is_pending_and_not_rendered_from(
    corpus_of: Callable[..., Corpus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images ingested under another recipe (q95 4:4:4, before the default changed) hold an
    intermediate of another version: renditions come from the original, backfill makes the
    current recipe's, and renditions then start from that."""
    old = Intermediate(long_side=LONG_SIDE, quality=95, subsampling="4:4:4", optimize=False)
    with monkeypatch.context() as m:
        m.setattr(Runtime, "intermediate", property(lambda self: old))
        corpus = corpus_of()
    settings = corpus.settings
    new = Runtime(settings).intermediate
    assert new is not None and new.version != old.version
    assert len(intermediate_blobs(settings)) == len(corpus.ids)
    client = corpus_of([]).client  # a server of the same store and catalog, current recipe
    first, second = corpus.ids[:2]
    assert client.get(f"/v1/images/{first}/renditions/wide").status_code == 200
    body = client.get(f"/v1/images/{first}").json()
    assert body["renditions"]["wide"]["source"] == "original"

    summary = backfill.run(settings, workers=0)
    assert (summary.pending, summary.made, summary.failed) == (len(corpus.ids),) * 2 + ([],)
    assert backfill.run(settings, workers=0).pending == 0
    versions = {r.pipeline_version for rec in records(settings) for r in rec.renditions
                if r.pipeline == INTERMEDIATE}  # fmt: skip
    assert versions == {old.version, new.version}
    drop_originals(settings, [second])
    assert client.get(f"/v1/images/{second}/renditions/wide").status_code == 200
    body = client.get(f"/v1/images/{second}").json()
    assert body["renditions"]["wide"]["source"] == "intermediate"
    assert body["renditions"][INTERMEDIATE]["pipeline_version"] == new.version
    blob = client.get(body["renditions"][INTERMEDIATE]["url"])
    with Image.open(io.BytesIO(blob.content)) as im:
        assert isinstance(im, JpegImagePlugin.JpegImageFile)
        assert JpegImagePlugin.get_sampling(im) == {"4:4:4": 0, "4:2:0": 2}[new.subsampling]


def env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "IMGEST_STORAGE_URL": settings.storage_url,
        "IMGEST_CATALOG_URL": settings.catalog_url,
        "IMGEST_PIPELINES_FILE": str(settings.pipelines_file),
        **extra,
    }


def test_backfill_cli_in_worker_processes(corpus_of: Callable[..., Corpus]) -> None:
    corpus = corpus_of(intermediate=0)
    off = CliRunner().invoke(app, ["backfill"], env=env(corpus.settings))
    assert off.exit_code == 2 and "IMGEST_INTERMEDIATE" in off.stderr
    done = CliRunner().invoke(
        app, ["backfill", "--workers", "2", "--batch-size", "3"],
        env=env(corpus.settings, IMGEST_INTERMEDIATE=str(LONG_SIDE)),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert f"made {len(corpus.ids)}, failed 0" in done.stdout
    assert len(intermediate_blobs(corpus.settings)) == len(corpus.ids)


def test_backfill_needs_intermediates_on(corpus_of: Callable[..., Corpus]) -> None:
    corpus = corpus_of(intermediate=0)
    with pytest.raises(JobError, match="IMGEST_INTERMEDIATE"):
        backfill.run(corpus.settings)


def test_gc_keeps_referenced_intermediates_and_fsck_checks_them(
    corpus_of: Callable[..., Corpus],
) -> None:
    corpus = corpus_of()
    settings = corpus.settings
    stored = intermediate_blobs(settings)
    assert len(stored) == len(corpus.ids)
    # An intermediate no row references (a backfill killed before its commit).
    orphan = stored[0].parent.parent.parent / "ff" / "ee" / ("ffee" + "0" * 60 + ".jpg")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(stored[0].read_bytes())
    gc = CliRunner().invoke(app, ["gc", "--grace", "0", "--json"], env=env(settings))
    assert gc.exit_code == 0, gc.output
    report = json.loads(gc.stdout)
    assert report["deleted"] == 1 and not orphan.exists()
    assert intermediate_blobs(settings) == stored  # every referenced one is still there
    clean = CliRunner().invoke(app, ["fsck", "--json"], env=env(settings))
    assert clean.exit_code == 0, clean.output
    blobs = json.loads(clean.stdout)["blobs"]
    assert blobs == 3 * len(corpus.ids)  # original, default rendition, intermediate
    stored[1].unlink()
    broken = CliRunner().invoke(app, ["fsck", "--json"], env=env(settings))
    assert broken.exit_code == 1
    problems = json.loads(broken.stdout)["problems"]
    assert [(p["kind"], p["path"]) for p in problems] == [
        ("missing", str(stored[1].relative_to(settings.storage_url)))
    ]


# --- rescore --decode cuda (issue 18, part 3): refused without a GPU; the plumbing ---------


def test_decode_cuda_without_nvimagecodec_exits_2_with_one_sentence(
    corpus_of: Callable[..., Corpus],
) -> None:
    corpus = corpus_of()
    result = CliRunner().invoke(
        app, ["rescore", "--pipeline", "wide", "--decode", "cuda"], env=env(corpus.settings)
    )
    assert result.exit_code == 2, result.output
    assert "nvImageCodec" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    bad = CliRunner().invoke(
        app, ["rescore", "--pipeline", "wide", "--decode", "tpu"], env=env(corpus.settings)
    )
    assert bad.exit_code == 2 and "--decode" in bad.stderr


class _FakeImage:
    def __init__(self, pixels: Any) -> None:
        self.pixels = pixels

    def cpu(self) -> Any:
        return self.pixels


class _FakeDecoder:
    """nvImageCodec's Decoder as far as imgest uses it, decoding with Pillow on the CPU."""

    calls: ClassVar[list[int]] = []

    def __init__(self, device_id: int = 0) -> None:
        pass

    def decode(self, blobs: list[bytes], params: Any = None) -> list[_FakeImage | None]:
        import numpy as np
        from PIL import ImageOps

        self.calls.append(len(blobs))
        out: list[_FakeImage | None] = []
        for blob in blobs:
            with Image.open(io.BytesIO(blob)) as im:
                out.append(_FakeImage(np.asarray(ImageOps.exif_transpose(im).convert("RGB"))))
        return out


def test_decode_cuda_plumbing_with_a_stand_in_decoder(
    corpus_of: Callable[..., Corpus], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    corpus = corpus_of(intermediate=0)
    cpu = rescore.run(corpus.settings, pipeline="tiles2x2", workers=0)
    want = top1(corpus.settings, "tiles2x2")
    fake = types.ModuleType("nvidia.nvimgcodec")
    fake.Decoder = _FakeDecoder  # type: ignore[attr-defined]
    fake.DecodeParams = lambda **kw: kw  # type: ignore[attr-defined]
    fake.ColorSpec = types.SimpleNamespace(RGB="rgb")  # type: ignore[attr-defined]
    package = types.ModuleType("nvidia")
    package.nvimgcodec = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nvidia", package)
    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", fake)
    _FakeDecoder.calls.clear()
    other = corpus_of(storage_url=str(corpus.settings.storage_url) + "-gpu",
                      catalog_url=corpus.settings.catalog_url.replace(".db", "-gpu.db"),
                      intermediate=0)  # fmt: skip
    gpu = rescore.run(other.settings, pipeline="tiles2x2", workers=0, decode="cuda")
    assert gpu.scored == cpu.scored == len(corpus.ids) and not gpu.failed
    assert sum(_FakeDecoder.calls) == len(corpus.ids)  # every original went to the "GPU"
    assert top1(other.settings, "tiles2x2") == want
