"""API-key authentication as FastAPI dependencies: Bearer token -> key -> scope check.

`by_method` guards a whole router by HTTP method (GET/HEAD read, POST upload, PUT/PATCH
upload or admin, DELETE admin); `require("upload", "admin")` guards one route with explicit
scopes (any of them). Both do nothing while the `auth` setting is "off".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import anyio.to_thread
from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from imgest.catalog.keys import ApiKey, KeyStore
from imgest.errors import InsufficientScope, InvalidToken, Unauthorized

bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `imgest keys create` (when the server runs with auth=keys).",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]

METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "GET": ("read",),
    "HEAD": ("read",),
    "POST": ("upload",),
    "PUT": ("upload", "admin"),
    "PATCH": ("upload", "admin"),
    "DELETE": ("admin",),
}


async def authorize(
    request: Request, credentials: HTTPAuthorizationCredentials | None, any_of: tuple[str, ...]
) -> ApiKey | None:
    """The caller's key if it holds one of `any_of`; None when auth is off; else 401/403."""
    if request.app.state.settings.auth == "off":
        return None
    if credentials is None:
        raise Unauthorized()
    keys: KeyStore = request.app.state.keys
    key = await anyio.to_thread.run_sync(keys.verify, credentials.credentials)
    if key is None:
        raise InvalidToken()
    request.state.api_key = key
    if not key.allows(*any_of):
        raise InsufficientScope(f"This request needs the scope {' or '.join(any_of)}.")
    return key


def require(*any_of: str) -> Callable[[Request, Credentials], Awaitable[ApiKey | None]]:
    """A dependency that admits keys holding any of these scopes."""

    async def dependency(request: Request, credentials: Credentials) -> ApiKey | None:
        return await authorize(request, credentials, any_of)

    return dependency


async def by_method(request: Request, credentials: Credentials) -> ApiKey | None:
    """A dependency that picks the scope from the HTTP method (unknown methods need admin)."""
    return await authorize(request, credentials, METHOD_SCOPES.get(request.method, ("admin",)))
