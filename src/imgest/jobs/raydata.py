"""The Ray engine: the same batches as a Ray Data job, scored in an actor pool via map_batches.

The input dataset is the catalog's listing (image ids, original paths, whether the rendition
must be stored), built on the driver in chunks; each actor builds one BatchScorer (store + model)
and scores whole batches; outcomes stream back to the driver, which records them. With `pin`,
actors that run on the driver's machine bind themselves to a core each, as the local pool's
workers do (imgest.jobs.pool).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import Any

import numpy as np
import numpy.typing as npt

from imgest.errors import MissingDependency
from imgest.jobs.pool import Seats, core_seats, take_seat
from imgest.jobs.scorer import BatchScorer, Outcome, ScorerSpec, WorkItem

CHUNK_ITEMS = 20_000  # images per Ray Dataset: bounds the driver's memory for huge corpora
# Images per Ray task, in rescore batches of those: each task costs the driver (Ray Data's
# executor) and Ray's own processes a fixed amount, so bigger tasks leave more of the cores
# to the actors (docs/benchmarks.md, tuning log).
BATCHES_PER_TASK = 4


def require_ray() -> None:
    """MissingDependency, with the pip line, unless Ray (the `ray` extra) can be imported."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(
            f"--engine ray needs Ray, which is not installed (no module {exc.name!r}): "
            "pip install 'imgest[ray]', or use --engine local"
        ) from None


class RayScorer:
    """The map_batches UDF: a BatchScorer per actor, built once; each Ray batch is scored in
    rescore batches of `batch_size` images."""

    def __init__(self, spec: ScorerSpec, batch_size: int, seats: Seats | None = None) -> None:
        take_seat(seats)  # a core of its own, where the actor runs on the driver's machine
        self.scorer = BatchScorer.from_spec(spec)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        items = [
            WorkItem(str(i), str(p), bool(s), str(m), (int(w), int(h)))
            for i, p, s, m, w, h in zip(
                batch["image_id"],
                batch["original_path"],
                batch["store_rendition"],
                batch["intermediate_path"],
                batch["original_width"],
                batch["original_height"],
                strict=True,
            )
        ]
        outcomes = [
            o
            for start in range(0, len(items), self.batch_size)
            for o in self.scorer.score(items[start : start + self.batch_size])
        ]
        return {"outcome": np.array([o.to_json() for o in outcomes], dtype=object)}


class RayEngine:
    """Runs on the Ray cluster at `address` ("auto", "ray://..."), or a local one (None)."""

    name = "ray"

    def __init__(
        self,
        spec: ScorerSpec,
        *,
        workers: int,
        batch_size: int,
        address: str | None = None,
        pin: bool = False,
    ) -> None:
        self.spec = spec
        self.workers = max(1, workers)
        self.batch_size = batch_size
        self.address = address
        self.pin = pin
        self._seats: Seats | None = None

    def run(self, batches: Iterable[list[WorkItem]]) -> Iterator[list[Outcome]]:
        """Outcomes of each batch as the actors finish them."""
        import ray
        import ray.data

        started = self._connect(ray)
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False  # ours is on screen
            items = chain.from_iterable(batches)
            with core_seats(self.workers, self.pin) as self._seats:
                while chunk := list(islice(items, CHUNK_ITEMS)):
                    yield from self._run_chunk(ray.data, chunk)
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Join the cluster (or start a local one); True if this call started Ray."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:  # a throwaway local Ray on loopback, sized to the workers asked for
            ray.init(
                num_cpus=self.workers,
                include_dashboard=False,
                log_to_driver=False,
                _node_ip_address="127.0.0.1",
            )
        return True

    def _run_chunk(self, data: Any, chunk: list[WorkItem]) -> Iterator[list[Outcome]]:
        dataset = data.from_items(
            [
                {
                    "image_id": i.image_id,
                    "original_path": i.original_path,
                    "store_rendition": i.store_rendition,
                    "intermediate_path": i.intermediate_path,
                    "original_width": i.original_size[0],
                    "original_height": i.original_size[1],
                }
                for i in chunk
            ]
        ).map_batches(
            RayScorer,
            fn_constructor_kwargs={
                "spec": self.spec,
                "batch_size": self.batch_size,
                "seats": self._seats,
            },
            compute=data.ActorPoolStrategy(size=self.workers),
            batch_size=self.batch_size * BATCHES_PER_TASK,
            batch_format="numpy",
            num_cpus=1,
        )
        for out in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            yield [Outcome.from_json(str(text)) for text in out["outcome"]]
