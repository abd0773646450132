"""API keys in the catalog: minted once, stored hashed, verified, listed, revoked."""

from __future__ import annotations

import base64
import hmac
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgest.catalog.keys import KeyStore, check_scopes
from imgest.catalog.repo import Catalog


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "catalog.db"


@pytest.fixture
def keys(db: Path) -> Iterator[KeyStore]:
    catalog = Catalog.open(f"sqlite:///{db}")
    yield KeyStore(catalog)
    catalog.close()


def test_a_token_verifies_to_its_key(keys: KeyStore) -> None:
    new = keys.create(["read", "upload", "read"], name="phone app")
    assert new.key.scopes == ("upload", "read")
    assert new.token.startswith(f"imgest_{new.key.id}_")
    found = keys.verify(new.token)
    assert found is not None and found.id == new.key.id and found.name == "phone app"
    assert found.allows("read") and not found.allows("admin")


def test_only_a_hash_is_stored(keys: KeyStore, db: Path) -> None:
    new = keys.create(["admin"])
    secret = new.token.rsplit("_", 1)[1]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT * FROM api_keys").fetchall()
    dumped = repr(rows)
    assert new.key.id in dumped
    assert secret not in dumped and new.token not in dumped


@pytest.mark.parametrize(
    "token",
    ["", "imgest", "imgest__", "Bearer x", "imgest_zzzzzzzzzzzz_" + "A" * 43, "x" * 10_000],
)
def test_malformed_tokens_verify_to_nothing(keys: KeyStore, token: str) -> None:
    keys.create(["read"])
    assert keys.verify(token) is None


def test_a_wrong_secret_or_a_revoked_key_verifies_to_nothing(keys: KeyStore) -> None:
    new = keys.create(["read"])
    key_id = new.key.id
    other = keys.create(["read"])
    spliced = f"imgest_{key_id}_{other.token.rsplit('_', 1)[1]}"  # real id, someone else's secret
    assert keys.verify(spliced) is None
    assert keys.revoke(key_id)
    assert keys.verify(new.token) is None
    assert not keys.revoke(key_id)  # already revoked
    assert not keys.revoke("000000000000")
    listed = {k.id: k for k in keys.list()}
    assert listed[key_id].revoked_at is not None
    assert listed[other.key.id].revoked_at is None


def test_admin_holds_every_scope(keys: KeyStore) -> None:
    admin = keys.verify(keys.create(["admin"]).token)
    assert admin is not None and admin.allows("upload") and admin.allows("read")


def test_scopes_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown scope 'write'"):
        check_scopes(["read", "write"])
    with pytest.raises(ValueError, match="at least one scope"):
        check_scopes([])


def test_secrets_are_256_random_bits(keys: KeyStore) -> None:
    secrets = [keys.create(["read"]).token.split("_", 2)[2] for _ in range(3)]
    for secret in secrets:
        assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert len(set(secrets)) == 3


def test_an_unknown_id_costs_the_same_comparison_as_a_wrong_secret(
    keys: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification compares digests in constant time, also when the id is unknown."""
    compared: list[tuple[str, str]] = []
    compare = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return compare(a, b)

    monkeypatch.setattr("imgest.catalog.keys.hmac.compare_digest", spy)
    token = keys.create(["read"]).token
    key_id = token.split("_")[1]
    assert keys.verify(token.replace(key_id, "0" * 12)) is None  # unknown id
    assert keys.verify(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")) is None
    assert keys.verify(token) is not None
    assert len(compared) == 3 and all(len(a) == len(b) == 64 for a, b in compared)
