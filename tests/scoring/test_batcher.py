"""The bundled model and the micro-batcher: top-k, batching of concurrent requests, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgest.errors import ModelUnavailable
from imgest.scoring.batcher import MicroBatcher
from imgest.scoring.model import Model


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

        def predict(self, batch: np.ndarray) -> np.ndarray:  # type: ignore[override]
            raise RuntimeError("onnxruntime exploded")

    broken = MicroBatcher(Broken())
    await broken.start()
    with pytest.raises(ModelUnavailable):
        await broken.score(cat_pixels(data_dir))
    await broken.stop()
