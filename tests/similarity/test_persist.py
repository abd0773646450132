"""Persisted builds: save and load through the blob store, the pointer, LiveIndex merging."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from imgest.similarity import persist
from imgest.similarity.ann import AnnIndex
from imgest.similarity.index import ExactIndex
from imgest.storage.memory import MemoryStore
from tests.similarity.test_ann import DIM, clustered

pytestmark = pytest.mark.anyio


def small_index(n: int = 300, seed: int = 1) -> tuple[AnnIndex, npt.NDArray[np.float32]]:
    vectors = clustered(n, seed=seed)
    index = AnnIndex(DIM)
    index.add([f"i{k}" for k in range(n)], vectors)
    return index, vectors


async def test_save_then_load_latest() -> None:
    store = MemoryStore()
    index, vectors = small_index()
    pointer = await persist.save(store, "net", "v1", index)
    assert pointer.path.startswith("indexes/net/v1/") and pointer.count == 300
    assert pointer.path.rsplit("/", 1)[1] == pointer.sha256
    loaded = await persist.load_latest(store, "net", "v1")
    assert loaded is not None and loaded[0] == pointer
    assert loaded[1].search(vectors[3], 5) == index.search(vectors[3], 5)
    assert await persist.load_latest(store, "net", "v2") is None  # another version: nothing


async def test_a_second_save_moves_the_pointer_and_keeps_the_first_build() -> None:
    store = MemoryStore()
    first = await persist.save(store, "net", "v1", small_index(seed=1)[0])
    second = await persist.save(store, "net", "v1", small_index(seed=2)[0])
    assert first.path != second.path
    assert await persist.latest(store, "net", "v1") == second
    await store.head(first.path)  # still there until the job prunes it
    assert await persist.prune(store, "net", "v1", [second.path]) == [first.path]
    assert await persist.latest(store, "net", "v1") == second


@pytest.mark.parametrize("damage", ["pointer", "index", "missing"])
async def test_a_damaged_build_is_ignored(damage: str) -> None:
    """A replica falls back to exact search instead of failing or serving a wrong index."""
    store = MemoryStore()
    pointer = await persist.save(store, "net", "v1", small_index()[0])
    if damage == "pointer":
        await store.put("indexes/net/v1/latest.json", b"{not json")
    elif damage == "index":
        await store.put(pointer.path, b"imgest-ann-1\n" + b"\0" * 100)
    else:
        await store.delete(pointer.path)
    assert await persist.load_latest(store, "net", "v1") is None


def test_index_dir_refuses_path_tricks() -> None:
    assert persist.index_dir("efficientnet-lite0", "ab12") == "indexes/efficientnet-lite0/ab12/"
    for model, version in [("a/b", "v"), ("..", "v"), ("m", ""), ("m", "..")]:
        with pytest.raises(ValueError):
            persist.index_dir(model, version)


def test_wants_ann_from_the_threshold() -> None:
    assert not persist.wants_ann(9_999, 10_000)
    assert persist.wants_ann(10_000, 10_000)


def test_live_index_merges_the_build_and_recent_vectors() -> None:
    base, vectors = small_index()
    live = persist.LiveIndex(base, ExactIndex(DIM))
    fresh = clustered(1, seed=9)
    live.add(["new"], fresh)
    assert len(live) == 301
    assert live.search(fresh[0], 1)[0][0] == "new"  # found at once, before any rebuild
    live.add(["i3"], vectors[3:4])  # re-embedded: moves to the exact part, once
    found = live.search(vectors[3], 10)
    assert [i for i, _ in found].count("i3") == 1 and found[0][0] == "i3"
    assert len(live) == 301
    live.remove(["i3", "new"])
    assert "i3" not in {i for i, _ in live.search(vectors[3], 10)} and len(live) == 299
    scores = [s for _, s in live.search(vectors[5], 10)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 10


def test_live_index_without_a_build_is_exact() -> None:
    live = persist.LiveIndex(None, ExactIndex(DIM))
    vectors = clustered(5, seed=3)
    live.add([f"j{k}" for k in range(5)], vectors)
    assert live.search(vectors[2], 1)[0][0] == "j2" and len(live) == 5
