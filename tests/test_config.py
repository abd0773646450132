"""Settings: defaults, environment, TOML file, validation messages, the generated reference."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgest.admission import AdmissionLimits
from imgest.api.multipart import UploadLimits
from imgest.catalog.db import CatalogOptions
from imgest.config import Settings, from_settings, load_settings
from imgest.docs import settings_reference
from imgest.errors import ConfigError
from imgest.imaging.limits import ImageLimits

ROOT = Path(__file__).parent.parent


def test_defaults_are_embedded() -> None:
    s = load_settings()
    assert s.storage_url == "var/blobs"
    assert s.catalog_url == "sqlite:///var/catalog.db"
    assert s.max_file_bytes == 50 * 1024 * 1024
    assert s.max_files == 32
    assert s.max_pixels == 50_000_000
    assert (s.host, s.port) == ("127.0.0.1", 8000)


def test_environment_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "imgest.toml"
    toml.write_text('max_files = 3\npipeline = "pad"\nbackground = [0, 0, 0]\n')
    monkeypatch.setenv("IMGEST_CONFIG", str(toml))
    monkeypatch.setenv("IMGEST_MAX_FILES", "7")
    s = load_settings()
    assert s.max_files == 7  # environment beats the file
    assert s.pipeline == "pad" and s.background == (0, 0, 0)


def test_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValueError):
        s.max_files = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("IMGEST_MAX_FILES", "-1", "IMGEST_MAX_FILES"),
        ("IMGEST_PORT", "http", "IMGEST_PORT"),
        ("IMGEST_BACKGROUND", "[300, 0, 0]", "IMGEST_BACKGROUND"),
    ],
)
def test_bad_values_name_the_key(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, named: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_unknown_toml_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "imgest.toml"
    toml.write_text("max_filez = 3\n")
    monkeypatch.setenv("IMGEST_CONFIG", str(toml))
    with pytest.raises(ConfigError, match="max_filez"):
        load_settings()


def test_missing_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMGEST_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_settings()


def test_reference_doc_is_current() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == settings_reference(), "run: imgest config --reference > docs/configuration.md"
    for name in Settings.model_fields:
        assert f"IMGEST_{name.upper()}" in doc


def test_allowed_hosts_are_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGEST_ALLOWED_HOSTS", '["IMG.example.com.", "[2001:db8::1]", "*"]')
    assert load_settings().allowed_hosts == ("img.example.com", "2001:db8::1", "*")
    assert Settings.model_fields["allowed_hosts"].default == ()  # loopback and bind host only
    for bad in ("https://img.example.com", "img.example.com:443", "", "a b", "user@host"):
        with pytest.raises(ConfigError, match="IMGEST_ALLOWED_HOSTS"):
            load_settings(allowed_hosts=[bad])


def test_lease_ttl_must_outlive_two_storage_calls(tmp_path: Path) -> None:
    """A deleter sends nothing after half the lease TTL; one storage call must fit in that."""
    with pytest.raises(ConfigError, match=r"IMGEST_CATALOG_LEASE_TTL_S.*storage_timeout_s"):
        load_settings(storage_timeout_s=60, catalog_lease_ttl_s=120)
    settings = load_settings(
        storage_timeout_s=60,
        catalog_lease_ttl_s=121,
        catalog_url=f"sqlite:///{tmp_path / 'catalog.db'}",
    )
    from imgest.runtime import Runtime

    with Runtime(settings).catalog(migrate_schema=True) as catalog:
        assert catalog.lease_ttl.total_seconds() == 121


def test_from_settings_fills_every_field_from_its_setting() -> None:
    # Every setting these dataclasses read, set away from its default.
    s = load_settings(
        max_file_bytes=11, max_request_bytes=12, max_files=13, max_fields=14,
        max_field_bytes=15, max_header_bytes=16, max_active_uploads=3, max_queued_uploads=4,
        max_inflight_bytes=5, max_uploads_per_client=6, queue_timeout_s=7.5, max_pixels=1000,
        max_frames=2, max_scans=9, max_decode_bytes=123, max_icc_bytes=45,
        catalog_connect_timeout_s=1.5, catalog_pool_size=2,
    )  # fmt: skip
    for cls, prefix, fixed in (
        (UploadLimits, "", ()),
        (AdmissionLimits, "", ()),
        (CatalogOptions, "catalog_", ()),
        (ImageLimits, "", ("max_side",)),
    ):
        made = from_settings(cls, s, prefix=prefix, fixed=fixed)
        for f in dataclasses.fields(cls):
            want = f.default if f.name in fixed else getattr(s, prefix + f.name)
            assert getattr(made, f.name) == want, (cls, f.name)
    assert ImageLimits.from_settings(s) == from_settings(ImageLimits, s, fixed=("max_side",))


@dataclass(frozen=True)
class _Caps:
    max_files: int = 1
    max_widgets: int = 2  # no such setting


def test_from_settings_refuses_a_field_without_a_setting() -> None:
    s = load_settings()
    with pytest.raises(TypeError, match="max_widgets"):
        from_settings(_Caps, s)  # not silently left at its default
    assert from_settings(_Caps, s, fixed=("max_widgets",)) == _Caps(s.max_files, 2)
    with pytest.raises(TypeError):
        from_settings(_Caps, s, fixed=("max_files", "max_widgets"))  # max_files is a setting
    with pytest.raises(TypeError):
        from_settings(_Caps, s, fixed=("max_widgets", "no_such_field"))
