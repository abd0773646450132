"""Which methods the API serves on a path, read from the app's OpenAPI (FastAPI's public view).

FastAPI 0.16x keeps included routers as lazy branches, so `app.routes` no longer lists every
route; the OpenAPI paths do, for every documented operation.
"""

from __future__ import annotations

import re
from functools import cache

from fastapi import FastAPI


def methods_for(app: FastAPI, path: str) -> list[str]:
    """Methods documented for a concrete path (e.g. /v1/images/ab12...); HEAD comes with GET."""
    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        if _pattern(template).fullmatch(path):
            methods |= {m.upper() for m in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


@cache
def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))
