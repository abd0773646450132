"""API-key authentication: Bearer token -> key -> scope check.

The request guard (`imgest.api.guard`) runs it for every request before the app sees it (so
before any body is read); routes only read the outcome. `documented` is the dependency the
`/v1` routers carry so the OpenAPI document names the Bearer scheme; `holds` asks whether the
caller may do something more than its route's scope (e.g. render a missing rendition).
"""

from __future__ import annotations

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


def scopes_for(method: str) -> tuple[str, ...]:
    """The scopes (any of) a method needs; unknown methods need admin."""
    return METHOD_SCOPES.get(method, ("admin",))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(keys: KeyStore, authorization: str | None) -> ApiKey:
    """The key an Authorization header names; Unauthorized (none) or InvalidToken (bad)."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized()
    key = await anyio.to_thread.run_sync(keys.verify, token)
    if key is None:
        raise InvalidToken()
    return key


def check_scope(key: ApiKey, any_of: tuple[str, ...]) -> None:
    """InsufficientScope unless `key` holds one of `any_of` (admin holds all)."""
    if not key.allows(*any_of):
        raise InsufficientScope(f"This request needs the scope {' or '.join(any_of)}.")


def holds(request: Request, *any_of: str) -> bool:
    """Whether the caller may act with one of these scopes (always, with auth off)."""
    if request.app.state.settings.auth == "off":
        return True
    key: ApiKey | None = getattr(request.state, "api_key", None)
    return key is not None and key.allows(*any_of)


async def documented(request: Request, credentials: Credentials) -> ApiKey | None:
    """The guard's verified key (None with auth off); declares Bearer auth in the OpenAPI."""
    key: ApiKey | None = getattr(request.state, "api_key", None)
    return key
