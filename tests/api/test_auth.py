"""API keys on the HTTP API: 401/403 with codes and challenges, scopes per method, CORS."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from imgest.catalog.keys import KeyStore


def keys_of(client: TestClient) -> KeyStore:
    keys: KeyStore = client.app.state.keys
    return keys


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def secured(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(auth="keys")


def upload(
    client: TestClient, data: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(
        "/v1/images", files=[("file", ("cat.jpg", data, "image/jpeg"))], headers=headers or {}
    )


def test_auth_off_needs_no_key(client: TestClient, read: Callable[[str], bytes]) -> None:
    r = client.post("/v1/images", files=[("file", ("cat.jpg", read("cat.jpg"), "image/jpeg"))])
    assert r.status_code == 201
    assert client.get(f"/v1/images/{r.json()['images'][0]['id']}").status_code == 200


def test_missing_key_is_401_with_a_bearer_challenge(secured: TestClient) -> None:
    for method, path in [
        ("GET", "/v1/images"),
        ("POST", "/v1/images"),
        ("DELETE", "/v1/images/" + "a" * 64),
    ]:
        r = secured.request(method, path)
        assert r.status_code == 401, (method, r.text)
        assert r.headers["www-authenticate"] == 'Bearer realm="imgest"'
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "auth_required"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer nonsense",
        "Bearer imgest_000000000000_" + "A" * 43,  # well-formed, unknown id
        "Basic dXNlcjpwYXNz",
    ],
)
def test_bad_keys_are_401(secured: TestClient, header: str) -> None:
    r = secured.get("/v1/images", headers={"Authorization": header})
    assert r.status_code == 401
    code = r.json()["code"]
    assert code == ("auth_required" if header.startswith("Basic") else "invalid_token")
    assert r.headers["www-authenticate"].startswith("Bearer realm=")


def test_a_wrong_secret_for_a_real_id_is_401(secured: TestClient) -> None:
    token = keys_of(secured).create(["read"]).token
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    r = secured.get("/v1/images", headers=bearer(forged))
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"


def test_scopes_per_method(secured: TestClient, read: Callable[[str], bytes]) -> None:
    keys = keys_of(secured)
    uploader = keys.create(["upload"]).token
    reader = keys.create(["read"]).token
    admin = keys.create(["admin"]).token

    denied = upload(secured, read("cat.jpg"), bearer(reader))
    assert denied.status_code == 403
    assert denied.json()["code"] == "insufficient_scope"
    created = upload(secured, read("cat.jpg"), bearer(uploader))
    assert created.status_code == 201
    image = created.json()["images"][0]["id"]

    assert secured.get(f"/v1/images/{image}", headers=bearer(uploader)).status_code == 403
    assert secured.get(f"/v1/images/{image}", headers=bearer(reader)).status_code == 200
    assert secured.get(f"/v1/images/{image}/original", headers=bearer(reader)).status_code == 200
    relabel = {"label": "tabby"}
    assert (
        secured.patch(f"/v1/images/{image}", json=relabel, headers=bearer(reader)).status_code
        == 403
    )
    for writer in (uploader, admin):  # PATCH: upload or admin
        r = secured.patch(f"/v1/images/{image}", json=relabel, headers=bearer(writer))
        assert r.status_code == 200, r.text
    assert secured.delete(f"/v1/images/{image}", headers=bearer(reader)).status_code == 403
    assert secured.delete(f"/v1/images/{image}", headers=bearer(uploader)).status_code == 403
    assert secured.get("/v1/images", headers=bearer(admin)).status_code == 200  # admin: all
    assert secured.delete(f"/v1/images/{image}", headers=bearer(admin)).status_code == 204


def test_a_revoked_key_is_401(secured: TestClient) -> None:
    keys = keys_of(secured)
    new = keys.create(["read"])
    assert secured.get("/v1/images", headers=bearer(new.token)).status_code == 200
    assert keys.revoke(new.key.id)
    r = secured.get("/v1/images", headers=bearer(new.token))
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"


def test_probes_stay_open(secured: TestClient) -> None:
    assert secured.get("/healthz").status_code == 200
    assert secured.get("/readyz").status_code == 200


def test_metrics_access_modes(make_client: Callable[..., TestClient]) -> None:
    assert make_client().get("/metrics").status_code == 200  # auth off: open
    assert make_client(auth="keys", metrics="open").get("/metrics").status_code == 200
    admin_only = make_client(auth="keys")  # closed by default when auth is on
    assert admin_only.get("/metrics").status_code == 401
    read_token = keys_of(admin_only).create(["read"]).token
    assert admin_only.get("/metrics", headers=bearer(read_token)).status_code == 403
    admin = keys_of(admin_only).create(["admin"]).token
    assert admin_only.get("/metrics", headers=bearer(admin)).status_code == 200
    assert make_client(metrics="off").get("/metrics").status_code == 404


def test_openapi_documents_bearer_auth_only_when_it_is_on(
    client: TestClient, secured: TestClient
) -> None:
    reader = keys_of(secured).create(["read"]).token
    on = secured.get("/openapi.json", headers=bearer(reader)).json()
    assert on["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    upload = on["paths"]["/v1/images"]["post"]
    assert upload["security"] and "401" in upload["responses"]
    off = client.get("/openapi.json").json()
    assert "securitySchemes" not in off.get("components", {})
    upload = off["paths"]["/v1/images"]["post"]
    assert "security" not in upload and "401" not in upload["responses"]


def test_cors_is_off_by_default(client: TestClient) -> None:
    r = client.options(
        "/v1/images",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_cors_preflight_for_a_configured_origin(make_client: Callable[..., TestClient]) -> None:
    client = make_client(cors_origins=["https://app.example"], auth="keys")
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    ok = client.options("/v1/images", headers={"Origin": "https://app.example", **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    other = client.options("/v1/images", headers={"Origin": "https://evil.example", **preflight})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    # A simple request from the allowed origin carries the header (even on a 401).
    r = client.get("/v1/images", headers={"Origin": "https://app.example"})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"x-request-id", "retry-after", "etag", "idempotent-replayed"}
    assert "access-control-allow-credentials" not in r.headers
    methods = {m.strip() for m in ok.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "HEAD", "POST", "PATCH", "DELETE"}
    allowed = {h.strip().lower() for h in ok.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-request-id", "idempotency-key"} <= allowed
    assert "access-control-allow-credentials" not in ok.headers


def test_web_ui_is_not_served_when_auth_is_on(client: TestClient, secured: TestClient) -> None:
    """A browser cannot send a bearer key, so the pages would be an open door: they are off."""
    assert client.get("/gallery").status_code == 200
    reader = bearer(keys_of(secured).create(["read"]).token)
    for path in ("/", "/gallery", f"/images/{'0' * 64}", "/ui/static/ui.css"):
        assert secured.get(path).status_code == 401, path  # closed like any other path
        assert secured.get(path, headers=reader).status_code == 404, path


def test_docs_are_closed_by_default_when_auth_is_on(
    make_client: Callable[..., TestClient],
) -> None:
    secured = make_client(auth="keys")
    reader = bearer(keys_of(secured).create(["read"]).token)
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert secured.get(path).status_code == 401, path
        assert secured.get(path, headers=reader).status_code == 200, path
        assert make_client().get(path).status_code == 200, path  # auth off: open
        assert make_client(auth="keys", api_docs="open").get(path).status_code == 200, path
        off = make_client(auth="keys", api_docs="off")
        admin = bearer(keys_of(off).create(["admin"]).token)
        assert off.get(path, headers=admin).status_code == 404, path


def test_readyz_counters_are_for_admin_keys_by_default_when_auth_is_on(
    make_client: Callable[..., TestClient],
) -> None:
    secured = make_client(auth="keys")
    plain = secured.get("/readyz")
    assert plain.status_code == 200 and plain.json()["status"] == "ok"
    assert "counters" not in plain.json()
    reader = bearer(keys_of(secured).create(["read"]).token)
    assert "counters" not in secured.get("/readyz", headers=reader).json()
    admin = bearer(keys_of(secured).create(["admin"]).token)
    assert "renders" in secured.get("/readyz", headers=admin).json()["counters"]
    assert "counters" in make_client().get("/readyz").json()  # auth off: shown
    assert "counters" in make_client(auth="keys", readyz_counters="open").get("/readyz").json()
    never = make_client(auth="keys", readyz_counters="off")
    admin = bearer(keys_of(never).create(["admin"]).token)
    assert "counters" not in never.get("/readyz", headers=admin).json()


def test_a_read_key_cannot_make_the_server_render_and_store(
    secured: TestClient, read: Callable[[str], bytes]
) -> None:
    keys = keys_of(secured)
    reader = bearer(keys.create(["read"]).token)
    uploader = bearer(keys.create(["upload", "read"]).token)
    image = upload(secured, read("cat.jpg"), uploader).json()["images"][0]["id"]
    store = secured.app.state.store.inner  # type: ignore[attr-defined]
    blobs = set(store._blobs)
    for query in ("", "?redirect=true"):
        r = secured.get(f"/v1/images/{image}/renditions/stretch{query}", headers=reader)
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "insufficient_scope"
        assert "upload or admin" in r.json()["detail"]
    assert set(store._blobs) == blobs  # nothing rendered, nothing stored
    stored = secured.get(f"/v1/images/{image}/renditions/default", headers=reader)
    assert stored.status_code == 200  # what exists is served to a read key
    made = secured.get(f"/v1/images/{image}/renditions/stretch", headers=uploader)
    assert made.status_code == 200 and made.headers["content-type"] == "image/jpeg"
    assert len(set(store._blobs) - blobs) == 1
    again = secured.get(f"/v1/images/{image}/renditions/stretch", headers=reader)
    assert again.status_code == 200 and again.content == made.content


def test_a_method_no_route_knows_needs_admin(secured: TestClient) -> None:
    """Any other path or method takes its method's scope; a made-up method needs admin."""
    keys = keys_of(secured)
    tokens = {scope: keys.create([scope]).token for scope in ("read", "upload", "admin")}
    for method in ("PROPFIND", "PUT", "X" * 50):
        for scope, token in tokens.items():
            r = secured.request(method, "/v1/images", headers=bearer(token))
            needs = ("admin",) if method != "PUT" else ("upload", "admin")
            if scope in needs:
                assert r.status_code == 405, (method, scope, r.text)
            else:
                assert r.status_code == 403, (method, scope, r.text)
                assert r.json()["code"] == "insufficient_scope"
    r = secured.get("/no/such/path", headers=bearer(tokens["upload"]))
    assert r.status_code == 403  # GET needs read, wherever it goes
    assert secured.get("/no/such/path", headers=bearer(tokens["read"])).status_code == 404
