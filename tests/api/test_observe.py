"""The access log: one line per request, whatever the path holds (issue 14 item 8)."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from imgest.logs import RequestIdFilter, formatter


@pytest.fixture
def access_log() -> Iterator[Callable[[], str]]:
    """The imgest.access records as text, formatted as `imgest serve` writes them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter("text"))
    logger = logging.getLogger("imgest.access")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield out.getvalue
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_the_access_log_of_a_hostile_path_is_one_line(
    access_log: Callable[[], str], make_client: Callable[..., TestClient]
) -> None:
    client = make_client()
    forged = "%0a1999-12-31%2023:59:59,000%20INFO%20imgest.access%20[-]:%20GET%20/%20200"
    assert client.get(f"/nope{forged}%1b[31m%c2%85").status_code == 404
    lines = access_log().splitlines()
    assert len(lines) == 1, lines
    assert "/nope\\n1999-12-31 23:59:59,000 INFO" in lines[0]
    assert "\\x1b[31m" in lines[0] and "\\x85" in lines[0]


def test_the_access_log_names_a_made_up_method_as_other(
    access_log: Callable[[], str], make_client: Callable[..., TestClient]
) -> None:
    client = make_client()
    assert client.request("X" * 2000, "/v1/images").status_code == 405
    (line,) = access_log().splitlines()
    assert " other /v1/images 405 " in line and "XXX" not in line


def test_the_access_log_has_no_headers_query_or_body(
    access_log: Callable[[], str], make_client: Callable[..., TestClient]
) -> None:
    client = make_client()
    r = client.patch(
        f"/v1/images/{'a' * 64}?secret-in-query=q1w2e3",
        json={"label": "secret-in-body"},
        headers={"X-Note": "secret-in-header", "Cookie": "session=secret-in-cookie"},
    )
    assert r.status_code == 404
    (line,) = access_log().splitlines()
    assert f" PATCH /v1/images/{'a' * 64} 404 " in line, line
    assert "secret" not in line and "q1w2e3" not in line
