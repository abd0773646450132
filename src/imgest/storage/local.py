"""LocalStore: blobs as files under one directory, written atomically and durably.

How a put works: the bytes go to a temp file (`.imgest-tmp-<random>`) in the target's own
directory, are flushed with `os.fsync`, and the temp file then takes the blob's name at once:
`os.replace` for mode="overwrite", `os.link` for mode="create" (atomic fail-if-exists), and
the directory is fsynced. Readers and `list` therefore see either the old blob or the whole
new one, never a part. A crashed writer leaves only a temp file, which `list` never reports
and which is removed at start once older than `stale_temp_after` seconds.

Safety: paths pass `validate_path`, and every directory below the root is opened relative to
its parent with O_NOFOLLOW, so no operation follows a symlink inside the root (one pointing
outside cannot be read or written through; symlinks are not blobs). Path segments starting
with `.imgest-tmp-` are reserved. POSIX only (uses `dir_fd`).

A local filesystem cannot hold both `a` and `a/b`; a put that would need that raises
InvalidPathError (the content-addressed layout never does). Directories emptied by `delete`
stay in place: removing them could race with a concurrent put into the same directory.

Permissions: blobs are created 0600 and directories 0700, owner only. The store is read
through imgest (the API serves blobs itself; gc, fsck, export and rescore run as the same
user), and uploads are people's photos, so no other account on the host has a reason to
read them: the 0644/0755 a default umask gives would hand them to every local user and
service. The mode is passed to open/mkdir, so the umask still applies but can only take
bits away: a stricter umask (e.g. 077 already) changes nothing, a looser one (000) cannot
widen it. A second reader (a backup agent) should run as the store's user, or be granted
access to the tree explicitly. A root given by the operator that already exists keeps its
mode; files and directories made before this rule keep theirs.

Page cache: once a blob is durable its pages are clean, and (with `drop_cache`, setting
`storage_drop_cache`, on by default) the store tells the kernel it will not read them soon
(`posix_fadvise(POSIX_FADV_DONTNEED)`, where the platform has it): uploads written once and
read rarely then do not push out the cache the rest of the host uses, and the kernel reuses
those pages for the next write at once. On the machines `bench/ingest_floor.py` ran on, that
made the store step of a 12 MP upload several times cheaper in CPU (docs/benchmarks.md); the
cost is that a blob read right after its put (an on-demand rendition of a new upload) comes
from disk. Dirty pages are never dropped: the advice is given only after the flush.

`etag` is `<inode>-<size>-<mtime_ns>` in hex: each put makes a new inode while the previous
version still exists, so consecutive versions always differ, even within one mtime tick.

Group commit: on Linux filesystems whose `syncfs` flushes to stable storage (ext4, XFS,
Btrfs, F2FS, ZFS, overlayfs, tmpfs), every `put` and `put_many` goes to one committer thread
(`imgest.storage.commits.GroupCommit`) that writes the blobs of all callers waiting at the
time as one batch: every temp file is written, one `syncfs` makes them (and any new
directories) durable, every temp file takes its name, and a second `syncfs` makes the names
durable. That is two flushes per filesystem per batch of concurrent puts (the blobs of
concurrent uploads, a rescore batch) instead of two or three fsyncs per blob, and one thread
hand-off per batch instead of one per put; each caller is still answered only once its own
blob is durable, and a blob that fails fails only its caller. Anywhere else, or with
`group_commit=False` (setting `storage_group_commit`: a store sharing its filesystem with a
busy database, whose dirty pages a syncfs would flush too), each put fsyncs on its own.

Why one long module: it holds LocalStore and nothing else, and what makes it long is one
concern, a safe put: temp file, fsync, atomic rename or link, directory fsync, the O_NOFOLLOW
walk below the root and owner-only modes, each needed by every operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import logging
import os
import secrets
import stat
import struct
import sys
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self, TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

import anyio.to_thread

from imgest.storage.base import (
    BlobExistsError,
    BlobMeta,
    BlobNotFoundError,
    InvalidPathError,
    OneShotReader,
    PutMode,
    StoreError,
    StoreOptions,
    StoreUnavailableError,
    validate_path,
    validate_prefix,
)
from imgest.storage.commits import GroupCommit

log = logging.getLogger(__name__)

TEMP_PREFIX = ".imgest-tmp-"
FILE_MODE = 0o600  # blobs: owner read/write (see the module docstring)
DIR_MODE = 0o700  # fan-out directories and a root this store creates

_T = TypeVar("_T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW
# O_NONBLOCK: opening a FIFO someone left in the tree must not hang; regular files ignore it.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# What a missing directory, a file where a directory should be, or a symlink look like.
_NOT_A_DIR = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
# One put for the committer: path, its segments, the bytes, the mode.
_Item = tuple[str, Sequence[str], bytes, PutMode]


def _utc(mtime_ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=mtime_ns // 1000)


def _meta(path: str, st: os.stat_result) -> BlobMeta:
    etag = f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"
    return BlobMeta(path, st.st_size, _utc(st.st_mtime_ns), etag)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", None)  # None where there is no fadvise (macOS)


def _drop_cache(fd: int) -> None:
    """Advise the kernel that `fd`'s (clean, flushed) pages will not be read soon; advice
    only: a platform or filesystem without it changes nothing."""
    if _DONTNEED is not None:
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, _DONTNEED)


def _open_subdir(parent: int, name: str, *, create: bool, sync: bool = True) -> int:
    """Open directory `name` inside `parent` without following a symlink; maybe create it
    (and fsync `parent`, unless the caller flushes the whole filesystem later: sync=False)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):  # a concurrent writer made it
        os.mkdir(name, DIR_MODE, dir_fd=parent)
    if sync:
        os.fsync(parent)  # the new entry must survive a crash as much as the blob itself
    return os.open(name, _DIR_FLAGS, dir_fd=parent)


# Filesystems (statfs f_type) whose syncfs writes every dirty page and the journal through to
# stable storage: ext2/3/4, XFS, Btrfs, F2FS, ZFS, overlayfs (it syncs its upper layer), tmpfs
# (nothing to write). FUSE and network filesystems are left out: their syncfs may not reach
# the server's disks.
GROUP_COMMIT_FILESYSTEMS = frozenset(
    {0xEF53, 0x58465342, 0x9123683E, 0xF2F52010, 0x2FC12FC1, 0x794C7630, 0x01021994}
)


def _libc_function(name: str) -> Callable[..., int] | None:
    if sys.platform != "linux" or struct.calcsize("P") != 8:  # statfs layout: 64-bit Linux
        return None
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_SYNCFS = _libc_function("syncfs")
_FSTATFS = _libc_function("fstatfs")


def syncfs(fd: int) -> None:
    """Flush the whole filesystem holding `fd` to stable storage (Linux syncfs(2))."""
    if _SYNCFS is None:
        raise OSError(errno.ENOSYS, "syncfs is not available here")
    if _SYNCFS(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"syncfs: {os.strerror(code)}")


def filesystem_type(fd: int) -> int | None:
    """statfs's f_type (the filesystem's magic number) for `fd`, or None where unknown."""
    if _FSTATFS is None:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _FSTATFS(fd, buf) != 0:
        return None
    return int(ctypes.c_long.from_buffer(buf).value)


@dataclass
class _Staged:
    """A blob written to its temp file in its directory, not yet under its name."""

    path: str
    dfd: int
    tmp: str
    name: str
    st: os.stat_result | None = None

    def drop_cache(self) -> None:
        """`_drop_cache` for the temp file (flushed by then), opened again by name."""
        with contextlib.suppress(OSError):
            fd = os.open(self.tmp, _READ_FLAGS, dir_fd=self.dfd)
            try:
                _drop_cache(fd)
            finally:
                os.close(fd)

    def discard(self) -> None:
        """Remove the temp file if it is still there (a failed or unfinished put) and close
        the directory."""
        try:
            os.unlink(self.tmp, dir_fd=self.dfd)
        except FileNotFoundError:
            pass  # renamed into place or already removed
        except OSError:
            log.warning("could not remove temp file %s", self.tmp, exc_info=True)
        finally:
            os.close(self.dfd)


def remove_stale_temps(root: Path, older_than: float) -> int:
    """Delete temp files a crashed writer left anywhere under `root`; return how many."""
    cutoff = time.time() - older_than
    removed = 0
    for dirpath, _dirnames, filenames in os.walk(root):  # never follows symlinks
        for name in filenames:
            if not name.startswith(TEMP_PREFIX):
                continue
            full = os.path.join(dirpath, name)
            try:
                if os.lstat(full).st_mtime < cutoff:
                    os.unlink(full)
                    removed += 1
            except FileNotFoundError:
                pass
            except OSError:
                log.warning("could not remove stale temp file %s", full, exc_info=True)
    if removed:
        log.info("removed %d stale temp file(s) under %s", removed, root)
    return removed


class FileReader(OneShotReader):
    """A BlobReader over an open file descriptor.

    The descriptor is opened by `get`, so the reader keeps the version it opened even if the
    blob is deleted or replaced afterwards. It is closed when the stream ends or is closed,
    after `read()`, or when the reader is garbage-collected unread.
    """

    def __init__(self, meta: BlobMeta, fd: int) -> None:
        super().__init__(meta)
        self._fd = fd
        self._close = weakref.finalize(self, os.close, fd)

    async def _chunks(self, chunk_size: int) -> AsyncIterator[bytes]:
        # Each chunk is read off the event loop.
        try:
            while chunk := await self._run(os.read, self._fd, chunk_size):
                yield chunk
        finally:
            self._close()

    async def read(self) -> bytes:
        """The whole file."""
        self._take()
        try:
            return await self._run(self._read_all)
        finally:
            self._close()

    def _read_all(self) -> bytes:
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except OSError as exc:
            raise StoreUnavailableError(f"reading {self.meta.path!r} failed: {exc}") from exc


class LocalStore:
    """A BlobStore on a local directory: one file per blob at its path under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        stale_temp_after: float = 900.0,
        group_commit: bool = True,
        drop_cache: bool = True,
    ) -> None:
        """Create `root` if needed and remove stale temp files under it (blocking I/O: start-up).

        `group_commit`: batch concurrent puts into one flush where the filesystem allows it
        (see the module's docstring); False: every put fsyncs on its own. `drop_cache`: once
        a blob is durable, advise the kernel to drop its pages from the page cache."""
        if stale_temp_after < 0:
            raise ValueError(f"stale_temp_after must be >= 0, not {stale_temp_after}")
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()
        self.stale_temp_after = stale_temp_after
        self.group_commit = group_commit
        self.drop_cache = drop_cache
        self.committer = GroupCommit[_Item, BlobMeta | StoreError](
            self._put_many, name="imgest-group-commit"
        )
        self._closed = False
        try:
            self.root.mkdir(DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create store root {self.root}: {exc}") from exc
        remove_stale_temps(self.root, stale_temp_after)

    @classmethod
    def from_url(cls, url: str, *, options: StoreOptions | None = None) -> Self:
        """A store on the directory named by `file:///abs/path` (host empty or localhost);
        of `options`, only `group_commit` and `drop_cache` apply."""
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError(f"not a local file URL (want file:///abs/path): {url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"file store URLs take no query or fragment: {url!r}")
        path = Path(url2pathname(parts.path))
        if not path.is_absolute() or path == Path("/"):
            raise ValueError(f"file store URL must name an absolute directory: {url!r}")
        options = options or StoreOptions()
        return cls(path, group_commit=options.group_commit, drop_cache=options.drop_cache)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # --- helpers -------------------------------------------------------------------------

    def _parts(self, path: str) -> Sequence[str]:
        parts = validate_path(path).split("/")
        if any(part.startswith(TEMP_PREFIX) for part in parts):
            raise InvalidPathError(f"blob path segments may not start with {TEMP_PREFIX!r}")
        return parts

    def _open_dir(self, parts: Sequence[str], *, create: bool, sync: bool = True) -> int:
        """Open root/<parts...> as a directory fd, never following symlinks below root."""
        try:
            fd = os.open(self.root, _ROOT_FLAGS)
        except OSError as exc:  # never "not found": a vanished root is an outage
            raise StoreUnavailableError(f"cannot open store root {self.root}: {exc}") from exc
        try:
            for name in parts:
                child = _open_subdir(fd, name, create=create, sync=sync)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    async def _run(self, what: str, fn: Callable[..., _T], *args: object) -> _T:
        """Run blocking `fn` in a worker thread; an unexpected OSError means unavailable."""
        if self._closed:
            raise StoreUnavailableError(f"store {self.url} is closed")
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except OSError as exc:
            raise StoreUnavailableError(f"{self!r}: {what} failed: {exc}") from exc

    # --- BlobStore ---------------------------------------------------------------------

    async def put(self, path: str, data: bytes, *, mode: PutMode = "overwrite") -> BlobMeta:
        """Write `data` to a temp file, fsync it, then give it the blob's name atomically."""
        parts = self._parts(path)
        if mode not in ("create", "overwrite"):
            raise ValueError(f"mode must be 'create' or 'overwrite', not {mode!r}")
        if not self._group_commit:
            return await self._run(f"put {path!r}", self._put, path, parts, data, mode)
        (result,) = await self._committed(f"put {path!r}", [(path, parts, data, mode)])
        if isinstance(result, StoreError):
            raise result
        return result

    async def _committed(self, what: str, items: list[_Item]) -> Sequence[BlobMeta | StoreError]:
        """`items` written by the committer with the other callers' of the moment."""
        if self._closed:
            raise StoreUnavailableError(f"store {self.url} is closed")
        try:
            return await self.committer.submit(items)
        except OSError as exc:  # the batch's flush failed: none of it is known durable
            raise StoreUnavailableError(f"{self!r}: {what} failed: {exc}") from exc

    def _put(self, path: str, parts: Sequence[str], data: bytes, mode: PutMode) -> BlobMeta:
        staged = self._stage(path, parts, data, sync=True)
        try:
            self._commit(staged, mode)
            os.fsync(staged.dfd)
        finally:
            staged.discard()
        assert staged.st is not None
        return _meta(path, staged.st)  # same inode and mtime as the blob now at `path`

    def _stage(self, path: str, parts: Sequence[str], data: bytes, *, sync: bool) -> _Staged:
        """Write `data` to a new temp file in the blob's directory (fsynced if `sync`)."""
        *dirs, name = parts
        try:
            dfd = self._open_dir(dirs, create=True, sync=sync)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise InvalidPathError(
                    f"{path!r} passes through a file or a symlink in {self.root}"
                ) from exc
            raise
        try:
            self._check_not_dir(dfd, path, name)
            staged = _Staged(path, dfd, TEMP_PREFIX + secrets.token_hex(8), name)
            fd = os.open(staged.tmp, _TEMP_FLAGS, FILE_MODE, dir_fd=dfd)
        except BaseException:
            os.close(dfd)
            raise
        try:
            try:
                _write_all(fd, data)
                if sync:
                    os.fsync(fd)
                    if self.drop_cache:
                        _drop_cache(fd)
                staged.st = os.fstat(fd)
            finally:
                os.close(fd)
        except BaseException:
            staged.discard()
            raise
        return staged

    def _commit(self, staged: _Staged, mode: PutMode) -> None:
        """Give a staged temp file its blob's name at once (replace, or link if absent)."""
        dfd, tmp, name = staged.dfd, staged.tmp, staged.name
        try:
            if mode == "overwrite":
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                return
            try:
                os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            except FileExistsError:
                raise BlobExistsError(staged.path) from None
            finally:
                os.unlink(tmp, dir_fd=dfd)
        except IsADirectoryError as exc:  # a directory appeared at the name meanwhile
            raise InvalidPathError(f"{staged.path!r} is a directory in {self.root}") from exc

    async def put_many(
        self, blobs: Sequence[tuple[str, bytes]], *, mode: PutMode = "create"
    ) -> list[BlobMeta | StoreError]:
        """Put every (path, data), durably, each as `put` would: the BlobMeta of each, or the
        StoreError that blob got (BlobExistsError, InvalidPathError...), in order.

        On a filesystem listed in GROUP_COMMIT_FILESYSTEMS the batch is one group commit in
        one worker thread (see the module's docstring); elsewhere the puts run concurrently.
        A failed flush fails the whole batch (StoreUnavailableError).
        """
        if mode not in ("create", "overwrite"):
            raise ValueError(f"mode must be 'create' or 'overwrite', not {mode!r}")
        results: list[BlobMeta | StoreError | None] = [None] * len(blobs)
        valid: list[tuple[int, _Item]] = []
        for i, (path, data) in enumerate(blobs):
            try:
                valid.append((i, (path, self._parts(path), data, mode)))
            except StoreError as exc:
                results[i] = exc
        done: Sequence[BlobMeta | BaseException]
        if valid and self._group_commit:
            done = await self._committed("put_many", [item for _, item in valid])
        else:
            done = await asyncio.gather(
                *(self.put(path, data, mode=mode) for _, (path, _, data, _) in valid),
                return_exceptions=True,
            )
        for (i, _), result in zip(valid, done, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, StoreError):
                raise result
            results[i] = result
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    @functools.cached_property
    def _group_commit(self) -> bool:
        """Whether puts go to the committer (syncfs): wanted, and the root's filesystem is
        known to flush."""
        if _SYNCFS is None or not self.group_commit:
            return False
        fd = os.open(self.root, _ROOT_FLAGS)
        try:
            return filesystem_type(fd) in GROUP_COMMIT_FILESYSTEMS
        finally:
            os.close(fd)

    def _put_many(self, blobs: list[_Item]) -> list[BlobMeta | StoreError]:
        """The committer's flush: stage all, syncfs, name all, syncfs (blocking)."""
        results: list[BlobMeta | StoreError | None] = [None] * len(blobs)
        staged: dict[int, tuple[_Staged, PutMode]] = {}
        try:
            for n, (path, parts, data, mode) in enumerate(blobs):
                try:
                    staged[n] = (self._stage(path, parts, data, sync=False), mode)
                except StoreError as exc:
                    results[n] = exc
                except OSError as exc:
                    results[n] = StoreUnavailableError(f"{self!r}: put {path!r} failed: {exc}")
            self._sync(one for one, _ in staged.values())  # the temp files, new directories
            if self.drop_cache:
                for one, _ in staged.values():
                    one.drop_cache()
            named: list[int] = []
            for n, (one, mode) in staged.items():
                try:
                    self._commit(one, mode)
                    named.append(n)
                except StoreError as exc:
                    results[n] = exc
                except OSError as exc:
                    results[n] = StoreUnavailableError(f"{self!r}: put {one.path!r}: {exc}")
            self._sync(staged[n][0] for n in named)  # the names
            for n in named:
                one = staged[n][0]
                assert one.st is not None
                results[n] = _meta(one.path, one.st)
        finally:
            for one, _ in staged.values():
                one.discard()
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    @staticmethod
    def _sync(staged: Iterable[_Staged]) -> None:
        """syncfs once per filesystem these blobs' directories are on (the root may have
        other filesystems mounted below it)."""
        devices = set()
        for one in staged:
            device = os.fstat(one.dfd).st_dev
            if device not in devices:
                devices.add(device)
                syncfs(one.dfd)

    @staticmethod
    def _check_not_dir(dfd: int, path: str, name: str) -> None:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise InvalidPathError(f"{path!r} is a directory (it holds other blobs)")

    async def get(self, path: str) -> FileReader:
        """Open the blob's file; the reader keeps that version even if it is replaced."""
        parts = self._parts(path)
        fd, st = await self._run(f"get {path!r}", self._open_file, path, parts)
        return FileReader(_meta(path, st), fd)

    def _open_file(self, path: str, parts: Sequence[str]) -> tuple[int, os.stat_result]:
        *dirs, name = parts
        try:
            dfd = self._open_dir(dirs, create=False)
        except OSError as exc:
            if exc.errno in _NOT_A_DIR:
                raise BlobNotFoundError(path) from None
            raise
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in _NOT_A_DIR:
                raise BlobNotFoundError(path) from None
            raise
        finally:
            os.close(dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BlobNotFoundError(path)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    async def head(self, path: str) -> BlobMeta:
        """Size, mtime and etag of the blob's file."""
        parts = self._parts(path)
        return await self._run(f"head {path!r}", self._head, path, parts)

    def _head(self, path: str, parts: Sequence[str]) -> BlobMeta:
        st = self._lstat(parts)
        if st is None or not stat.S_ISREG(st.st_mode):
            raise BlobNotFoundError(path)
        return _meta(path, st)

    def _lstat(self, parts: Sequence[str]) -> os.stat_result | None:
        *dirs, name = parts
        try:
            dfd = self._open_dir(dirs, create=False)
        except OSError as exc:
            if exc.errno in _NOT_A_DIR:
                return None
            raise
        try:
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _NOT_A_DIR:
                return None
            raise
        finally:
            os.close(dfd)

    async def list(self, prefix: str = "") -> AsyncIterator[BlobMeta]:
        """Walk the tree below `prefix` one directory per worker-thread call."""
        validate_prefix(prefix)
        *start, first = prefix.split("/")
        # Each entry: the directory's segments below root, and the name prefix its entries
        # must have (only the start directory filters names; below it everything matches).
        pending: list[tuple[tuple[str, ...], str]] = [(tuple(start), first)]
        while pending:
            dirs, name_prefix = pending.pop()
            files, subdirs = await self._run(f"list {prefix!r}", self._scan, dirs, name_prefix)
            for meta in files:
                yield meta
            pending.extend((sub, "") for sub in reversed(subdirs))

    def _scan(
        self, dirs: tuple[str, ...], name_prefix: str
    ) -> tuple[Sequence[BlobMeta], Sequence[tuple[str, ...]]]:
        """The blobs and subdirectories directly in root/<dirs> whose names match."""
        files: list[BlobMeta] = []
        subdirs: list[tuple[str, ...]] = []
        try:
            dfd = self._open_dir(dirs, create=False)
        except OSError as exc:
            if exc.errno in _NOT_A_DIR:
                return files, subdirs
            raise
        try:
            with os.scandir(dfd) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                name = entry.name
                if not name.startswith(name_prefix) or name.startswith(TEMP_PREFIX):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append((*dirs, name))
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        files.append(_meta("/".join((*dirs, name)), st))
                except FileNotFoundError:
                    pass  # deleted while we looked
        finally:
            os.close(dfd)
        return files, subdirs

    async def delete(self, path: str) -> None:
        """Unlink the blob's file; a missing blob (or a directory there) is left as is."""
        parts = self._parts(path)
        await self._run(f"delete {path!r}", self._delete, parts)

    def _delete(self, parts: Sequence[str]) -> None:
        *dirs, name = parts
        try:
            dfd = self._open_dir(dirs, create=False)
        except OSError as exc:
            if exc.errno in _NOT_A_DIR:
                return
            raise
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        finally:
            os.close(dfd)

    async def remove_stale_temps(self) -> int:
        """Remove temp files older than `stale_temp_after` (as at start); return how many."""
        return await self._run(
            "removing stale temp files", remove_stale_temps, self.root, self.stale_temp_after
        )

    async def close(self) -> None:
        """Mark the store closed (it holds no open files between operations)."""
        self._closed = True
