"""A blob store that stopped answering (`hung://`): every call waits for ever.

`install()` registers it beside the real backends (as an `imgest.storage` entry point
would), in this process; `python -m tests.services.hung_store ARGS` runs the `imgest`
command with it installed (for commands that must run in a process of their own).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Self

import anyio

from imgest.storage import registry
from imgest.storage.base import BlobMeta, BlobReader, PutMode
from imgest.storage.memory import MemoryStore

SCHEME = "hung"


class HungStore(MemoryStore):
    """A MemoryStore whose every call (close aside) never finishes."""

    @classmethod
    def from_url(cls, url: str) -> Self:
        """A new hung store for `hung://`."""
        return cls()

    async def put(self, path: str, data: bytes, *, mode: PutMode = "overwrite") -> BlobMeta:
        await anyio.sleep_forever()
        raise AssertionError

    async def get(self, path: str) -> BlobReader:
        await anyio.sleep_forever()
        raise AssertionError

    async def head(self, path: str) -> BlobMeta:
        await anyio.sleep_forever()
        raise AssertionError

    async def delete(self, path: str) -> None:
        await anyio.sleep_forever()

    async def list(self, prefix: str = "") -> AsyncIterator[BlobMeta]:
        await anyio.sleep_forever()
        return
        yield  # an async generator, as list() is


class _Backend:
    name = SCHEME

    def load(self) -> type[HungStore]:
        return HungStore


class _Backends:
    """The real entry points, with `hung` added."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.names = {*real.names, SCHEME}

    def select(self, *, name: str) -> Any:
        return [_Backend()] if name == SCHEME else self.real.select(name=name)


def install() -> None:
    """Make `hung://` a storage URL in this process."""
    real = registry.entry_points

    def entry_points(*, group: str) -> Any:
        return _Backends(real(group=group))

    registry.entry_points = entry_points  # type: ignore[assignment]


if __name__ == "__main__":
    install()
    from imgest.cli import main

    main()
