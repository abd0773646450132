"""The blob layout: content-addressed original and rendition paths, and their validation."""

from __future__ import annotations

import hashlib

import pytest

from imgest.storage.base import validate_path
from imgest.storage.paths import original_path, rendition_path, rendition_prefix

SHA = hashlib.sha256(b"an image").hexdigest()


def test_original_path_fans_out_by_the_first_two_bytes() -> None:
    path = original_path(SHA)
    assert path == f"originals/{SHA[:2]}/{SHA[2:4]}/{SHA}"
    assert validate_path(path) == path


def test_rendition_path_names_pipeline_version_and_extension() -> None:
    path = rendition_path("default", "0123456789ab", SHA, "jpg")
    assert path == f"renditions/default@0123456789ab/{SHA[:2]}/{SHA[2:4]}/{SHA}.jpg"
    assert path.startswith(rendition_prefix("default", "0123456789ab"))
    assert validate_path(path) == path


def test_versions_of_one_pipeline_do_not_share_a_prefix() -> None:
    one, two = rendition_prefix("crop", "1"), rendition_prefix("crop", "12")
    assert one == "renditions/crop@1/"
    assert not rendition_path("crop", "12", SHA, "png").startswith(one)
    assert not rendition_path("crop", "1", SHA, "png").startswith(two)


@pytest.mark.parametrize(
    "sha",
    ["", SHA[:-1], SHA + "0", SHA.upper(), "g" * 64, f"../{SHA[3:]}", f"{SHA[:32]}/{SHA[33:]}"],
)
def test_bad_sha256_is_refused(sha: str) -> None:
    with pytest.raises(ValueError):
        original_path(sha)
    with pytest.raises(ValueError):
        rendition_path("default", "1", sha, "jpg")


@pytest.mark.parametrize("name", ["", "Default", "-x", "_x", "a/b", "a@b", "..", "a b", "a.b"])
def test_bad_pipeline_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        rendition_path(name, "1", SHA, "jpg")


@pytest.mark.parametrize("name", ["a", "0", "tile_4x4", "center-crop-224"])
def test_good_pipeline_names_are_accepted(name: str) -> None:
    assert rendition_path(name, "1", SHA, "jpg").startswith(f"renditions/{name}@1/")


@pytest.mark.parametrize("version", ["", "..", ".", "../x", "a/b", "ABC", "v@1", "a" * 65])
def test_bad_spec_version_is_refused(version: str) -> None:
    with pytest.raises(ValueError):
        rendition_path("default", version, SHA, "jpg")


@pytest.mark.parametrize("ext", ["", ".jpg", "JPG", "j/pg", "jp g", "a" * 11])
def test_bad_extension_is_refused(ext: str) -> None:
    with pytest.raises(ValueError):
        rendition_path("default", "1", SHA, ext)
