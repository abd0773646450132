"""LocalStore: the BlobStore contract, plus atomic durable writes and staying inside the root."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import stat
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from imgest.errors import StorageUnavailable
from imgest.storage import commits, local
from imgest.storage.base import (
    BlobExistsError,
    BlobMeta,
    BlobNotFoundError,
    InvalidPathError,
    StoreUnavailableError,
)
from imgest.storage.local import TEMP_PREFIX, LocalStore
from imgest.storage.memory import MemoryStore
from imgest.storage.once import put_all_once

from .contract import INVALID_PATHS, BlobStoreContract, listed, payload, read


class TestLocalStoreContract(BlobStoreContract):
    @pytest.fixture(params=[True, False], ids=["group-commit", "fsync-each"])
    async def store(
        self, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[LocalStore]:
        store = LocalStore(tmp_path / "blobs", group_commit=request.param)
        # the committer on whatever filesystem the tests run on (syncfs works on all of them)
        monkeypatch.setattr(LocalStore, "_group_commit", request.param)
        yield store
        await store.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
async def store(root: Path) -> AsyncIterator[LocalStore]:
    """A store whose puts fsync one by one (the group commit has tests of its own below)."""
    store = LocalStore(root, group_commit=False)
    yield store
    await store.close()


def temp_files(root: Path) -> list[Path]:
    """Every temp file under `root`."""
    return sorted(p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX))


@dataclass
class Pause:
    """Where a put stands: `reached` once it waits at its file fsync, `release` lets it go."""

    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def pause_at_file_fsync(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pause]:
    """Hold the next put at its file fsync until the test sets `release`.

    The put's temp file then holds every byte but has not taken the blob's name yet: the
    moment a non-atomic write would show a reader a partial or missing blob.
    """
    pause = Pause()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode) and not pause.reached.is_set():
            pause.reached.set()
            pause.release.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    yield pause
    pause.release.set()


# --- layout and durability -----------------------------------------------------------


@pytest.mark.anyio
async def test_a_blob_is_a_file_at_its_path(store: LocalStore, root: Path) -> None:
    data = payload(5000)
    await store.put("originals/ab/cd/abcd", data)
    assert (root / "originals" / "ab" / "cd" / "abcd").read_bytes() == data
    assert store.url == root.resolve().as_uri()
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_blobs_survive_reopening_the_store(store: LocalStore, root: Path) -> None:
    meta = await store.put("a/b", b"kept")
    await store.close()
    again = LocalStore(root)
    assert await read(again, "a/b") == b"kept"
    assert await again.head("a/b") == meta
    assert await listed(again) == ["a/b"]


@pytest.mark.anyio
async def test_etag_changes_with_each_version_even_at_equal_size(store: LocalStore) -> None:
    etags = {(await store.put("e", bytes([i]) * 100)).etag for i in range(20)}
    assert len(etags) == 20


@pytest.mark.anyio
async def test_put_fsyncs_the_file_then_its_directory_off_the_loop(
    store: LocalStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        kind = "file" if stat.S_ISREG(os.fstat(fd).st_mode) else "dir"
        calls.append((kind, threading.get_ident()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    await store.put("x/y/z", b"data")  # creates root/x and root/x/y: each parent is fsynced
    kinds = [kind for kind, _ in calls]
    assert kinds.count("file") == 1
    assert kinds.count("dir") == 3
    assert kinds.index("file") < len(kinds) - 1 and kinds[-1] == "dir"
    assert threading.get_ident() not in {thread for _, thread in calls}

    calls.clear()
    await store.put("x/y/w", b"data", mode="create")  # directories exist now
    assert [kind for kind, _ in calls] == ["file", "dir"]


# --- put_many: a group commit ---------------------------------------------------------


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every syncfs, file fsync, directory fsync and link of the store, in order; syncfs as
    if the store's filesystem were one known to flush (whatever the test machine's is)."""
    events: list[str] = []
    real_syncfs, real_fsync, real_link = local.syncfs, os.fsync, os.link

    def syncfs(fd: int) -> None:
        events.append("syncfs")
        real_syncfs(fd)

    def fsync(fd: int) -> None:
        events.append("file fsync" if stat.S_ISREG(os.fstat(fd).st_mode) else "dir fsync")
        real_fsync(fd)

    def link(*args: Any, **kwargs: Any) -> None:
        events.append("link")
        real_link(*args, **kwargs)

    monkeypatch.setattr(local, "syncfs", syncfs)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(LocalStore, "_group_commit", True)
    return events


@pytest.mark.anyio
async def test_put_many_flushes_the_batch_twice_instead_of_fsyncing_each_blob(
    store: LocalStore, root: Path, flushes: list[str]
) -> None:
    blobs = [(f"r/{i:02x}/{i}", payload(100 + i, seed=i)) for i in range(5)]  # new directories
    metas = await store.put_many(blobs)
    # the temp files (and new directories) are flushed before any takes its name, and the
    # names before put_many returns; no per-blob fsync
    assert flushes == ["syncfs", *["link"] * 5, "syncfs"]
    assert [(m.path, m.size) for m in metas if isinstance(m, BlobMeta)] == [
        (path, len(data)) for path, data in blobs
    ]
    for (path, data), meta in zip(blobs, metas, strict=True):
        assert await read(store, path) == data
        assert await store.head(path) == meta  # the inode, size and mtime now at `path`
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_put_many_gives_each_blob_its_own_answer(
    store: LocalStore, root: Path, flushes: list[str]
) -> None:
    await store.put("kept", b"old")
    await store.put("afile", b"x")
    flushes.clear()
    results = await store.put_many(
        [("new", b"1"), ("kept", b"other"), ("a/../b", b"2"), ("afile/below", b"3"), ("n2", b"4")]
    )
    assert isinstance(results[0], BlobMeta) and isinstance(results[4], BlobMeta)
    assert isinstance(results[1], BlobExistsError)  # create: the blob there is kept
    assert isinstance(results[2], InvalidPathError)
    assert isinstance(results[3], InvalidPathError)  # through a file
    assert flushes.count("syncfs") == 2 and "file fsync" not in flushes
    assert await read(store, "kept") == b"old"
    assert await listed(store) == ["afile", "kept", "n2", "new"]
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_a_failed_flush_fails_the_whole_batch_and_names_nothing(
    store: LocalStore, root: Path, flushes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def syncfs(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(local, "syncfs", syncfs)
    with pytest.raises(StoreUnavailableError) as got:
        await store.put_many([("a", b"1"), ("b/c", b"2")])
    assert isinstance(got.value.__cause__, OSError) and got.value.__cause__.errno == errno.EIO
    assert await listed(store) == []  # nothing took its name before the data was flushed
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_put_many_is_plain_puts_where_syncfs_is_not_known_to_flush(
    store: LocalStore, root: Path, flushes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LocalStore, "_group_commit", False)  # FUSE, NFS, another OS...
    await store.put("p/a", b"1")
    flushes.clear()
    results = await store.put_many([("p/a", b"3"), ("p/b", b"2"), ("p/c", b"4")])
    assert "syncfs" not in flushes
    assert flushes.count("file fsync") == 3 and flushes.count("link") == 3
    assert [type(r) for r in results] == [BlobExistsError, BlobMeta, BlobMeta]
    assert await read(store, "p/a") == b"1"


def test_group_commit_is_chosen_by_the_roots_filesystem(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(root)
    kind = local.filesystem_type(os.open(root, os.O_RDONLY))  # fd closed with the test
    assert store._group_commit == (
        local._SYNCFS is not None and kind in local.GROUP_COMMIT_FILESYSTEMS
    )
    monkeypatch.setattr(local, "filesystem_type", lambda fd: 0x65735546)  # FUSE
    assert LocalStore(root)._group_commit is False


@pytest.mark.anyio
async def test_put_all_once_treats_an_existing_blob_as_stored(
    store: LocalStore, flushes: list[str]
) -> None:
    memory = MemoryStore()
    for target in (store, memory):  # with put_many, and without
        await target.put("there", b"same")
        done = await put_all_once(target, [("there", b"same"), ("new", b"n"), ("../x", b"")])
        assert done[:2] == [None, None]
        assert isinstance(done[2], StorageUnavailable)
        assert isinstance(done[2].__cause__, InvalidPathError)
        assert await read(target, "new") == b"n"


# --- atomicity -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_new_blob_being_written_is_invisible(
    store: LocalStore, root: Path, pause_at_file_fsync: Pause
) -> None:
    pause = pause_at_file_fsync
    data = payload(300_000)
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.put, "new/blob", data)
        try:
            assert await anyio.to_thread.run_sync(pause.reached.wait, 10)
            [temp] = temp_files(root)  # the write is really in progress...
            assert temp.parent == root / "new"
            assert temp.stat().st_size == len(data)
            assert await listed(store) == []  # ...and nobody can see it
            with pytest.raises(BlobNotFoundError):
                await store.head("new/blob")
            with pytest.raises(BlobNotFoundError):
                await store.get("new/blob")
            assert not (root / "new" / "blob").exists()
        finally:
            pause.release.set()
    assert await read(store, "new/blob") == data
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_an_overwrite_in_progress_shows_the_old_blob(
    store: LocalStore, root: Path, pause_at_file_fsync: Pause
) -> None:
    pause = pause_at_file_fsync
    old, new = payload(1000, seed=1), payload(200_000, seed=2)
    pause.reached.set()  # let this first put through unpaused
    await store.put("blob", old)
    pause.reached.clear()
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.put, "blob", new)
        try:
            assert await anyio.to_thread.run_sync(pause.reached.wait, 10)
            assert len(temp_files(root)) == 1
            assert await listed(store) == ["blob"]
            assert (await store.head("blob")).size == len(old)
            assert await read(store, "blob") == old
        finally:
            pause.release.set()
    assert await read(store, "blob") == new


@pytest.mark.anyio
async def test_no_temp_file_is_left_behind(store: LocalStore, root: Path) -> None:
    await store.put("p", b"1", mode="create")
    with pytest.raises(BlobExistsError):
        await store.put("p", b"2", mode="create")
    await store.put("p", b"3", mode="overwrite")
    assert temp_files(root) == []
    assert sorted(p.name for p in root.iterdir()) == ["p"]


# --- temp files ----------------------------------------------------------------------


def _leave_temp(path: Path, age: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial")
    then = time.time() - age
    os.utime(path, (then, then))


@pytest.mark.anyio
async def test_stale_temp_files_are_removed_at_start(root: Path) -> None:
    stale = [root / f"{TEMP_PREFIX}top", root / "originals" / "ab" / "cd" / f"{TEMP_PREFIX}deep"]
    fresh = root / "originals" / "ab" / f"{TEMP_PREFIX}fresh"
    for path in stale:
        _leave_temp(path, age=3600)
    _leave_temp(fresh, age=0)
    blob = root / "originals" / "ab" / "cd" / "blob"
    blob.write_bytes(b"keep me")
    os.utime(blob, (time.time() - 3600,) * 2)

    store = LocalStore(root, stale_temp_after=60)
    assert [p for p in stale if p.exists()] == []
    assert fresh.exists()  # might be a live writer's
    assert blob.read_bytes() == b"keep me"
    assert await listed(store) == ["originals/ab/cd/blob"]

    os.utime(fresh, (time.time() - 3600,) * 2)
    assert await store.remove_stale_temps() == 1
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_temp_files_are_never_listed_nor_addressable(store: LocalStore, root: Path) -> None:
    _leave_temp(root / "a" / f"{TEMP_PREFIX}123", age=0)
    _leave_temp(root / f"{TEMP_PREFIX}456", age=0)
    await store.put("a/real", b"x")
    assert await listed(store) == ["a/real"]
    assert await listed(store, "a/") == ["a/real"]
    assert await listed(store, f"a/{TEMP_PREFIX}") == []
    assert await listed(store, TEMP_PREFIX) == []
    for path in (f"a/{TEMP_PREFIX}123", f"{TEMP_PREFIX}456", f"{TEMP_PREFIX}dir/blob"):
        with pytest.raises(InvalidPathError):
            await store.head(path)
        with pytest.raises(InvalidPathError):
            await store.put(path, b"x")
        with pytest.raises(InvalidPathError):
            await store.delete(path)
    assert (root / "a" / f"{TEMP_PREFIX}123").exists()


def test_stale_temp_after_must_not_be_negative(root: Path) -> None:
    with pytest.raises(ValueError):
        LocalStore(root, stale_temp_after=-1)


# --- reading -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_reader_survives_deletion_and_replacement(store: LocalStore) -> None:
    old, new = payload(500_000, seed=1), payload(1000, seed=2)
    await store.put("r", old)
    deleted = await store.get("r")
    replaced = await store.get("r")
    await store.delete("r")
    await store.put("r", new)
    assert b"".join([c async for c in deleted.stream(64 * 1024)]) == old
    assert await replaced.read() == old
    assert await read(store, "r") == new


@pytest.mark.anyio
async def test_get_reads_the_file_chunk_by_chunk(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(1 << 20)
    await store.put("big", data)
    reader = await store.get("big")
    sizes: list[int] = []
    real_read = os.read

    def read_chunk(fd: int, n: int) -> bytes:
        sizes.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", read_chunk)
    got = [chunk async for chunk in reader.stream(32 * 1024)]
    assert b"".join(got) == data
    assert len(sizes) >= 32 and max(sizes) <= 32 * 1024


def _open_fds(path: Path) -> int:
    """Descriptors of this process open on `path` (other tests' threads may open and close
    unrelated files meanwhile, so counting all of them is not a measure of this reader)."""
    target = str(path.resolve())
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed while we looked
            count += os.readlink(f"/proc/self/fd/{fd}") == target
    return count


@pytest.mark.anyio
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
async def test_readers_close_their_file(store: LocalStore, root: Path) -> None:
    await store.put("f", payload(300_000))
    blob = root / "f"
    baseline = _open_fds(blob)

    assert len(await (await store.get("f")).read()) == 300_000
    assert _open_fds(blob) == baseline

    reader = await store.get("f")
    assert len(b"".join([c async for c in reader.stream()])) == 300_000
    assert _open_fds(blob) == baseline

    stream = (await store.get("f")).stream(1000)
    async for _ in stream:
        break
    assert _open_fds(blob) == baseline + 1
    await stream.aclose()  # type: ignore[attr-defined]  # an async generator underneath
    assert _open_fds(blob) == baseline

    unread = await store.get("f")
    assert _open_fds(blob) == baseline + 1
    del unread
    gc.collect()
    assert _open_fds(blob) == baseline


@pytest.mark.anyio
async def test_a_fifo_is_not_a_blob_and_does_not_hang(store: LocalStore, root: Path) -> None:
    os.mkfifo(root / "fifo")
    with anyio.fail_after(5):
        with pytest.raises(BlobNotFoundError):
            await store.get("fifo")
        with pytest.raises(BlobNotFoundError):
            await store.head("fifo")
    assert await listed(store) == []


# --- staying inside the root ---------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("path", INVALID_PATHS)
async def test_traversal_writes_nothing_outside_the_root(
    store: LocalStore, tmp_path: Path, path: str
) -> None:
    with pytest.raises(InvalidPathError):
        await store.put(path, b"escaped")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs"]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    return outside


@pytest.mark.anyio
async def test_a_symlinked_directory_is_not_followed(
    store: LocalStore, root: Path, outside: Path
) -> None:
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidPathError):
        await store.put("link/new", b"x")
    with pytest.raises(InvalidPathError):
        await store.put("link/deeper/new", b"x")
    with pytest.raises(BlobNotFoundError):
        await store.get("link/secret")
    with pytest.raises(BlobNotFoundError):
        await store.head("link/secret")
    await store.delete("link/secret")
    assert await listed(store) == []
    assert await listed(store, "link/") == []
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"


@pytest.mark.anyio
async def test_a_symlinked_file_is_not_followed(
    store: LocalStore, root: Path, outside: Path
) -> None:
    (root / "evil").symlink_to(outside / "secret")
    with pytest.raises(BlobNotFoundError):
        await store.get("evil")
    with pytest.raises(BlobNotFoundError):
        await store.head("evil")
    assert await listed(store) == []
    await store.put("evil", b"mine")  # replaces the link itself
    assert await read(store, "evil") == b"mine"
    assert not (root / "evil").is_symlink()
    assert (outside / "secret").read_bytes() == b"secret"


@pytest.mark.anyio
async def test_a_blob_cannot_also_be_a_directory(store: LocalStore) -> None:
    await store.put("a", b"file")
    with pytest.raises(InvalidPathError):
        await store.put("a/b", b"x")
    await store.put("x/y", b"inner")
    with pytest.raises(InvalidPathError):
        await store.put("x", b"x")
    with pytest.raises(InvalidPathError):
        await store.put("x", b"x", mode="create")
    with pytest.raises(BlobNotFoundError):
        await store.get("x")
    await store.delete("x")
    assert await listed(store) == ["a", "x/y"]


# --- failures ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_disk_full_is_unavailable_and_leaves_the_old_blob(
    store: LocalStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.put("full", b"old")
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            real_write(fd, bytes(data)[:10])  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    for mode in ("overwrite", "create"):
        with pytest.raises(StoreUnavailableError) as got:
            await store.put("full" if mode == "overwrite" else "other", payload(1000), mode=mode)
        assert isinstance(got.value.__cause__, OSError)
        assert got.value.__cause__.errno == errno.ENOSPC
    monkeypatch.undo()
    assert await read(store, "full") == b"old"
    assert await listed(store) == ["full"]
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_permission_denied_is_unavailable(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def deny_temp(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if isinstance(path, str) and path.startswith(TEMP_PREFIX):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", deny_temp)
    with pytest.raises(StoreUnavailableError) as got:
        await store.put("p", b"x")
    assert isinstance(got.value.__cause__, PermissionError)
    monkeypatch.undo()
    assert await listed(store) == []


@pytest.mark.anyio
@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
async def test_a_read_only_directory_is_unavailable(store: LocalStore, root: Path) -> None:
    await store.put("ro/old", b"x")
    (root / "ro").chmod(0o555)
    try:
        with pytest.raises(StoreUnavailableError) as got:
            await store.put("ro/new", b"x")
        assert isinstance(got.value.__cause__, PermissionError)
    finally:
        (root / "ro").chmod(0o755)


@pytest.mark.anyio
async def test_a_vanished_root_is_unavailable_not_empty(store: LocalStore, root: Path) -> None:
    await store.put("p", b"x")
    (root / "p").unlink()
    root.rmdir()
    with pytest.raises(StoreUnavailableError):
        await store.get("p")
    with pytest.raises(StoreUnavailableError):
        await store.head("p")
    with pytest.raises(StoreUnavailableError):
        await listed(store)


def test_a_root_that_is_a_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreUnavailableError):
        LocalStore(tmp_path / "file")


# --- URLs ----------------------------------------------------------------------------


def test_from_url_opens_the_directory(tmp_path: Path) -> None:
    root = tmp_path / "dir with space é"
    store = LocalStore.from_url(root.as_uri())
    assert store.root == root.resolve()
    assert store.url == root.resolve().as_uri()
    assert root.is_dir()
    assert LocalStore.from_url(f"file://localhost{root}").root == root.resolve()


@pytest.mark.parametrize(
    "url",
    ["http://example.com/x", "file://otherhost/x", "file:///tmp/x?mode=1", "file:///", "memory://"],
)
def test_from_url_refuses_other_urls(url: str) -> None:
    with pytest.raises(ValueError):
        LocalStore.from_url(url)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 000 for the test: what the store asks for is exactly what it gets."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["put", "put_many"])
async def test_blobs_and_their_directories_are_owner_only(
    tmp_path: Path, open_umask: None, how: str
) -> None:
    # Issue 14 item 10: blobs were created 0644 (readable by every local user). Even with
    # umask 000 they are 0600 in 0700 directories, the root included when the store makes it.
    root = tmp_path / "blobs"
    store = LocalStore(root)
    paths = ["originals/ab/cd/" + "a" * 64, "renditions/default@x/ab/cd/b.jpg"]
    if how == "put":
        for path in paths:
            await store.put(path, b"bytes")
    else:
        await store.put_many([(path, b"bytes") for path in paths])
    modes = {}
    for path in paths:
        modes[path] = stat.S_IMODE((root / path).stat().st_mode)
        parent = (root / path).parent
        while parent != tmp_path:
            modes[str(parent.relative_to(tmp_path))] = stat.S_IMODE(parent.stat().st_mode)
            parent = parent.parent
    expected = {name: 0o600 if name in paths else 0o700 for name in modes}
    assert {k: oct(v) for k, v in modes.items()} == {k: oct(v) for k, v in expected.items()}
    await store.close()


@pytest.mark.anyio
async def test_a_stricter_umask_still_applies(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        store = LocalStore(tmp_path / "blobs")
        await store.put("a/b", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "blobs" / "a" / "b").stat().st_mode) == 0o600
    await store.close()


# --- put: the group commit of concurrent callers (imgest.storage.commits) ---------------


@pytest.fixture
async def grouped(root: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LocalStore]:
    """A store whose puts go to the committer (on whatever filesystem the tests run on)."""
    monkeypatch.setattr(LocalStore, "_group_commit", True)
    store = LocalStore(root)
    yield store
    await store.close()


@dataclass
class Journal:
    """What reached the disk, in order: ("write", name) for a temp file's bytes, ("link",
    name) when a blob takes its name, ("syncfs", "") for a flush, ("ack", name) when a put
    returned to its caller."""

    events: list[tuple[str, str]] = field(default_factory=list)
    hold_first_flush: threading.Event | None = None
    in_first_flush: threading.Event = field(default_factory=threading.Event)

    async def flushing(self) -> None:
        """Wait until the committer is in its first flush."""
        with anyio.fail_after(10):
            while not self.in_first_flush.is_set():
                await anyio.sleep(0.001)

    def durable(self, name: str) -> bool:
        """Whether the blob's bytes and its name were each flushed before its put returned."""
        kinds = [(kind, n) for kind, n in self.events]
        ack = kinds.index(("ack", name))
        link = kinds.index(("link", name))
        syncs = [i for i, (kind, _) in enumerate(kinds) if kind == "syncfs"]
        return any(i < link for i in syncs) and any(link < i < ack for i in syncs)


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> Journal:
    """Record every flush, write and link of the committer (a fake syncfs that records
    order and may hold the first flush until the test lets it go)."""
    journal = Journal()
    real_link, real_write_all = os.link, local._write_all

    def syncfs(fd: int) -> None:
        hold = journal.hold_first_flush
        if not any(kind == "syncfs" for kind, _ in journal.events):
            journal.in_first_flush.set()
            if hold is not None:
                assert hold.wait(10)
        journal.events.append(("syncfs", ""))

    def link(src: str, dst: str, **kwargs: Any) -> None:
        real_link(src, dst, **kwargs)
        journal.events.append(("link", dst))

    def write_all(fd: int, data: bytes) -> None:
        if data == b"bad":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_all(fd, data)
        journal.events.append(("write", data.decode(errors="replace")))

    def fsync(fd: int) -> None:
        raise AssertionError("the committer flushes with syncfs, never one fsync per blob")

    monkeypatch.setattr(local, "syncfs", syncfs)
    monkeypatch.setattr(local, "_write_all", write_all)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "fsync", fsync)
    return journal


async def acked_put(store: LocalStore, journal: Journal, name: str, data: bytes) -> BlobMeta:
    meta = await store.put(f"g/{name}", data, mode="create")
    journal.events.append(("ack", name))
    return meta


async def queued(store: LocalStore, callers: int) -> None:
    """Wait until `callers` puts wait in the committer's queue."""
    with anyio.fail_after(10):
        while len(store.committer._queue) < callers:
            await anyio.sleep(0.001)


@pytest.mark.anyio
async def test_concurrent_puts_share_flushes_and_each_returns_only_once_durable(
    grouped: LocalStore, root: Path, journal: Journal
) -> None:
    journal.hold_first_flush = threading.Event()
    names = [f"b{i}" for i in range(8)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(acked_put, grouped, journal, names[0], b"b0")
        await journal.flushing()
        for name in names[1:]:
            tg.start_soon(acked_put, grouped, journal, name, name.encode())
        await queued(grouped, 7)  # the first is in its flush; seven wait for the next
        assert not any(kind == "ack" for kind, _ in journal.events)
        journal.hold_first_flush.set()
    assert all(journal.durable(name) for name in names), journal.events
    # two batches (the first put alone, then the seven that came during its flush): four
    # flushes and two thread hand-offs for eight puts, instead of sixteen fsyncs and eight
    assert grouped.committer.batches == 2
    assert [kind for kind, _ in journal.events].count("syncfs") == 4
    for name in names:
        assert (root / "g" / name).read_bytes() == name.encode()
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_a_failing_put_in_a_batch_fails_only_its_caller(
    grouped: LocalStore, root: Path, journal: Journal
) -> None:
    results: dict[str, BlobMeta | BaseException] = {}

    async def one(name: str, data: bytes) -> None:
        try:
            results[name] = await acked_put(grouped, journal, name, data)
        except StoreUnavailableError as exc:
            results[name] = exc

    await grouped.put("there", b"x")
    journal.events.clear()
    journal.in_first_flush.clear()
    journal.hold_first_flush = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "first", b"1")
        await journal.flushing()
        for name, data in (("a", b"a"), ("bad", b"bad"), ("c", b"c")):
            tg.start_soon(one, name, data)
        await queued(grouped, 3)
        journal.hold_first_flush.set()
        exists = grouped.put("there", b"y", mode="create")  # another kind of failure
        with pytest.raises(BlobExistsError):
            await exists
    bad = results.pop("bad")
    assert isinstance(bad, StoreUnavailableError) and "No space left" in str(bad)
    assert all(isinstance(meta, BlobMeta) for meta in results.values())
    assert all(journal.durable(name) for name in results)
    assert sorted(p.name for p in (root / "g").iterdir()) == ["a", "c", "first"]
    assert (root / "there").read_bytes() == b"x"
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_a_failed_flush_fails_every_put_of_its_batch_and_only_those(
    grouped: LocalStore, root: Path, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes = 0
    gate, flushing = threading.Event(), threading.Event()

    def syncfs(fd: int) -> None:
        nonlocal flushes
        flushes += 1
        if flushes == 1:
            flushing.set()
            assert gate.wait(10)
        if flushes == 3:  # the second batch's first flush
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(local, "syncfs", syncfs)
    async with anyio.create_task_group() as tg:
        tg.start_soon(grouped.put, "ok", b"1")
        with anyio.fail_after(10):
            while not flushing.is_set():
                await anyio.sleep(0.001)
        failed: list[BaseException] = []

        async def doomed(path: str) -> None:
            try:
                await grouped.put(path, b"2")
            except StoreUnavailableError as exc:
                failed.append(exc)

        tg.start_soon(doomed, "x")
        tg.start_soon(doomed, "y/z")
        await queued(grouped, 2)
        gate.set()
    assert len(failed) == 2
    assert all(isinstance(e.__cause__, OSError) for e in failed)
    assert await listed(grouped) == ["ok"]  # nothing named before its bytes were flushed
    await grouped.put("after", b"3")  # the committer goes on
    assert await listed(grouped) == ["after", "ok"]
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_many_concurrent_puts_from_two_event_loops_are_all_stored(
    grouped: LocalStore, root: Path
) -> None:
    blobs = {f"c/{i:02x}/{i}": payload(1000 + i, seed=i) for i in range(48)}
    items = sorted(blobs.items())

    async def put_all(part: list[tuple[str, bytes]]) -> list[BlobMeta]:
        return await asyncio.gather(*(grouped.put(p, d, mode="create") for p, d in part))

    # a second loop in a thread, as a rescore worker's portal: one committer serves both
    other = anyio.to_thread.run_sync(lambda: asyncio.run(put_all(items[::2])))
    metas_a, metas_b = await asyncio.gather(other, put_all(items[1::2]))
    assert [m.path for m in [*metas_a, *metas_b]] == [p for p, _ in items[::2] + items[1::2]]
    for path, data in items:
        assert (root / path).read_bytes() == data
    assert grouped.committer.items == 48 and grouped.committer.batches < 48
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_a_put_cancelled_while_queued_leaves_the_committer_working(
    grouped: LocalStore, root: Path, journal: Journal
) -> None:
    journal.hold_first_flush = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(grouped.put, "first", b"1")
        await journal.flushing()
        with anyio.move_on_after(0.05):
            await grouped.put("gave-up", b"2")  # queued behind the held flush, then cancelled
        journal.hold_first_flush.set()
    assert (await grouped.put("later", b"3")).size == 1
    # the cancelled caller's blob may be written (an orphan for gc), never partly
    assert {p.name for p in root.iterdir()} <= {"first", "gave-up", "later"}
    assert temp_files(root) == []


@pytest.mark.anyio
async def test_the_committer_thread_ends_when_idle(
    grouped: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commits, "IDLE_S", 0.05)

    def committers() -> int:
        return sum(t.name == "imgest-group-commit" and t.is_alive() for t in threading.enumerate())

    before = committers()
    await grouped.put("a", b"1")
    with anyio.fail_after(5):
        while committers() > before:
            await anyio.sleep(0.01)
    assert (await grouped.put("b", b"2")).size == 1  # started again


def test_the_setting_turns_the_group_commit_off(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgest.config import Settings
    from imgest.runtime import Runtime

    monkeypatch.setattr(local, "filesystem_type", lambda fd: 0xEF53)  # ext4
    for wanted in (True, False):
        settings = Settings(storage_url=str(root), storage_group_commit=wanted)
        store = Runtime(settings).open_store().inner
        assert isinstance(store, LocalStore)
        assert store._group_commit is (wanted and local._SYNCFS is not None)


@pytest.mark.anyio
@pytest.mark.parametrize("grouped", [True, False], ids=["group-commit", "fsync-each"])
@pytest.mark.parametrize("drop", [True, False], ids=["drop-cache", "keep-cache"])
async def test_a_blobs_pages_leave_the_cache_only_once_it_is_durable(
    root: Path, monkeypatch: pytest.MonkeyPatch, grouped: bool, drop: bool
) -> None:
    """With drop_cache, every blob gets DONTNEED advice on its own inode, and only after
    the flush that made its bytes durable (dirty pages are never advised away)."""
    events: list[tuple[str, int]] = []
    real_fsync, real_syncfs, real_fadvise = os.fsync, local.syncfs, os.posix_fadvise

    def fsync(fd: int) -> None:
        real_fsync(fd)
        events.append(("flush", os.fstat(fd).st_ino))

    def syncfs(fd: int) -> None:
        real_syncfs(fd)
        events.append(("flush", -1))  # the whole filesystem

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        real_fadvise(fd, offset, length, advice)
        assert (offset, length, advice) == (0, 0, os.POSIX_FADV_DONTNEED)
        events.append(("dontneed", os.fstat(fd).st_ino))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(local, "syncfs", syncfs)
    monkeypatch.setattr(os, "posix_fadvise", fadvise)
    monkeypatch.setattr(LocalStore, "_group_commit", grouped)
    store = LocalStore(root, group_commit=grouped, drop_cache=drop)
    try:
        metas = await store.put_many([("a/one", b"1" * 70_000), ("b/two", b"2" * 30_000)])
    finally:
        await store.close()
    inodes = {m.etag.split("-")[0] for m in metas if isinstance(m, BlobMeta)}
    advised = [ino for kind, ino in events if kind == "dontneed"]
    assert {f"{ino:x}" for ino in advised} == (inodes if drop else set())
    assert len(advised) == (2 if drop else 0)
    for ino in advised:  # each advice comes after a flush that covered that blob's bytes
        first = events.index(("dontneed", ino))
        assert any(k == "flush" and i in (ino, -1) for k, i in events[:first])
    assert (root / "a" / "one").read_bytes() == b"1" * 70_000


def test_the_setting_keeps_the_page_cache(root: Path) -> None:
    from imgest.config import Settings
    from imgest.runtime import Runtime

    for wanted in (True, False):
        settings = Settings(storage_url=str(root), storage_drop_cache=wanted)
        store = Runtime(settings).open_store().inner
        assert isinstance(store, LocalStore)
        assert store.drop_cache is wanted
