"""The model registry: add (validated against the graph), resolve, activate, remove, load."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

from imgest.catalog.repo import Catalog
from imgest.errors import UnknownModel
from imgest.scoring.model import BUNDLED_DIR, InputSpec, ModelSpec, ModelSpecError
from imgest.scoring.registry import ModelRegistry, parse_ref
from imgest.storage.memory import MemoryStore
from imgest.storage.paths import model_path
from tests.scoring.tiny_models import COLOURS, tiny_classifier

pytestmark = pytest.mark.anyio


def spec(
    name: str = "tiny",
    *,
    size: tuple[int, int] = (224, 224),
    layout: str = "nchw",
    labels: tuple[str, ...] = COLOURS,
) -> ModelSpec:
    raw = {"name": "", "size": list(size), "layout": layout, "mean": [127] * 3, "std": [128] * 3}
    return ModelSpec(name=name, input=InputSpec.from_dict(raw), labels=labels)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[ModelRegistry]:
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    store = MemoryStore()
    yield ModelRegistry(catalog, store)
    await store.close()
    catalog.close()


async def test_first_start_registers_and_activates_the_bundled_model(
    registry: ModelRegistry,
) -> None:
    active = await registry.ensure_default()
    assert active.name == "efficientnet-lite0" and active.active
    assert active.version == hashlib.sha256((BUNDLED_DIR / "model.onnx").read_bytes()).hexdigest()
    assert active.location == "bundled:efficientnet-lite0"  # not copied into blob storage
    assert len(active.spec.labels) == 1000 and active.spec.input.size == (224, 224)
    again = await registry.ensure_default()
    assert again == active and len(registry.list()) == 1


async def test_add_stores_bytes_by_sha256_and_resolves_by_prefix(
    registry: ModelRegistry,
) -> None:
    await registry.ensure_default()
    data = tiny_classifier()
    entry = await registry.add(data, spec())
    version = hashlib.sha256(data).hexdigest()
    assert entry.version == version and not entry.active
    assert entry.location == model_path(version)
    assert await (await registry.store.get(entry.location)).read() == data
    assert entry.spec.input.name == ""  # taken from the graph when the model loads
    assert registry.resolve("tiny") == entry
    assert registry.resolve(f"tiny@{version[:6]}") == entry
    assert registry.resolve(f"TINY@{version[:6]}".lower()) == entry
    assert await registry.add(data, spec()) == entry  # idempotent
    model = await registry.load(entry, threads=1)
    assert model.version == version and model.input.name == "pixels"
    red = np.zeros((224, 224, 3), np.uint8)
    red[..., 0] = 255
    assert model.classify([[red]], k=1)[0][0].label == "red"


async def test_name_alone_means_the_active_else_the_newest_version(
    registry: ModelRegistry,
) -> None:
    first = await registry.add(tiny_classifier(seed=1), spec())
    second = await registry.add(tiny_classifier(seed=2), spec())
    assert registry.resolve("tiny") == second
    registry.activate(f"tiny@{first.version[:12]}")
    assert registry.resolve("tiny").version == first.version
    assert registry.active() is not None and registry.active().version == first.version  # type: ignore[union-attr]


async def test_activate_moves_the_single_active_flag(registry: ModelRegistry) -> None:
    bundled = await registry.ensure_default()
    tiny = await registry.add(tiny_classifier(), spec(), activate=True)
    assert registry.active() == registry.resolve(tiny.ref)
    assert [e.active for e in registry.list() if e.name == bundled.name] == [False]
    registry.activate(bundled.name)
    assert [e.name for e in registry.list() if e.active] == [bundled.name]


@pytest.mark.parametrize("ref", ["nope", "tiny@abcdef", "tiny@xyz", "tiny@abc", "", "a b"])
async def test_unknown_or_malformed_references(registry: ModelRegistry, ref: str) -> None:
    await registry.add(tiny_classifier(), spec())
    with pytest.raises(UnknownModel):
        registry.resolve(ref)


def test_parse_ref() -> None:
    assert parse_ref("m") == ("m", None)
    assert parse_ref("m@ABCDEF12") == ("m", "abcdef12")


async def test_remove_refuses_the_active_model_and_deletes_unshared_bytes(
    registry: ModelRegistry,
) -> None:
    await registry.ensure_default()
    data = tiny_classifier()
    a = await registry.add(data, spec("a"))
    b = await registry.add(data, spec("b"))  # same bytes, another name: one blob
    with pytest.raises(UnknownModel, match="active"):
        await registry.remove("efficientnet-lite0")
    await registry.remove("a")
    assert await registry.store.head(b.location)  # still used by b
    await registry.remove(b.ref)
    assert [e.name for e in registry.list()] == ["efficientnet-lite0"]
    assert [m.path async for m in registry.store.list("models/")] == []
    assert a.version == b.version


@pytest.mark.parametrize(
    ("graph", "model_spec", "message"),
    [
        ({"size": (128, 128)}, spec(), "axis 2"),
        ({"layout": "nhwc"}, spec(), "axis 1"),
        ({}, spec(layout="nhwc"), "axis 1"),
        ({"classes": 5}, spec(), "5"),
        ({"dtype": TensorProto.DOUBLE}, spec(), "tensor\\(float\\)"),
        ({}, spec(labels=("a", "b")), "2 labels"),
    ],
)
async def test_spec_is_validated_against_the_graph(
    registry: ModelRegistry, graph: dict[str, object], model_spec: ModelSpec, message: str
) -> None:
    with pytest.raises(ModelSpecError, match=message):
        await registry.add(tiny_classifier(**graph), model_spec)  # type: ignore[arg-type]
    assert registry.list() == []


async def test_garbage_bytes_are_refused(registry: ModelRegistry) -> None:
    with pytest.raises(ModelSpecError, match="cannot load"):
        await registry.add(b"not an onnx file", spec())


async def test_nhwc_model_with_matching_spec(registry: ModelRegistry) -> None:
    entry = await registry.add(
        tiny_classifier(layout="nhwc", size=(64, 32)), spec(layout="nhwc", size=(64, 32))
    )
    model = await registry.load(entry, threads=1)
    blue = np.zeros((32, 64, 3), np.uint8)
    blue[..., 2] = 255
    assert model.classify([[blue]], k=1)[0][0].label == "blue"
