"""fsck: missing blobs, wrong sizes and (deep) wrong hashes are reported; exit 1 on problems."""

from __future__ import annotations

import json

import anyio.to_thread
import pytest
from click.testing import Result
from typer.testing import CliRunner

from imgest.catalog.repo import Catalog
from imgest.cli import app
from imgest.jobs import fsck
from imgest.storage.local import LocalStore
from tests.jobs.conftest import StoreImage

pytestmark = pytest.mark.anyio


async def invoke(args: list[str]) -> Result:
    return await anyio.to_thread.run_sync(CliRunner().invoke, app, args)


async def test_clean_corpus_is_ok(
    store: LocalStore, catalog: Catalog, store_image: StoreImage
) -> None:
    for n in range(5):
        await store_image(n)
    report = await fsck.run(store, catalog, deep=True)
    assert report.ok and (report.images, report.blobs) == (5, 10)
    assert report.bytes_hashed == 5 * 3000


async def test_finds_missing_resized_and_corrupted_blobs(
    store: LocalStore, catalog: Catalog, catalog_url: str, store_image: StoreImage
) -> None:
    _fine, gone, cut, flipped, rend_gone = [await store_image(n) for n in range(5)]
    await store.delete(gone.original_path)
    await store.put(cut.original_path, b"short")
    data = bytearray(await (await store.get(flipped.original_path)).read())
    data[100] ^= 0xFF  # same size, different bytes: only --deep sees it
    await store.put(flipped.original_path, bytes(data))
    await store.delete(rend_gone.renditions[0].path)

    shallow = await fsck.run(store, catalog)
    found = {(p.kind, p.image_id, p.path) for p in shallow.problems}
    assert found == {
        ("missing", gone.id, gone.original_path),
        ("size_mismatch", cut.id, cut.original_path),
        ("missing", rend_gone.id, rend_gone.renditions[0].path),
    }
    deep = await fsck.run(store, catalog, deep=True)
    assert {(p.kind, p.image_id) for p in deep.problems} == {
        *((k, i) for k, i, _ in found),
        ("hash_mismatch", flipped.id),
    }

    args = ["fsck", "--storage", str(store.root), "--catalog", catalog_url]
    text = await invoke(args)
    assert text.exit_code == 1
    assert f"missing: {gone.original_path}" in text.stdout and "3 problem(s)" in text.stdout
    as_json = await invoke([*args, "--deep", "--json"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and len(report["problems"]) == 4 and report["images"] == 5

    for record in (gone, cut, flipped, rend_gone):
        catalog.delete_image(record.id)
    clean = await invoke([*args, "--deep"])
    assert clean.exit_code == 0, clean.output
    assert "checked 1 images, 2 blobs" in clean.stdout and "0 problem(s)" in clean.stdout
