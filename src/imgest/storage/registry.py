"""open_store: turn a storage URL into a BlobStore, finding backends by entry point."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from imgest.storage.base import BlobStore, StoreOptions, StoreURLError

ENTRY_POINT_GROUP = "imgest.storage"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+")  # two letters at least: `C:` is a drive


def _scheme(url: str) -> str | None:
    head, sep, _ = url.partition(":")
    return head.lower() if sep and _SCHEME.fullmatch(head) else None


def open_store(url: str, *, options: StoreOptions | None = None) -> BlobStore:
    """Open the BlobStore that `url` names, choosing the backend by the URL's scheme.

    `memory://[name]`, `file:///abs/path` and plain directory paths are built in, and so are
    `azure://` and `s3://` (with the `azure` / `s3` extras installed); any other
    scheme is whatever a package registers in the `imgest.storage` entry point group: a class
    (or any object) with `from_url(url: str) -> BlobStore`, looked up by scheme name. A
    backend whose `from_url` takes an `options` keyword gets `options` (timeouts, retries).
    """
    scheme = _scheme(url)
    if scheme is None:  # a plain filesystem path, relative to the working directory
        url = Path(url).expanduser().absolute().as_uri()
        scheme = "file"
    backends = entry_points(group=ENTRY_POINT_GROUP)
    found = backends.select(name=scheme)
    if not found:
        known = ", ".join(sorted(set(backends.names))) or "none"
        # The URL itself is left out of the message: it may carry credentials.
        raise StoreURLError(f"unknown blob store scheme {scheme!r}; known schemes: {known}")
    backend = next(iter(found)).load()
    from_url = getattr(backend, "from_url", None)
    if not callable(from_url):
        raise TypeError(f"storage backend {backend!r} for {scheme!r} has no from_url(url)")
    try:
        takes_options = "options" in inspect.signature(from_url).parameters
    except (TypeError, ValueError):  # a callable without a readable signature
        takes_options = False
    try:
        store = from_url(url, options=options) if takes_options and options else from_url(url)
    except StoreURLError:
        raise
    except ValueError as exc:  # the backend's own reason, which leaves out credentials
        raise StoreURLError(f"storage URL: {exc}") from None
    if not isinstance(store, BlobStore):
        raise TypeError(f"storage backend for {scheme!r} returned {store!r}, not a BlobStore")
    return store


def local_directory(url: str) -> Path | None:
    """The absolute directory a local store URL (a path or `file://`) names; None for others."""
    scheme = _scheme(url)
    if scheme is None:
        return Path(url).expanduser().absolute()
    if scheme != "file":
        return None
    parts = urlsplit(url)
    return Path(url2pathname(parts.path)).absolute()
