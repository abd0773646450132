"""Issue 4 over HTTP: ?model=, tiled pipelines, every prediction listed, on-demand renditions,
ground-truth labels (PATCH and upload), the scoring queue's 503."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from imgest.app import create_app
from imgest.catalog.records import Label, PredictionRecord
from imgest.config import load_settings
from imgest.errors import ConfigError
from imgest.scoring.model import InputSpec, ModelSpec
from imgest.scoring.registry import ModelRegistry, RegisteredModel
from tests.scoring.tiny_models import COLOURS, tiny_classifier

CAT_CLASSES = range(281, 286)
PIPELINES = """
[pipelines.tiles2x2]
steps = [
  { step = "resize", size = [448, 448] },
  { step = "tile", rows = 2, cols = 2, aggregate = "mean" },
]

[pipelines.grey]
steps = [{ step = "resize", size = [224, 224] }, { step = "grayscale" }]
"""


@pytest.fixture
def pipelines_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipelines.toml"
    path.write_text(PIPELINES)
    return path


def upload(
    client: TestClient, data: bytes, params: dict[str, str] | None = None, **fields: Any
) -> Any:
    return client.post(
        "/v1/images",
        params=params,
        files=[("file", ("cat.jpg", data, "image/jpeg"))],
        data=fields,
    )


def register_tiny(client: TestClient, size: tuple[int, int] = (224, 224)) -> RegisteredModel:
    registry: ModelRegistry = client.app.state.scorers.registry  # type: ignore[attr-defined]
    raw = {"name": "", "size": list(size), "mean": [127] * 3, "std": [128] * 3}
    spec = ModelSpec(name="tiny", input=InputSpec.from_dict(raw), labels=COLOURS)
    data = tiny_classifier(size=size)
    entry: RegisteredModel = client.portal.call(registry.add, data, spec)  # type: ignore[union-attr]
    return entry


def red_png(encode: Callable[..., bytes]) -> bytes:
    return encode(Image.new("RGB", (300, 200), (230, 20, 20)), "PNG")


def test_upload_picks_a_registered_model(client: TestClient, encode: Callable[..., bytes]) -> None:
    tiny = register_tiny(client)
    r = upload(client, red_png(encode), params={"model": f"tiny@{tiny.version[:8]}"})
    assert r.status_code == 201, r.text
    (pred,) = r.json()["images"][0]["predictions"]
    assert pred["model"] == "tiny" and pred["model_version"] == tiny.version
    assert pred["top"][0]["label"] == "red"
    # Without ?model= the active (bundled) model scores.
    r = upload(client, encode(Image.new("RGB", (300, 200), (20, 230, 20)), "PNG"))
    assert r.json()["images"][0]["predictions"][0]["model"] == "efficientnet-lite0"


@pytest.mark.parametrize("ref", ["nope", "tiny@ffffff", "bad name"])
def test_unknown_model_is_422_before_the_body_is_read(
    client: TestClient, data_dir: Path, ref: str
) -> None:
    register_tiny(client)
    r = upload(client, (data_dir / "cat.jpg").read_bytes(), params={"model": ref})
    assert r.status_code == 422 and r.json()["code"] == "unknown_model"
    assert client.get("/v1/images").json()["items"] == []


def test_model_of_another_input_size_is_refused(
    client: TestClient, encode: Callable[..., bytes]
) -> None:
    register_tiny(client, size=(96, 96))
    r = upload(client, red_png(encode), params={"model": "tiny"})
    assert r.status_code == 422 and r.json()["code"] == "model_pipeline_mismatch"


def test_activating_a_model_reaches_the_server(
    make_client: Any, encode: Callable[..., bytes]
) -> None:
    client = make_client(active_model_ttl_s=0)
    tiny = register_tiny(client)
    client.app.state.scorers.registry.activate(tiny.ref)  # type: ignore[attr-defined]
    r = upload(client, red_png(encode))
    assert r.json()["images"][0]["predictions"][0]["model"] == "tiny"


def test_get_lists_every_prediction(client: TestClient, data_dir: Path) -> None:
    image = upload(client, (data_dir / "cat.jpg").read_bytes()).json()["images"][0]
    catalog = client.app.state.catalog  # type: ignore[attr-defined]
    other = PredictionRecord(
        model="other",
        model_version="b" * 64,
        pipeline="tiles2x2",
        pipeline_version="c" * 12,
        top=(Label("tabby", 281, 0.5),),
        created_at=datetime.now(UTC),
    )
    assert catalog.add_prediction(image["id"], other) is True
    assert catalog.add_prediction(image["id"], other) is False  # keyed, idempotent
    assert len(catalog.predictions_for(image["id"])) == 2
    preds = client.get(f"/v1/images/{image['id']}").json()["predictions"]
    assert [(p["model"], p["pipeline"]) for p in preds] == [
        ("efficientnet-lite0", "default"),
        ("other", "tiles2x2"),
    ]
    assert preds[1]["model_version"] == "b" * 64 and preds[1]["pipeline_version"] == "c" * 12
    assert preds[1]["top"] == [{"label": "tabby", "index": 281, "score": 0.5}]
    assert {"created_at", "top"} <= set(preds[0])


def test_tiled_pipeline_at_ingest(make_client: Any, pipelines_file: Path, data_dir: Path) -> None:
    client = make_client(pipelines_file=pipelines_file, pipeline="tiles2x2")
    r = upload(client, (data_dir / "cat.jpg").read_bytes())
    assert r.status_code == 201, r.text
    img = r.json()["images"][0]
    assert img["renditions"]["tiles2x2"]["width"] == 448
    assert img["predictions"][0]["pipeline"] == "tiles2x2"
    assert img["predictions"][0]["top"][0]["index"] in CAT_CLASSES
    stats = client.app.state.scorers.batch_stats()  # type: ignore[attr-defined]
    (only,) = stats.values()
    assert only.sizes == {4: 1} and only.images_scored == 1


def test_full_scoring_queue_is_503_with_retry_after(
    make_client: Any, pipelines_file: Path, data_dir: Path
) -> None:
    client = make_client(pipelines_file=pipelines_file, pipeline="tiles2x2", batch_max_queue=2)
    r = upload(client, (data_dir / "cat.jpg").read_bytes())
    assert r.status_code == 503 and r.json()["code"] == "scoring_queue_full"
    assert r.headers["retry-after"]
    assert client.get("/v1/images").json()["items"] == []  # nothing recorded


def test_unknown_ingest_pipeline_fails_at_start(tmp_path: Path, pipelines_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"IMGEST_PIPELINE.*sepia"):
        create_app(load_settings(pipeline="sepia", pipelines_file=pipelines_file))
    bad = tmp_path / "bad.toml"
    bad.write_text('[pipelines.x]\nsteps = [{ step = "sepia" }]\n')
    with pytest.raises(ConfigError, match=r"'x'.*sepia"):
        create_app(load_settings(pipelines_file=bad))


def test_rendition_on_demand_is_stored_once(
    make_client: Any, pipelines_file: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(pipelines_file=pipelines_file)
    image = upload(client, (data_dir / "cat.jpg").read_bytes()).json()["images"][0]
    assert list(image["renditions"]) == ["default"]
    url = f"/v1/images/{image['id']}/renditions/grey"
    first = client.get(url)
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    grey = np.asarray(Image.open(io.BytesIO(first.content)).convert("RGB")).astype(int)
    assert grey.shape == (224, 224, 3) and np.abs(grey[..., 0] - grey[..., 2]).max() <= 3
    stored = client.get(f"/v1/images/{image['id']}").json()["renditions"]
    assert set(stored) == {"default", "grey"}

    def no_render(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a stored rendition must not be rendered again")

    monkeypatch.setattr("imgest.corpus.render", no_render)
    second = client.get(url)
    assert second.status_code == 200 and second.content == first.content
    tiles = client.app.state.store.inner._blobs  # type: ignore[attr-defined]
    assert len([p for p in tiles if p.startswith("renditions/grey@")]) == 1


def test_unknown_pipeline_rendition_is_404(client: TestClient, data_dir: Path) -> None:
    image = upload(client, (data_dir / "cat.jpg").read_bytes()).json()["images"][0]
    r = client.get(f"/v1/images/{image['id']}/renditions/sepia")
    assert r.status_code == 404 and r.json()["code"] == "pipeline_not_found"


def test_patch_label_tags_description(client: TestClient, data_dir: Path) -> None:
    image = upload(client, (data_dir / "cat.jpg").read_bytes(), description="x", tag="a")
    url = f"/v1/images/{image.json()['images'][0]['id']}"
    assert client.get(url).json()["label"] is None
    r = client.patch(url, json={"label": "  tabby "})
    assert r.status_code == 200 and r.json()["label"] == "tabby"
    assert r.json()["tags"] == ["a"] and r.json()["fields"] == {"description": "x"}
    assert client.get(url).json()["label"] == "tabby"
    r = client.patch(url, json={"tags": ["b", "c", "b"], "description": None})
    assert r.json()["label"] == "tabby" and r.json()["tags"] == ["b", "c"]
    assert r.json()["fields"] == {}
    assert client.patch(url, json={"label": None}).json()["label"] is None
    listed = client.get("/v1/images").json()["items"][0]
    assert listed["label"] is None and listed["tags"] == ["b", "c"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"label": ""}, "invalid_label"),
        ({"label": "   "}, "invalid_label"),
        ({"label": "x" * 201}, "invalid_label"),
        ({"label": "a\nb"}, "invalid_label"),
        ({"label": 3}, "invalid_parameter"),
        ({"colour": "red"}, "invalid_parameter"),
        ({"tags": ["x" * 101]}, "invalid_parameter"),
    ],
)
def test_bad_patches_are_422(
    client: TestClient, data_dir: Path, body: dict[str, Any], code: str
) -> None:
    image = upload(client, (data_dir / "cat.jpg").read_bytes()).json()["images"][0]
    r = client.patch(f"/v1/images/{image['id']}", json=body)
    assert r.status_code == 422 and r.json()["code"] == code, r.text
    assert client.get(f"/v1/images/{image['id']}").json()["label"] is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [(b"{not json", 422, "invalid_parameter"), (b"\xff\xfe{", 400, "bad_request")],
)
def test_a_patch_body_that_does_not_parse_is_a_documented_4xx(
    client: TestClient, data_dir: Path, body: bytes, status: int, code: str
) -> None:
    image = upload(client, (data_dir / "cat.jpg").read_bytes()).json()["images"][0]
    headers = {"Content-Type": "application/json"}
    r = client.patch(f"/v1/images/{image['id']}", content=body, headers=headers)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert r.headers["content-type"] == "application/problem+json" and r.json()["detail"]


def test_patch_unknown_image_is_404(client: TestClient) -> None:
    r = client.patch(f"/v1/images/{'a' * 64}", json={"label": "x"})
    assert r.status_code == 404 and r.json()["code"] == "image_not_found"
    r = client.patch("/v1/images/nothex", json={"label": "x"})
    assert r.status_code == 404


def test_upload_label_field_is_ground_truth(client: TestClient, data_dir: Path) -> None:
    r = upload(client, (data_dir / "cat.jpg").read_bytes(), label="tabby", note="n")
    img = r.json()["images"][0]
    assert r.status_code == 201 and img["label"] == "tabby" and img["fields"] == {"note": "n"}
    assert client.get(f"/v1/images/{img['id']}").json()["label"] == "tabby"
    r = upload(client, (data_dir / "coffee.jpg").read_bytes(), label="")
    assert r.status_code == 422 and r.json()["code"] == "invalid_label"
