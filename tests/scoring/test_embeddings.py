"""Models with and without an embedding output: detection, one run for both, batching kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from imgest.catalog.repo import Catalog
from imgest.scoring.batcher import Batching, MicroBatcher
from imgest.scoring.model import BUNDLED_DIR, InputSpec, Model, ModelSpec, ModelSpecError
from imgest.scoring.registry import ModelRegistry
from imgest.storage.memory import MemoryStore
from tests.scoring.tiny_models import COLOURS, tiny_classifier


def spec(name: str = "tiny") -> ModelSpec:
    raw = {"name": "", "size": [224, 224], "mean": [127] * 3, "std": [128] * 3}
    return ModelSpec(name=name, input=InputSpec.from_dict(raw), labels=COLOURS)


def colour(rgb: tuple[int, int, int]) -> np.ndarray:
    pixels = np.zeros((224, 224, 3), np.uint8)
    pixels[...] = rgb
    return pixels


def test_the_bundled_model_gives_a_1280_d_embedding_from_the_same_run() -> None:
    model = Model(BUNDLED_DIR, threads=1)
    assert model.embedding_dim == 1280
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(3)]
    batch = np.stack([model.preprocess(p) for p in inputs])
    calls: list[list[str]] = []
    run = model._session.run

    def counted(names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        calls.append(list(names))
        return run(names, feed)

    model._session.run = counted  # type: ignore[method-assign]
    probs, vectors = model.infer(batch, per_run=3)
    assert calls == [["logits", "embedding"]]  # one run gives both
    assert probs.shape == (3, 1000) and vectors is not None and vectors.shape == (3, 1280)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    scored = model.score([[p] for p in inputs])
    for one, row in zip(scored, vectors, strict=True):
        assert one.embedding is not None and one.embedding.dtype == np.float32
        assert np.linalg.norm(one.embedding) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(one.embedding, row / np.linalg.norm(row), atol=1e-5)
    assert [s.top for s in scored] == model.classify([[p] for p in inputs])


def test_a_model_without_the_output_scores_as_before() -> None:
    model = Model.from_bytes(tiny_classifier(), spec(), threads=1)
    assert model.embedding_dim is None
    model.check()
    (scored,) = model.score([[colour((255, 0, 0))]], k=1)
    assert scored.top[0].label == "red" and scored.embedding is None
    assert model.infer(np.stack([model.preprocess(colour((0, 0, 255)))]))[1] is None


def test_a_tiny_model_with_the_output_is_detected_and_tiles_are_pooled() -> None:
    model = Model.from_bytes(tiny_classifier(embedding="embedding"), spec(), threads=1)
    assert model.embedding_dim == 3
    model.check()
    red, blue = colour((255, 0, 0)), colour((0, 0, 255))
    (one, tiled) = model.score([[red], [red, blue]])
    assert one.embedding is not None and tiled.embedding is not None
    # Channel means of (x - 127) / 128: red is (1, -0.99, -0.99) up to scale.
    assert int(np.argmax(one.embedding)) == 0
    r, b = (model.score([[x]])[0].embedding for x in (red, blue))
    assert r is not None and b is not None
    want = (r + b) / np.linalg.norm(r + b)  # the normalised mean of the tiles' embeddings
    np.testing.assert_allclose(tiled.embedding, want, atol=1e-5)


def test_an_embedding_output_of_the_wrong_shape_is_refused() -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = onnx.load_from_string(tiny_classifier(embedding="embedding"))
    identity = next(n for n in graph.graph.node if n.op_type == "Identity")
    identity.input[0] = "pooled"  # (N, 3, 1, 1): not one vector per input
    graph.graph.output[1].CopyFrom(
        helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3, 1, 1])
    )
    with pytest.raises(ModelSpecError, match="embedding"):
        Model.from_bytes(graph.SerializeToString(), spec(), threads=1)


@pytest.mark.anyio
async def test_the_batcher_answers_top_k_and_embedding_per_image_from_one_batch() -> None:
    model = Model.from_bytes(tiny_classifier(embedding="embedding"), spec(), threads=1)
    batcher = MicroBatcher(model, Batching(max_size=8, max_wait=0.05))
    await batcher.start()
    try:
        red, green = colour((255, 0, 0)), colour((0, 255, 0))
        a, b = await asyncio.gather(
            batcher.score_embedded([red]), batcher.score_embedded([green, green])
        )
    finally:
        await batcher.stop()
    assert batcher.stats.sizes == {3: 1}  # both images in one batch of three inputs
    assert a.top[0].label == "red" and b.top[0].label == "green"
    assert a.embedding is not None and b.embedding is not None
    assert int(np.argmax(a.embedding)) == 0 and int(np.argmax(b.embedding)) == 1
    plain = MicroBatcher(Model.from_bytes(tiny_classifier(), spec(), threads=1))
    await plain.start()
    try:
        scored = await plain.score_embedded([red])
    finally:
        await plain.stop()
    assert scored.top[0].label == "red" and scored.embedding is None


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[ModelRegistry]:
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    store = MemoryStore()
    yield ModelRegistry(catalog, store)
    await store.close()
    catalog.close()


@pytest.mark.anyio
async def test_the_registry_says_which_models_give_embeddings(registry: ModelRegistry) -> None:
    bundled = await registry.ensure_default()
    assert bundled.embedding_dim == 1280
    plain = await registry.add(tiny_classifier(), spec("plain"))
    embedded = await registry.add(tiny_classifier(embedding="embedding"), spec("embedded"))
    assert plain.embedding_dim is None and embedded.embedding_dim == 3
    listed = {e.name: e.embedding_dim for e in registry.list()}
    assert listed == {"efficientnet-lite0": 1280, "plain": None, "embedded": 3}
    assert registry.resolve("embedded").embedding_dim == 3
