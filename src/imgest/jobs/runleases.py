"""A corpus job's write leases (rescore, backfill): one holder per run, a lease taken on each
batch's blob paths before the workers store them, spent as the batch is recorded, what is left
dropped at the end. The protocol is `imgest.storage.once`'s; this is its batch form, for a
driver whose workers store the blobs and whose own transaction records the rows."""

from __future__ import annotations

import logging
import time
import uuid

from imgest.catalog.leases import Lease
from imgest.catalog.repo import Catalog
from imgest.errors import ImgestError, StorageUnavailable

log = logging.getLogger(__name__)


class RunLeases:
    """The driver's write leases: one holder for the run, a lease taken on each batch's
    rendition paths before the workers store them, spent as each batch is recorded, what is
    left dropped at the end (see the module docstring)."""

    def __init__(self, catalog: Catalog, wait_s: float) -> None:
        self.catalog = catalog
        self.holder = uuid.uuid4().hex
        self.wait_s = wait_s  # a live delete lease goes within one storage call

    def take(self, paths: list[str]) -> None:
        """W1 for one batch: waits while a deleter holds one of `paths` (StorageUnavailable
        after `wait_s`)."""
        deadline = time.monotonic() + self.wait_s
        pause = 0.01
        while paths and self.catalog.take_write_lease(paths, self.holder) is None:
            if time.monotonic() >= deadline:
                raise StorageUnavailable("A rendition of this batch is being deleted; try again.")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def of(self, paths: list[str]) -> Lease:
        """The run's lease on `paths` (what one batch's transaction spends)."""
        return Lease("write", tuple(paths), holder=self.holder)

    def spent(self, lease: Lease, what: str) -> None:
        """Log each path of `lease` whose lease went stale before the batch's transaction spent
        it: that row was not recorded (the blob may be gone; the next run makes it again)."""
        for path in sorted(set(lease.paths) - lease.held):
            log.warning("%s %s: its lease went stale before its row; not recorded", what, path)

    def close(self) -> None:
        """Drop what is left (batches that failed or never came back); best effort."""
        try:
            self.catalog.end_lease(self.of([]))
        except ImgestError:
            log.warning("could not drop the run's blob leases; they expire", exc_info=True)


def stop_if_down(down: str | None) -> None:
    """Stop the run (exit 3) when a worker found blob storage unavailable (`down`: its error),
    the batches done being recorded. A store that does not answer fails every image after it
    too, one storage timeout per batch: better than going through the whole corpus that way.
    Errors that come back at once (a failed flush) fail their batch only."""
    if down is not None:
        raise StorageUnavailable(
            f"blob storage is unavailable ({down}); the batches done are recorded, "
            "run the command again to go on"
        )
