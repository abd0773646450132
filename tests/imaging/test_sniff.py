"""Tests for imgest.imaging.sniff: magic bytes, header probing and its errors."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from imgest.errors import EmptyFile, ImageCorrupt, ImageTruncated, UnsupportedMediaType
from imgest.imaging import sniff as sniff_module
from imgest.imaging.sniff import ImageInfo, probe, sniff

FILES = {
    "cat.jpg": ("jpeg", "image/jpeg", 451, 300, 1),
    "cat-progressive.jpg": ("jpeg", "image/jpeg", 451, 300, 1),
    "cat-gray.jpg": ("jpeg", "image/jpeg", 225, 150, 1),
    "cat-cmyk.jpg": ("jpeg", "image/jpeg", 225, 150, 1),
    "cat-prophoto.jpg": ("jpeg", "image/jpeg", 225, 150, 1),
    "rocket.jpg": ("jpeg", "image/jpeg", 640, 427, 1),
    "cat.png": ("png", "image/png", 225, 150, 1),
    "cat-rgba.png": ("png", "image/png", 225, 150, 1),
    "cat-palette.png": ("png", "image/png", 225, 150, 1),
    "cat-gray16.png": ("png", "image/png", 225, 150, 1),
    "cat-la.png": ("png", "image/png", 225, 150, 1),
    "cat.webp": ("webp", "image/webp", 225, 150, 1),
    "cat-animated.gif": ("gif", "image/gif", 225, 150, 3),
    "cat.tiff": ("tiff", "image/tiff", 225, 150, 1),
    "cat.bmp": ("bmp", "image/bmp", 225, 150, 1),
    "bomb.png": ("png", "image/png", 100_000, 100_000, 1),
}
NOT_IMAGES = {
    "text": b"hello, this is text\n",
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
    "html": b"<!DOCTYPE html><html><body><img src=x></body></html>",
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
    "zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 30,
    "bm-text": b"BMW is a car maker, not a bitmap header at all.",
    "riff-wav": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 24,
    "ico": b"\x00\x00\x01\x00\x01\x00\x10\x10" + b"\x00" * 40,
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_sniff_names_each_format(name: str, read: Callable[[str], bytes]) -> None:
    assert sniff(read(name)) == FILES[name][0]


@pytest.mark.parametrize("name", sorted(FILES))
def test_probe_reads_the_header(name: str, read: Callable[[str], bytes]) -> None:
    fmt, mime, width, height, frames = FILES[name]
    assert probe(read(name)) == ImageInfo(fmt, mime, width, height, frames)


@pytest.mark.parametrize("name", sorted(set(FILES) - {"bomb.png"}))
def test_probe_agrees_with_pillow(name: str, read: Callable[[str], bytes]) -> None:
    data = read(name)
    info = probe(data)
    with Image.open(io.BytesIO(data)) as im:
        assert (info.width, info.height) == im.size
        assert info.frames == getattr(im, "n_frames", 1)


def test_probe_never_decodes_pixels(
    monkeypatch: pytest.MonkeyPatch, read: Callable[[str], bytes]
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("probe must not open the image with Pillow")

    monkeypatch.setattr(Image, "open", refuse)
    for name in FILES:
        probe(read(name))


@pytest.mark.parametrize("name", ["not-image.txt", "svg-named.jpg", "pdf-named.png"])
def test_files_named_like_images_are_not_images(name: str, read: Callable[[str], bytes]) -> None:
    data = read(name)
    assert sniff(data) is None
    with pytest.raises(UnsupportedMediaType):
        probe(data)


@pytest.mark.parametrize("kind", sorted(NOT_IMAGES))
def test_other_formats_are_unsupported(kind: str) -> None:
    assert sniff(NOT_IMAGES[kind]) is None
    with pytest.raises(UnsupportedMediaType):
        probe(NOT_IMAGES[kind])


def test_empty_file() -> None:
    assert sniff(b"") is None
    with pytest.raises(EmptyFile):
        probe(b"")


@pytest.mark.parametrize(
    ("name", "keep"),
    [
        ("cat.jpg", 40),
        ("cat.jpg", 3),
        ("cat.png", 20),
        ("cat-animated.gif", 10),
        ("cat.webp", 14),
        ("cat.tiff", 6),
        ("cat.bmp", 20),
    ],
)
def test_header_cut_short_is_truncated(name: str, keep: int, read: Callable[[str], bytes]) -> None:
    with pytest.raises(ImageTruncated):
        probe(read(name)[:keep])


def test_jpeg_without_frame_header_is_corrupt() -> None:
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    with pytest.raises(ImageCorrupt):
        probe(b"\xff\xd8" + sos + b"\x00" * 10 + b"\xff\xd9")


def test_png_without_ihdr_first_is_corrupt(read: Callable[[str], bytes]) -> None:
    data = bytearray(read("cat.png"))
    data[12:16] = b"tEXt"
    with pytest.raises(ImageCorrupt):
        probe(bytes(data))


def test_tiff_without_dimensions_is_corrupt() -> None:
    # One IFD with a single unrelated tag (Compression = 1).
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 259, 3, 1, 1) + struct.pack("<I", 0)
    with pytest.raises(ImageCorrupt):
        probe(b"II*\x00" + struct.pack("<I", 8) + ifd)


def test_bmp_top_down_height_is_positive(small_cat: Image.Image, encode: Any) -> None:
    data = bytearray(encode(small_cat, "BMP"))
    struct.pack_into("<i", data, 22, -150)
    assert (probe(bytes(data)).width, probe(bytes(data)).height) == (225, 150)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("k", [1, 3, 6, 8])
def test_probe_reads_exif_orientation(
    fmt: str, k: int, oriented_jpeg: Callable[..., bytes], small_cat: Image.Image
) -> None:
    info = probe(oriented_jpeg(k, small_cat, fmt))
    assert info.orientation == k
    assert info.oriented_size == (225, 150)
    assert (info.width, info.height) == ((150, 225) if k in (6, 8) else (225, 150))


def test_invalid_orientation_reads_as_1(small_cat: Image.Image, encode: Any) -> None:
    exif = Image.Exif()
    exif[0x0112] = 9
    assert probe(encode(small_cat, "JPEG", exif=exif.tobytes())).orientation == 1


@pytest.mark.parametrize(
    ("fmt", "kwargs"),
    [("PNG", {}), ("WEBP", {"lossless": True}), ("GIF", {}), ("TIFF", {})],
)
def test_probe_counts_frames(
    fmt: str, kwargs: dict[str, Any], small_cat: Image.Image, encode: Any
) -> None:
    frames = [small_cat.rotate(angle) for angle in (0, 90, 180, 270)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **kwargs)
    assert probe(data).frames == 4


def test_probe_is_cheap_on_big_headers() -> None:
    # A JPEG whose SOF claims 65535 x 65535: the header alone is enough to know.
    sof = b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03" + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sos = b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    info = probe(b"\xff\xd8" + sof + sos)
    assert (info.width, info.height) == (65535, 65535)


def test_formats_and_mimes_cover_the_six() -> None:
    assert set(sniff_module.MIME_TYPES) == {"jpeg", "png", "webp", "gif", "tiff", "bmp"}
