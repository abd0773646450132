"""The bundled model and the micro-batcher: top-k, batching of concurrent requests, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgest.errors import ModelUnavailable, ScoringQueueFull
from imgest.scoring.batcher import MicroBatcher
from imgest.scoring.model import CPU_RUN_INPUTS, Model, aggregate


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.bundled(threads=1)


def cat_pixels(data_dir: Path) -> np.ndarray:
    im = Image.open(data_dir / "cat.jpg").convert("RGB")
    w, h = im.size
    s = int(min(w, h) * 0.875)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return np.asarray(im.crop(box).resize((224, 224), Image.Resampling.BICUBIC))


def test_bundled_model_spec(model: Model) -> None:
    assert model.name == "efficientnet-lite0"
    assert model.input.size == (224, 224) and model.input.layout == "nchw"
    assert model.input.mean == (127.0, 127.0, 127.0) and model.input.std == (128.0, 128.0, 128.0)
    assert len(model.labels) == 1000 and len(model.version) == 64


def test_preprocess_is_tf_lite_convention(model: Model) -> None:
    pixels = np.zeros((224, 224, 3), np.uint8)
    pixels[..., 0] = 255
    x = model.preprocess(pixels)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert x[0, 0, 0] == pytest.approx((255 - 127) / 128)
    assert x[1, 0, 0] == pytest.approx(-127 / 128)


def test_cat_top1_is_a_cat(model: Model, data_dir: Path) -> None:
    probs = model.predict(model.preprocess(cat_pixels(data_dir))[None])
    top = model.top_k(probs[0], 5)
    assert top[0].index in range(281, 286)
    assert [t.score for t in top] == sorted((t.score for t in top), reverse=True)
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.anyio
async def test_concurrent_requests_share_batches(model: Model, data_dir: Path) -> None:
    batcher = MicroBatcher(model, max_size=8, max_wait=0.05)
    await batcher.start()
    pixels = cat_pixels(data_dir)
    rng = np.random.default_rng(0)
    inputs = [pixels] + [rng.integers(0, 256, pixels.shape, dtype=np.uint8) for _ in range(11)]
    results = await asyncio.gather(*(batcher.score(p) for p in inputs))
    await batcher.stop()
    assert results[0][0].index in range(281, 286)
    # each answer is its own image's, not a neighbour's in the batch
    alone = model.top_k(model.predict(model.preprocess(inputs[3])[None])[0], 5)
    assert [t.index for t in results[3]] == [t.index for t in alone]
    assert batcher.stats.images == 12
    assert max(batcher.stats.sizes) > 1  # batched, not one by one
    assert max(batcher.stats.sizes) <= 8


@pytest.mark.anyio
async def test_not_started_or_failing_model_is_unavailable(model: Model, data_dir: Path) -> None:
    batcher = MicroBatcher(model)
    with pytest.raises(ModelUnavailable):
        await batcher.score(cat_pixels(data_dir))

    class Broken(Model):
        def __init__(self) -> None:
            self.__dict__.update(model.__dict__)

        def infer(self, batch: np.ndarray) -> tuple[np.ndarray, None]:  # type: ignore[override]
            raise RuntimeError("onnxruntime exploded")

    broken = MicroBatcher(Broken())
    await broken.start()
    with pytest.raises(ModelUnavailable):
        await broken.score(cat_pixels(data_dir))
    await broken.stop()


def test_aggregate_mean_and_max_on_a_known_array() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.4, 0.4, 0.2]], dtype=np.float32)
    assert aggregate(probs, "mean") == pytest.approx([0.4, 0.466667, 0.133333], abs=1e-5)
    assert aggregate(probs, "max") == pytest.approx([0.7, 0.8, 0.2])
    assert aggregate(probs[:1], "max").tolist() == pytest.approx([0.7, 0.2, 0.1])
    with pytest.raises(ValueError):
        aggregate(probs[:0], "mean")
    with pytest.raises(ValueError):
        aggregate(probs, "median")  # type: ignore[arg-type]


def test_a_batch_longer_than_one_cpu_run_keeps_each_inputs_result(
    model: Model, data_dir: Path
) -> None:
    # onnxruntime gets CPU_RUN_INPUTS inputs at a time: every row must still be its own
    # input's, in order, the short last run included.
    rng = np.random.default_rng(2)
    cat = cat_pixels(data_dir)
    inputs = [cat] + [rng.integers(0, 256, cat.shape, dtype=np.uint8) for _ in range(8)]
    assert len(inputs) % CPU_RUN_INPUTS != 0
    batch = np.stack([model.preprocess(p) for p in inputs])
    rows = model.predict(batch)
    alone = np.concatenate([model.predict(x[None]) for x in batch])
    assert rows.shape == (len(inputs), 1000)
    np.testing.assert_allclose(rows, alone, atol=1e-6)
    assert rows[0].argmax() in range(281, 286)


def test_classify_aggregates_each_images_inputs(model: Model, data_dir: Path) -> None:
    cat = cat_pixels(data_dir)
    noise = np.random.default_rng(1).integers(0, 256, cat.shape, dtype=np.uint8)
    probs = model.predict(np.stack([model.preprocess(cat), model.preprocess(noise)]))
    tiled, alone = model.classify([[cat, noise], [cat]], how="max", k=3)
    want = model.top_k(probs.max(axis=0), 3)
    assert [t.index for t in tiled] == [t.index for t in want]
    assert tiled[0].score == pytest.approx(want[0].score, abs=1e-5)
    assert alone[0].index in range(281, 286)
    with pytest.raises(ValueError, match="224x224"):
        model.classify([[cat[:100]]])


@pytest.mark.anyio
async def test_tiled_images_go_through_the_batcher_whole(model: Model, data_dir: Path) -> None:
    batcher = MicroBatcher(model, max_size=6, max_wait=0.05)
    await batcher.start()
    cat = cat_pixels(data_dir)
    noise = np.random.default_rng(2).integers(0, 256, cat.shape, dtype=np.uint8)
    four = [cat, noise, cat, noise]
    results = await asyncio.gather(
        batcher.score_inputs(four, "mean"),
        batcher.score_inputs(four, "mean"),
        batcher.score(cat),
    )
    await batcher.stop()
    want = model.classify([four], how="mean")[0]
    assert [t.index for t in results[0]] == [t.index for t in want]
    assert results[0][0].score == pytest.approx(want[0].score, abs=1e-4)
    assert results[2][0].index in range(281, 286)
    # An image's four inputs never straddle two batches; batches stay <= max_size here.
    assert batcher.stats.images == 9 and batcher.stats.images_scored == 3
    assert max(batcher.stats.sizes) <= 6
    snap = batcher.stats.snapshot()
    assert snap["inputs"] == 9 and snap["batches"] == batcher.stats.batches and snap["queued"] == 0


@pytest.mark.anyio
async def test_full_queue_refuses_at_once(model: Model, data_dir: Path) -> None:
    batcher = MicroBatcher(model, max_size=4, max_wait=5.0, max_queue=5)
    await batcher.start()
    cat = cat_pixels(data_dir)
    waiting = asyncio.create_task(batcher.score_inputs([cat] * 3))
    await asyncio.sleep(0.01)  # the batcher holds 3 of 5 inputs, waiting for more
    with pytest.raises(ScoringQueueFull) as refused:
        await batcher.score_inputs([cat] * 3)
    assert refused.value.status == 503 and refused.value.code == "scoring_queue_full"
    assert batcher.stats.rejected == 1 and batcher.stats.queued == 3
    fits = await batcher.score_inputs([cat])  # 4 inputs: the batch is full and runs now
    assert fits[0].index in range(281, 286)
    assert (await waiting)[0].index in range(281, 286)
    await batcher.stop()
    assert batcher.stats.sizes == {4: 1}
