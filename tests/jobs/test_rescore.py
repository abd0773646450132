"""Rescore: every image lacking the prediction gets it, once; same answers as ingest; resumable."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from imgest.catalog.records import PredictionKey
from imgest.catalog.repo import Catalog, ImageFilter
from imgest.cli import app
from imgest.errors import DeviceUnavailable, JobError
from imgest.imaging.pipeline import Rendition
from imgest.jobs import rescore
from imgest.jobs.scorer import BatchScorer, WorkItem
from imgest.scoring.model import BUNDLED_DIR, Model
from imgest.storage import local
from imgest.storage.local import LocalStore
from tests.jobs.conftest import Corpus

Files = list[tuple[str, bytes, dict[str, Any]]]


def predictions(corpus: Corpus, pipeline: str) -> dict[str, list[tuple[str, float]]]:
    """image id -> top-k (label, score) of the `pipeline` prediction."""
    catalog = Catalog.open(corpus.settings.catalog_url)
    try:
        out = {}
        for image_id in corpus.ids:
            record = catalog.get_image(image_id)
            assert record is not None
            for p in record.predictions:
                if p.pipeline == pipeline:
                    out[image_id] = [(t.label, t.score) for t in p.top]
        return out
    finally:
        catalog.close()


def test_rescore_matches_what_ingest_scores_and_reruns_do_nothing(
    make_corpus: Callable[..., Corpus], photo_files: Files, tmp_path: Path
) -> None:
    files = photo_files[::4]  # 8 images, two variants of each photo
    corpus = make_corpus(files)
    seen: list[int] = []
    summary = rescore.run(
        corpus.settings,
        pipeline="stretch",
        workers=0,
        batch_size=3,
        on_batch=lambda s: seen.append(s.scored),
    )
    assert (summary.matched, summary.pending, summary.scored, summary.failed) == (8, 8, 8, [])
    assert seen == [3, 6, 8]  # after each batch of 3 is recorded
    assert [done for _, done in summary.marks] == [3, 6, 8]
    # The same images ingested by a server whose pipeline is `stretch` got the same top-k.
    reference = make_corpus(
        files, pipeline="stretch", catalog_url=f"sqlite:///{tmp_path / 'ref.db'}"
    )
    assert predictions(corpus, "stretch") == predictions(reference, "stretch")
    # Its renditions were stored and recorded: the API serves them.
    r = corpus.client.get(f"/v1/images/{corpus.ids[0]}/renditions/stretch")
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    again = rescore.run(corpus.settings, pipeline="stretch", workers=0)
    assert (again.pending, again.scored, again.skipped) == (0, 0, 8)
    assert again.lines()[0].startswith("nothing to do: all 8 matching images have")


def test_a_stored_rendition_is_not_encoded_again(
    make_corpus: Callable[..., Corpus], photo_files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    encodes: list[int] = []
    encode = Rendition.encode

    def counted(self: Rendition) -> bytes:
        encodes.append(1)
        return encode(self)

    corpus = make_corpus(photo_files[:2])
    monkeypatch.setattr(Rendition, "encode", counted)
    catalog = Catalog.open(corpus.settings.catalog_url)
    try:
        spec = rescore.scorer_spec(corpus.settings, catalog, None, "stretch", "cpu")
        page = next(catalog.image_pages(spec.pipeline.name, spec.pipeline.version))
    finally:
        catalog.close()
    scorer = BatchScorer.from_spec(spec)
    try:
        fresh = scorer.score([WorkItem(p.id, p.original_path, True) for p in page])
        assert len(encodes) == 2
        again = scorer.score([WorkItem(p.id, p.original_path, False) for p in page])
        assert len(encodes) == 2  # the catalog has these renditions: no JPEG made for them
    finally:
        scorer.close()
    assert all(o.rendition is not None and o.rendition.bytes > 0 for o in fresh)
    assert all(o.rendition is None and o.error is None for o in again)
    assert [o.top for o in again] == [o.top for o in fresh]


def test_steady_rate_leaves_out_the_start_and_the_tail() -> None:
    key = PredictionKey("m", "v" * 64, "p", "1")
    summary = rescore.RescoreSummary(key=key, engine="ray", workers=2, matched=100, pending=100)
    # 5 s of start-up before the first batch, then 10 images a second, then a slow tail.
    summary.marks = [(5.0 + i, 10 * (i + 1)) for i in range(9)] + [(20.0, 100)]
    assert summary.steady_rate == pytest.approx(10.0)  # from 10 images (5 s) to 90 (13 s)
    assert summary.rate == 0.0  # nothing recorded as scored or elapsed yet
    summary.marks = [(3.0, 100)]  # one batch: no stretch to measure
    assert summary.steady_rate == 0.0


def test_process_pool_gives_the_same_predictions_as_one_process(
    make_corpus: Callable[..., Corpus], photo_files: Files, tmp_path: Path
) -> None:
    files = photo_files[1::5]
    inline = make_corpus(files)
    rescore.run(inline.settings, pipeline="pad", workers=0)
    pooled = make_corpus(files, catalog_url=f"sqlite:///{tmp_path / 'pool.db'}")
    summary = rescore.run(pooled.settings, pipeline="pad", workers=2, batch_size=2)
    assert summary.scored == len(files) and summary.engine == "local"
    assert predictions(pooled, "pad") == predictions(inline, "pad")
    assert len(predictions(pooled, "pad")) == len(files)


def test_where_narrows_the_corpus(make_corpus: Callable[..., Corpus], photo_files: Files) -> None:
    corpus = make_corpus(photo_files[:16])  # cat and coffee, 8 variants each
    summary = rescore.run(corpus.settings, pipeline="pad", workers=0, where=ImageFilter(tag="flip"))
    assert (summary.matched, summary.scored) == (2, 2)
    done = predictions(corpus, "pad")
    assert sorted(done) == sorted(corpus.ids[i] for i in (1, 9))
    rest = rescore.run(corpus.settings, pipeline="pad", workers=0)
    assert (rest.matched, rest.pending, rest.scored, rest.skipped) == (16, 14, 14, 2)


def test_a_missing_original_fails_that_image_only(
    make_corpus: Callable[..., Corpus], photo_files: Files
) -> None:
    corpus = make_corpus(photo_files[:3])
    record = Catalog.open(corpus.settings.catalog_url).get_image(corpus.ids[1])
    assert record is not None
    (Path(corpus.settings.storage_url) / record.original_path).unlink()
    summary = rescore.run(corpus.settings, pipeline="stretch", workers=0)
    assert summary.scored == 2
    assert summary.failed == [
        (corpus.ids[1], f"original missing from storage: {record.original_path}")
    ]
    assert any(
        line.startswith(f"failed {corpus.ids[1]}: original missing") for line in summary.lines()
    )
    # Failed images are still pending: the next run tries them again.
    assert rescore.run(corpus.settings, pipeline="stretch", workers=0).pending == 1


def test_a_failed_rendition_flush_fails_its_batch_and_records_nothing(
    make_corpus: Callable[..., Corpus], photo_files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = make_corpus(photo_files[:3])

    def syncfs(fd: int) -> None:  # the disk fails the batch's group commit
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(LocalStore, "_group_commit", True)
    monkeypatch.setattr(local, "syncfs", syncfs)
    summary = rescore.run(corpus.settings, pipeline="stretch", workers=0, batch_size=3)
    assert summary.scored == 0 and len(summary.failed) == 3
    assert all(reason.startswith("storage error: ") for _, reason in summary.failed)
    assert all("Input/output error" in reason for _, reason in summary.failed)
    assert _rows(corpus.settings.catalog_url, "stretch") == 0
    monkeypatch.undo()
    again = rescore.run(corpus.settings, pipeline="stretch", workers=0)
    assert (again.pending, again.scored) == (3, 3)  # nothing was recorded: all redone


def _rows(catalog_url: str, pipeline: str) -> int:
    engine = create_engine(catalog_url)
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM predictions WHERE pipeline = :p"), {"p": pipeline}
        ).scalar_one()
    engine.dispose()
    return int(n)


def test_a_worker_that_cannot_start_fails_the_job_instead_of_hanging(
    make_corpus: Callable[..., Corpus], photo_files: Files, tmp_path: Path
) -> None:
    # A script without a __main__ guard: each spawned worker re-runs it on import, which
    # multiprocessing refuses, so the worker dies before it reads its start-up data.
    corpus = make_corpus(photo_files[:2])
    script = tmp_path / "no_main_guard.py"
    script.write_text(
        "from imgest.config import load_settings\n"
        "from imgest.jobs import rescore\n"
        f"settings = load_settings(storage_url={corpus.settings.storage_url!r}, "
        f"catalog_url={corpus.settings.catalog_url!r})\n"
        "rescore.run(settings, pipeline='stretch', workers=1)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode != 0
    assert "JobError: a rescore worker process died" in done.stderr
    assert "bootstrapping phase" in done.stderr  # the worker's own complaint, shown above


def test_killed_rescore_resumes_without_redoing_work(
    make_corpus: Callable[..., Corpus], photo_files: Files
) -> None:
    corpus = make_corpus(photo_files[:20])
    env = {
        **os.environ,
        "IMGEST_STORAGE_URL": corpus.settings.storage_url,
        "IMGEST_CATALOG_URL": corpus.settings.catalog_url,
    }
    command = [sys.executable, "-m", "imgest.cli", "rescore", "--pipeline", "pad"]
    child = subprocess.Popen(
        [*command, "--workers", "0", "--batch-size", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while _rows(corpus.settings.catalog_url, "pad") < 3 and time.monotonic() < deadline:
        assert child.poll() is None, "rescore finished before it could be killed"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    done = _rows(corpus.settings.catalog_url, "pad")
    assert 3 <= done < 20
    result = CliRunner().invoke(
        app,
        ["rescore", "--pipeline", "pad", "--workers", "0"],
        env={k: env[k] for k in ("IMGEST_STORAGE_URL", "IMGEST_CATALOG_URL")},
    )
    assert result.exit_code == 0, result.output
    assert f"scored {20 - done}, skipped {done}, failed 0 of 20" in result.stdout
    assert _rows(corpus.settings.catalog_url, "pad") == 20


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="this onnxruntime has a CUDA provider (tests/jobs/test_gpu.py covers it)",
)
def test_cuda_without_a_cuda_onnxruntime_is_a_clear_error(
    make_corpus: Callable[..., Corpus], photo_files: Files
) -> None:
    with pytest.raises(DeviceUnavailable, match="no CUDA provider"):
        Model(BUNDLED_DIR, device="cuda")
    corpus = make_corpus(photo_files[:1])
    result = CliRunner().invoke(
        app,
        ["rescore", "--pipeline", "pad", "--device", "cuda"],
        env={
            "IMGEST_STORAGE_URL": corpus.settings.storage_url,
            "IMGEST_CATALOG_URL": corpus.settings.catalog_url,
        },
    )
    assert result.exit_code == 2
    assert "device cuda asked for" in result.stderr and "onnxruntime-gpu" in result.stderr


def test_bad_requests_are_refused_before_any_work(
    make_corpus: Callable[..., Corpus], photo_files: Files
) -> None:
    corpus = make_corpus(photo_files[:1])
    with pytest.raises(JobError, match="unknown pipeline 'nope'"):
        rescore.run(corpus.settings, pipeline="nope")
    with pytest.raises(JobError, match="No registered model matches 'other'"):
        rescore.run(corpus.settings, pipeline="pad", model="other")
    memory = corpus.settings.model_copy(update={"storage_url": "memory://"})
    with pytest.raises(JobError, match="memory://"):
        rescore.run(memory, pipeline="pad")
    env = {
        "IMGEST_STORAGE_URL": corpus.settings.storage_url,
        "IMGEST_CATALOG_URL": corpus.settings.catalog_url,
    }
    args = ["rescore", "--pipeline", "pad", "--where", "colour=red"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2 and "bad --where 'colour=red'" in result.stderr


@pytest.mark.parametrize("pending", [1, 0], ids=["work to do", "nothing to do"])
def test_engine_ray_without_ray_installed_is_one_line_exit_2(
    make_corpus: Callable[..., Corpus],
    photo_files: Files,
    monkeypatch: pytest.MonkeyPatch,
    pending: int,
) -> None:
    corpus = make_corpus(photo_files[:1])
    if not pending:
        rescore.run(corpus.settings, pipeline="pad", workers=0)
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(
        app,
        ["rescore", "--pipeline", "pad", "--engine", "ray"],
        env={
            "IMGEST_STORAGE_URL": corpus.settings.storage_url,
            "IMGEST_CATALOG_URL": corpus.settings.catalog_url,
        },
    )
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "imgest: --engine ray needs Ray, which is not installed (no module 'ray'): "
        "pip install 'imgest[ray]', or use --engine local\n"
    )
    assert result.stdout == ""


def test_rescore_fills_the_embeddings_a_corpus_lacks_on_a_pool(
    make_corpus: Callable[..., Corpus], photo_files: Files
) -> None:
    """A corpus stored before embeddings were recorded: its predictions are there, its
    embeddings are not; rescore (process pool) records them, the same as ingest does."""
    from sqlalchemy import delete

    from imgest.catalog.models import EmbeddingRow
    from imgest.similarity.vectors import from_bytes

    files = photo_files[::6]
    corpus = make_corpus(files)
    catalog = Catalog.open(corpus.settings.catalog_url)
    try:
        recorded = {e.image_id: e for e in catalog.embeddings_since(Model.bundled().version)}
        assert set(recorded) == set(corpus.ids)  # ingest recorded one per image
        with catalog.writing() as session:
            session.execute(delete(EmbeddingRow))
        summary = rescore.run(corpus.settings, workers=2, batch_size=2)
        assert summary.embedded and summary.pending == len(files)
        assert (summary.scored, summary.failed) == (len(files), [])
        filled = {e.image_id: e for e in catalog.embeddings_since(Model.bundled().version)}
        assert set(filled) == set(corpus.ids)
        for image_id, e in filled.items():
            ingested = from_bytes(recorded[image_id].vector, 1280)
            assert float(from_bytes(e.vector, e.dim) @ ingested) > 0.9999
        again = rescore.run(corpus.settings, workers=0)
        assert (again.pending, again.scored) == (0, 0)
    finally:
        catalog.close()


def test_outcomes_carry_the_embedding_through_json() -> None:
    """How Ray actors hand outcomes back: the float16 bytes survive."""
    from imgest.jobs.scorer import Outcome

    outcome = Outcome("a" * 64, embedding=bytes(range(256)) * 10)
    assert Outcome.from_json(outcome.to_json()) == outcome
    assert Outcome.from_json(Outcome("b" * 64).to_json()).embedding is None
