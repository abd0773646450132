"""open_store: URLs and plain paths to backends, found through the `imgest.storage` entry points."""

from __future__ import annotations

from importlib.metadata import EntryPoint, EntryPoints, entry_points
from pathlib import Path
from typing import ClassVar, Self

import pytest

from imgest.storage import registry
from imgest.storage.azure import AzureStore
from imgest.storage.base import StoreOptions
from imgest.storage.local import LocalStore
from imgest.storage.memory import MemoryStore
from imgest.storage.registry import ENTRY_POINT_GROUP, open_store
from imgest.storage.s3 import S3Store


class ThirdPartyStore(MemoryStore):
    """What a plugin package would register: a BlobStore with `from_url`."""

    @classmethod
    def from_url(cls, url: str) -> Self:
        store = cls()
        store.url = url
        return store


class NoFromUrl:
    pass


class NotAStore:
    @classmethod
    def from_url(cls, url: str) -> object:
        return object()


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Add plugin backends next to the installed ones, as another package's metadata would."""
    installed = list(entry_points(group=ENTRY_POINT_GROUP))
    extra = [
        EntryPoint(name, f"{__name__}:{cls.__name__}", ENTRY_POINT_GROUP)
        for name, cls in [("third", ThirdPartyStore), ("nofrom", NoFromUrl), ("bad", NotAStore)]
    ]

    def fake_entry_points(*, group: str) -> EntryPoints:
        assert group == ENTRY_POINT_GROUP
        return EntryPoints([*installed, *extra])

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)


def test_builtin_backends_register_through_entry_points() -> None:
    found = {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert found["memory"] is MemoryStore
    assert found["file"] is LocalStore
    assert found["azure"] is AzureStore
    assert found["s3"] is S3Store


class OptionsStore(MemoryStore):
    """A plugin whose from_url takes the network options."""

    seen: ClassVar[list[StoreOptions | None]] = []

    @classmethod
    def from_url(cls, url: str, *, options: StoreOptions | None = None) -> Self:
        cls.seen.append(options)
        return cls()


def test_options_reach_backends_that_take_them(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint("opts", f"{__name__}:OptionsStore", ENTRY_POINT_GROUP)
    installed = list(entry_points(group=ENTRY_POINT_GROUP))
    monkeypatch.setattr(registry, "entry_points", lambda *, group: EntryPoints([*installed, ep]))
    options = StoreOptions(timeout_s=2.5, retries=1)
    open_store("opts://x", options=options)
    open_store("opts://x")
    assert OptionsStore.seen == [options, None]
    # A backend without the keyword still opens when options are given.
    assert isinstance(open_store("memory://", options=options), MemoryStore)


@pytest.mark.parametrize("url", ["memory://", "memory:", "MEMORY://"])
def test_memory_urls(url: str) -> None:
    store = open_store(url)
    assert isinstance(store, MemoryStore)
    assert store.url == "memory://"


def test_a_named_memory_store() -> None:
    assert open_store("memory://cache").url == "memory://cache"


def test_file_url(tmp_path: Path) -> None:
    root = tmp_path / "blobs dir"
    store = open_store(root.as_uri())
    assert isinstance(store, LocalStore)
    assert store.root == root.resolve()


def test_absolute_path(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "blobs"))
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "blobs").resolve()
    assert store.url == (tmp_path / "blobs").resolve().as_uri()


def test_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("var/blobs")
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "var" / "blobs").resolve()


def test_unknown_scheme_names_it_and_the_known_ones_but_not_the_url() -> None:
    with pytest.raises(ValueError) as got:
        open_store("gs://key:s3cr3t@bucket/prefix")
    message = str(got.value)
    assert "'gs'" in message
    assert "file" in message and "memory" in message
    assert "s3cr3t" not in message


@pytest.mark.usefixtures("plugins")
def test_a_third_party_backend_registers_the_same_way() -> None:
    store = open_store("third://somewhere")
    assert isinstance(store, ThirdPartyStore)
    assert store.url == "third://somewhere"
    assert isinstance(open_store("memory://"), MemoryStore)


@pytest.mark.usefixtures("plugins")
@pytest.mark.parametrize("url", ["nofrom://x", "bad://x"])
def test_a_broken_backend_is_a_type_error(url: str) -> None:
    with pytest.raises(TypeError):
        open_store(url)
