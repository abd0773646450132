"""gc with a grace of 0, rescore, on-demand renditions and uploads, all at once against one
catalog and one blob store, round after round: `imgest fsck --deep` then finds nothing wrong.

Not deterministic like tests/jobs/test_gc_race.py (which puts gc at the exact moment between a
write and its row): here real threads run the entry points' own functions on resources built by
imgest.runtime, the way `imgest serve`, `imgest gc` and `imgest rescore` run side by side, and
gc sweeps in a loop so that it lands between writes and commits many times per round. With the
write path's re-check under the image's lock taken out (imgest.storage.once.restore_missing made
a no-op), this test fails on both catalogs: rows point at renditions gc removed.
"""

from __future__ import annotations

import functools
import io
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from imgest.app import create_app
from imgest.cli import app as cli
from imgest.config import Settings, load_settings
from imgest.jobs import gc, rescore
from imgest.runtime import Runtime
from imgest.scoring.model import Model

ROUNDS = 3
PER_ROUND = 12  # new images uploaded in each round, 36 in all
PIPELINES = ("stretch", "pad")  # rescored and asked for on demand while uploads go on
ROUND_BOUND_S = 120.0  # a round on a loaded 2-core machine takes a few seconds


def _images(count: int, seed: int) -> list[bytes]:
    """`count` distinct small JPEGs: noise over a colour, so each has its own SHA-256."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        img = Image.new("RGB", (96, 72), tuple(rng.randrange(256) for _ in range(3)))
        img.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(96 * 72)])
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=80)
        out.append(buffer.getvalue())
    return out


@dataclass
class Run:
    """What the threads of one round did, and what went wrong in them."""

    settings: Settings
    client: TestClient
    ids: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    leased: int = 0  # unreferenced blobs gc found under a writer's lease, and left alone
    rescored: int = 0
    errors: list[str] = field(default_factory=list)
    uploading: threading.Event = field(default_factory=threading.Event)

    def guarded(self, name: str, work: Callable[[], None]) -> threading.Thread:
        """A started thread running `work`, its exception recorded rather than lost."""

        def body() -> None:
            try:
                work()
            except BaseException as exc:  # a thread's failure must fail the test
                self.errors.append(f"{name}: {exc!r}")

        thread = threading.Thread(target=body, name=name, daemon=True)
        thread.start()
        return thread

    # -- the workers -------------------------------------------------------------------
    def upload(self, batch: list[bytes]) -> None:
        """POST each image (as `imgest upload` does), with a duplicate of an earlier one."""
        try:
            for n, data in enumerate(batch):
                r = self.client.post("/v1/images", files=[("file", (f"{n}.jpg", data))])
                if r.status_code != 201:
                    self.errors.append(f"upload {n}: {r.status_code} {r.text}")
                    continue
                self.ids.append(r.json()["images"][0]["id"])
                again = self.client.post("/v1/images", files=[("file", ("again.jpg", batch[0]))])
                if again.status_code not in (200, 201):
                    self.errors.append(f"duplicate: {again.status_code} {again.text}")
        finally:
            self.uploading.clear()

    def renditions(self) -> None:
        """Ask for renditions on demand (stored on first request) while uploads go on."""
        n = 0
        while self.uploading.is_set():
            if not self.ids:
                time.sleep(0.01)
                continue
            image_id = self.ids[n % len(self.ids)]
            pipeline = PIPELINES[n % len(PIPELINES)]
            r = self.client.get(f"/v1/images/{image_id}/renditions/{pipeline}")
            if r.status_code != 200:
                self.errors.append(f"rendition {pipeline}: {r.status_code} {r.text}")
            n += 1

    def gc(self) -> None:
        """Sweep with a grace of 0, over and over (the function `imgest gc` calls)."""

        async def sweeps() -> None:
            async with Runtime(self.settings).open() as opened:
                while self.uploading.is_set():
                    # `now` a second ahead: a blob written this very tick counts as old too
                    report = await gc.run(
                        opened.store,
                        opened.catalog,
                        grace=timedelta(0),
                        now=datetime.now(UTC) + timedelta(seconds=1),
                        on_delete=lambda meta: self.deleted.append(meta.path),
                    )
                    self.leased += report.leased

        anyio.run(sweeps)

    def rescore(self) -> None:
        """Rescore every image through each pipeline, again while uploads add more."""
        while self.uploading.is_set():
            for pipeline in PIPELINES:
                summary = rescore.run(self.settings, pipeline=pipeline, workers=0, batch_size=4)
                self.rescored += summary.scored
                if summary.failed:
                    self.errors.append(f"rescore {pipeline}: {summary.failed}")


@pytest.fixture
def run(tmp_path: Path, catalog_url: str, model: Model) -> Iterator[Run]:
    settings = load_settings(
        storage_url=str(tmp_path / "blobs"),
        catalog_url=catalog_url,
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings, model=model)) as client:
        yield Run(settings, client)


def test_fsck_deep_is_clean_after_concurrent_gc_rescore_and_uploads(run: Run) -> None:
    for round_ in range(ROUNDS):
        run.uploading.set()
        batch = _images(PER_ROUND, seed=round_)
        threads = [
            run.guarded("gc", run.gc),
            run.guarded("rescore", run.rescore),
            run.guarded("renditions", run.renditions),
            run.guarded("upload", functools.partial(run.upload, batch)),
        ]
        for thread in threads:
            thread.join(ROUND_BOUND_S)
        assert not [t.name for t in threads if t.is_alive()], "a worker is still running"
        checked = CliRunner().invoke(
            cli,
            ["fsck", "--deep"],
            env={
                "IMGEST_STORAGE_URL": run.settings.storage_url,
                "IMGEST_CATALOG_URL": run.settings.catalog_url,
            },
        )
        assert checked.exit_code == 0, checked.output
        assert checked.stdout.endswith(": 0 problem(s)\n"), checked.stdout
        assert run.errors == []  # no upload, rendition or rescore failed on the way
    assert len(set(run.ids)) == ROUNDS * PER_ROUND
    # The race was run, not avoided: gc met blobs that writers had put before their rows
    # committed (left alone under the writer's lease, imgest.storage.once), and rescore did
    # its work.
    assert run.leased and run.rescored
