"""`imgest models`, `imgest pipelines` and `imgest label` against a real catalog and store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgest.catalog.records import ImageRecord
from imgest.catalog.repo import Catalog
from imgest.cli import app
from tests.scoring.tiny_models import COLOURS, tiny_classifier

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMGEST_STORAGE_URL", str(tmp_path / "blobs"))
    monkeypatch.setenv("IMGEST_CATALOG_URL", f"sqlite:///{tmp_path / 'catalog.db'}")
    (tmp_path / "tiny.onnx").write_bytes(tiny_classifier())
    (tmp_path / "labels.txt").write_text("\n".join(COLOURS) + "\n")
    assert runner.invoke(app, ["init"]).exit_code == 0
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout + result.stderr


def test_models_add_list_activate_remove(env: Path) -> None:
    code, out = run(
        "models", "add", str(env / "tiny.onnx"), "--name", "tiny", "--labels",
        str(env / "labels.txt"), "--size", "224x224",
    )  # fmt: skip
    assert code == 0 and out.startswith("registered tiny@"), out
    code, out = run("models", "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("* efficientnet-lite0@")  # registered on first use, active
    assert "tiny@" in lines[1] and "3 classes" in lines[1] and lines[1].startswith(" ")
    assert run("models", "activate", "tiny")[1].startswith("active: tiny@")
    code, out = run("models", "remove", "tiny")
    assert code == 2 and "active" in out
    assert run("models", "activate", "efficientnet-lite0")[0] == 0
    assert run("models", "remove", "tiny")[0] == 0
    assert "tiny" not in run("models", "list")[1]
    assert list((env / "blobs" / "models").iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "96x96"], "axis 2"),
        (["--layout", "nhwc"], "axis 1"),
        (["--size", "big"], "WIDTHxHEIGHT"),
        (["--mean", "1,2"], "three"),
    ],
)
def test_models_add_refuses_a_spec_the_graph_contradicts(
    env: Path, extra: list[str], message: str
) -> None:
    code, out = run(
        "models", "add", str(env / "tiny.onnx"), "--name", "tiny",
        "--labels", str(env / "labels.txt"), *extra,
    )  # fmt: skip
    assert code == 2 and message in out, out
    assert "tiny" not in run("models", "list")[1]


def test_models_activate_unknown_exits_2(env: Path) -> None:
    code, out = run("models", "activate", "nope@abcdef")
    assert code == 2 and "nope@abcdef" in out


def test_pipelines_list_and_show(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = env / "p.toml"
    toml.write_text(
        '[pipelines.tiles2x2]\nsteps = [{ step = "resize", size = [448, 448] },'
        ' { step = "tile", aggregate = "max" }]\n'
    )
    monkeypatch.setenv("IMGEST_PIPELINES_FILE", str(toml))
    code, out = run("pipelines", "list")
    assert code == 0 and "tiles2x2@" in out and "tiles 2x2 (max)" in out and "default@" in out
    code, out = run("pipelines", "show", "tiles2x2")
    shown = json.loads(out)
    assert shown["name"] == "tiles2x2" and len(shown["version"]) == 12
    assert shown["spec"]["steps"][1] == {
        "step": "tile",
        "params": {"aggregate": "max", "cols": 2, "rows": 2},
    }
    assert run("pipelines", "show", "sepia")[0] == 2
    toml.write_text('[pipelines.x]\nsteps = [{ step = "sepia" }]\n')
    code, out = run("pipelines", "list")
    assert code == 2 and "'x'" in out and "sepia" in out


def test_label_one_image_and_from_csv(env: Path) -> None:
    catalog = Catalog.open(f"sqlite:///{env / 'catalog.db'}")
    ids = [c * 64 for c in "abc"]
    for image_id in ids:
        catalog.add_image(
            ImageRecord(
                id=image_id,
                format="jpeg",
                content_type="image/jpeg",
                width=1,
                height=1,
                frames=1,
                bytes=1,
                filename="",
                original_path=f"originals/{image_id}",
                created_at=datetime.now(UTC),
            )
        )
    assert run("label", ids[0], "tabby") == (0, "labelled 1 image(s)\n")
    csv = env / "labels.csv"
    csv.write_text(f"image_id,label\n{ids[1]},siamese\n{ids[2].upper()},persian\n")
    assert run("label", "--from-csv", str(csv))[0] == 0
    assert [catalog.get_image(i).label for i in ids] == ["tabby", "siamese", "persian"]  # type: ignore[union-attr]
    assert run("label", ids[0], "--clear")[0] == 0
    assert catalog.get_image(ids[0]).label is None  # type: ignore[union-attr]
    code, out = run("label", "d" * 64, "x")
    assert code == 1 and "no image" in out
    code, out = run("label", ids[1], " ")
    assert code == 2 and "empty" in out
    catalog.close()


def test_serve_refuses_an_unknown_pipeline(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGEST_PIPELINE", "sepia")
    code, out = run("serve")
    assert code == 2 and "IMGEST_PIPELINE" in out and "sepia" in out
