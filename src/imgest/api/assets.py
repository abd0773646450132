"""Static files (the UI's scripts and styles, the API docs' assets) served whole, never in ranges.

Starlette's StaticFiles honours `Range`, and answers a range it cannot parse or satisfy with a
bare text/plain 400 or 416 of its own, outside the app's problem+json handlers. The files
here are a few KiB to a few hundred KiB that a browser fetches whole, and RFC 9110 (14.2) lets
a server ignore `Range`: so it is ignored, and the answer is always the whole file (200, or
304 for a matching If-None-Match), the same as the image blob routes do.
"""

from __future__ import annotations

from os import PathLike, stat_result

from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

IGNORED = frozenset({b"range", b"if-range"})


class Assets(StaticFiles):
    """StaticFiles without ranges: `Range`/`If-Range` are dropped and none is advertised."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k.lower() not in IGNORED]
            scope = {**scope, "headers": headers}
        await super().__call__(scope, receive, send)

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if "accept-ranges" in response.headers:
            del response.headers["accept-ranges"]
        return response
