"""Job test fixtures: a local store and a catalog (SQLite and PostgreSQL) with images stored in
both (gc, fsck), and a corpus of real photos ingested through the API (rescore, compare, export).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance

from imgest.app import create_app
from imgest.catalog.records import ImageRecord
from imgest.catalog.repo import Catalog
from imgest.config import Settings, load_settings
from imgest.scoring.model import Model
from imgest.storage.base import BlobStore
from imgest.storage.local import LocalStore
from imgest.storage.paths import original_path, rendition_path
from tests.catalog.conftest import catalog, catalog_url, make_record
from tests.services.ray import ray_local  # noqa: F401  (registers the session fixture)

__all__ = ["catalog", "catalog_url", "make_record"]

StoreImage = Callable[..., Awaitable[ImageRecord]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    local = LocalStore(tmp_path / "blobs")
    yield local
    await local.close()


@pytest.fixture
def store_image(
    store: BlobStore, catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> StoreImage:
    """store_image(n) -> an image of random bytes whose blobs and row are both stored."""

    async def add(n: int, *, size: int = 3000) -> ImageRecord:
        data = os.urandom(size)
        image_id = hashlib.sha256(data).hexdigest()
        template = make_record(n)
        rendition_bytes = os.urandom(500)
        rendition = replace(
            template.renditions[0],
            path=rendition_path("default", "v1", image_id, "jpg"),
            bytes=len(rendition_bytes),
        )
        record = replace(
            template,
            id=image_id,
            original_path=original_path(image_id),
            bytes=size,
            created_at=datetime.now(UTC),
            renditions=(rendition,),
        )
        await store.put(record.original_path, data)
        await store.put(rendition.path, rendition_bytes)
        assert catalog.add_image(record)
        return record

    return add


# --- a corpus of real photos, ingested through the API (rescore, compare, export) ---

PHOTOS = ("cat.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg")


@dataclass
class Corpus:
    """What a test got: the settings that reach it, its ids, and the client that made it."""

    settings: Settings
    client: TestClient
    ids: list[str]


@pytest.fixture(scope="session")
def model() -> Model:
    return Model.bundled(threads=1)


@pytest.fixture
def make_corpus(tmp_path: Path, model: Model) -> Iterator[Callable[..., Corpus]]:
    """make_corpus([(name, bytes, {field: value})...], **settings) -> Corpus."""
    clients: list[TestClient] = []

    def make(files: list[tuple[str, bytes, dict[str, Any]]], **overrides: Any) -> Corpus:
        settings = load_settings(
            **{
                "storage_url": str(tmp_path / "blobs"),
                "catalog_url": f"sqlite:///{tmp_path / 'catalog.db'}",
                "allowed_hosts": ["testserver"],  # the TestClient's Host
                **overrides,
            }
        )
        client = TestClient(create_app(settings, model=model))
        client.__enter__()
        clients.append(client)
        ids = []
        for name, data, fields in files:
            r = client.post("/v1/images", files=[("file", (name, data, "image/jpeg"))], data=fields)
            assert r.status_code in (200, 201), r.text
            ids.append(r.json()["images"][0]["id"])
        return Corpus(settings, client, ids)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def jpeg(img: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def variants(img: Image.Image) -> dict[str, Image.Image]:
    """Transformed copies of a photo: flips, rotations, crops, colour jitter."""
    w, h = img.size
    return {
        "orig": img,
        "flip": img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "rot90": img.transpose(Image.Transpose.ROTATE_90),
        "rot15": img.rotate(15, resample=Image.Resampling.BICUBIC, expand=False),
        "crop": img.crop((w // 8, h // 8, w - w // 8, h - h // 8)),
        "left": img.crop((0, 0, w * 2 // 3, h)),
        "bright": ImageEnhance.Brightness(img).enhance(1.35),
        "jitter": ImageEnhance.Color(ImageEnhance.Contrast(img).enhance(0.7)).enhance(1.6),
    }


@pytest.fixture(scope="session")
def photo_files(data_dir: Path) -> list[tuple[str, bytes, dict[str, Any]]]:
    """32 real photos: 4 CC0/public-domain photos x 8 transformed variants, tagged by photo."""
    files = []
    for photo in PHOTOS:
        with Image.open(data_dir / photo) as im:
            rgb = im.convert("RGB")
        stem = photo.removesuffix(".jpg")
        for kind, img in variants(rgb).items():
            files.append((f"{stem}-{kind}.jpg", jpeg(img), {"tag": [stem, kind]}))
    return files
