"""Tests for imgest.imaging.sniff: magic bytes, header probing and its errors."""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from imgest.errors import (
    EmptyFile,
    ImageCorrupt,
    ImageTooManyPixels,
    ImageTruncated,
    UnsupportedMediaType,
)
from imgest.imaging import sniff as sniff_module
from imgest.imaging.limits import ImageLimits, check
from imgest.imaging.sniff import probe, sniff

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
    "cat.avif": ("avif", "image/avif", 225, 150, 1),
    "cat-grid.heic": ("heif", "image/heic", 451, 300, 1),
}
# HEIF made by libheif for an odd width: coded 226 px wide, cropped to 225 by `clap`.
HEIF_FILES = {
    "cat.heic": ("heif", "image/heic", 225, 150, 1, 1),
    "cat-alpha.heic": ("heif", "image/heic", 225, 150, 1, 1),
    "cat-rotated.heic": ("heif", "image/heic", 150, 225, 1, 6),
    "cat-rotated.avif": ("avif", "image/avif", 150, 225, 1, 6),
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
    "mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 40,
    "mov": b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + b"\x00" * 40,
    "cr3": b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom" + b"\x00" * 40,
    "ftyp-too-short": b"\x00\x00\x00\x08ftypheic" + b"\x00" * 40,
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_sniff_names_each_format(name: str, read: Callable[[str], bytes]) -> None:
    assert sniff(read(name)) == FILES[name][0]


@pytest.mark.parametrize("name", sorted(FILES))
def test_probe_reads_the_header(name: str, read: Callable[[str], bytes]) -> None:
    fmt, mime, width, height, frames = FILES[name]
    info = probe(read(name))
    assert (info.format, info.mime, info.width, info.height, info.frames) == (
        fmt,
        mime,
        width,
        height,
        frames,
    )
    assert info.orientation == 1 and info.scans >= 1 and info.bytes_per_pixel >= 1


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
    for name in [*FILES, *HEIF_FILES]:
        probe(read(name))


@pytest.mark.parametrize(
    "name", ["not-image.txt", "svg-named.jpg", "pdf-named.png", "mp4-named.heic"]
)
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
        ("cat.heic", 12),
        ("cat.heic", 100),
        ("cat.heic", 400),
        ("cat.avif", 200),
        ("cat-grid.heic", 700),
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


@pytest.mark.parametrize(
    "header",
    [
        b"MM\x00+\x00\x08\x00\x00" + b"\xff" * 8,  # BigTIFF: first IFD at 2**64 - 1
        b"II*\x00" + struct.pack("<I", 0xFFFFFFF0),  # classic: past the end
    ],
)
def test_tiff_directory_offset_past_the_end_is_corrupt(header: bytes) -> None:
    """Found by the decode fuzzer: a 64-bit offset overflowed struct (OverflowError)."""
    with pytest.raises(ImageCorrupt):
        probe(header + b"\x00" * 64)


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
    [("PNG", {}), ("WEBP", {"lossless": True}), ("GIF", {}), ("TIFF", {}), ("AVIF", {})],
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


def test_formats_and_mimes_cover_the_eight() -> None:
    assert set(sniff_module.MIME_TYPES) == {
        "jpeg",
        "png",
        "webp",
        "gif",
        "tiff",
        "bmp",
        "heif",
        "avif",
    }


# --- HEIF / AVIF ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HEIF_FILES))
def test_probe_reads_heif_and_avif(name: str, read: Callable[[str], bytes]) -> None:
    fmt, mime, width, height, frames, orientation = HEIF_FILES[name]
    info = probe(read(name))
    assert sniff(read(name)) == fmt
    assert (info.format, info.mime, info.width, info.height) == (fmt, mime, width, height)
    assert (info.frames, info.orientation) == (frames, orientation)
    assert info.oriented_size == (225, 150)


def test_clap_crop_is_the_size_and_the_coded_canvas_is_counted(
    read: Callable[[str], bytes],
) -> None:
    info = probe(read("cat.heic"))
    assert (info.width, info.height) == (225, 150)
    assert info.canvas_pixels == 226 * 150 and info.pixels == 226 * 150


@pytest.mark.parametrize("name", sorted(HEIF_FILES))
def test_heif_upright_size_agrees_with_the_decoders(
    name: str, read: Callable[[str], bytes]
) -> None:
    # libheif turns the picture itself; Pillow's AVIF plugin reports the stored size.
    info = probe(read(name))
    with Image.open(io.BytesIO(read(name))) as im:
        expected = info.oriented_size if info.format == "heif" else (info.width, info.height)
        assert im.size == expected
        assert getattr(im, "n_frames", 1) == info.frames


def test_heif_exif_orientation_is_not_read(read: Callable[[str], bytes]) -> None:
    # cat-rotated.heic carries irot and, like iPhone photos, EXIF Orientation = 6 too.
    data = read("cat-rotated.heic")
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["original_orientation"] == 6
    info = probe(data)
    assert info.orientation == 6  # once, from irot: the pair would make 3 (upside down)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
@pytest.mark.parametrize("k", range(1, 9))
def test_irot_imir_read_as_the_orientation_the_encoder_was_given(
    fmt: str, k: int, oriented_jpeg: Callable[..., bytes], small_cat: Image.Image
) -> None:
    # libheif and libavif each turn EXIF orientation k into irot/imir; reading them back must
    # give k, which also pins the imir axis convention the two libraries share.
    info = probe(oriented_jpeg(k, small_cat, fmt))
    assert info.orientation == k
    assert info.oriented_size == (225, 150)


@pytest.mark.parametrize(
    ("brands", "fmt", "mime"),
    [
        ([b"heic", b"mif1", b"heic"], "heif", "image/heic"),
        ([b"mif1", b"mif1", b"heic"], "heif", "image/heic"),
        ([b"heix", b"mif1"], "heif", "image/heic"),
        ([b"msf1", b"msf1", b"hevc"], "heif", "image/heic"),
        ([b"mif1", b"mif1", b"miaf"], "heif", "image/heif"),
        ([b"avif", b"mif1", b"miaf", b"MA1B"], "avif", "image/avif"),
        ([b"avis", b"avis", b"msf1"], "avif", "image/avif"),
        ([b"mif1", b"mif1", b"avif"], "avif", "image/avif"),
        ([b"isom", b"isom", b"mp42"], None, None),
        ([b"mp41", b"mp41", b"isom"], None, None),
        ([b"M4A ", b"M4A ", b"mp42"], None, None),
    ],
)
def test_sniff_reads_the_ftyp_brands(
    brands: list[bytes], fmt: str | None, mime: str | None
) -> None:
    data = heif_file([ispe(64, 48)], brands=brands)
    assert sniff(data) == fmt
    if fmt is None:
        with pytest.raises(UnsupportedMediaType):
            probe(data)
    else:
        assert probe(data).mime == mime


def test_mp4_video_is_unsupported(read: Callable[[str], bytes]) -> None:
    data = read("mp4-named.heic")
    assert data[4:12] == b"ftypisom"
    assert sniff(data) is None
    with pytest.raises(UnsupportedMediaType):
        probe(data)


def test_forged_huge_ispe_is_refused_before_decoding(read: Callable[[str], bytes]) -> None:
    info = probe(read("cat-huge.heic"))
    # The clap crop still says 225x150: the coded canvas is what the decoder would allocate.
    assert (info.width, info.height) == (225, 150)
    assert info.pixels == 100_000 * 100_000
    with pytest.raises(ImageTooManyPixels):
        check(info, ImageLimits())


def test_forged_grid_sizes_are_refused(read: Callable[[str], bytes]) -> None:
    data = read("cat-grid.heic")
    # The grid item's own ispe: the size every reader reports.
    at = data.index(struct.pack(">II", 451, 300))
    forged = data[:at] + struct.pack(">II", 100_000, 100_000) + data[at + 8 :]
    assert (probe(forged).width, probe(forged).height) == (100_000, 100_000)
    with pytest.raises(ImageTooManyPixels):
        check(probe(forged), ImageLimits())
    # The grid descriptor (in idat) is what libheif allocates: it counts even if ispe is small.
    idat = data.index(b"idat") + 4
    assert data[idat + 4 : idat + 8] == struct.pack(">HH", 451, 300)
    big = data[: idat + 4] + struct.pack(">HH", 60_000, 60_000) + data[idat + 8 :]
    info = probe(big)
    assert (info.width, info.height) == (451, 300) and info.pixels == 60_000 * 60_000
    with pytest.raises(ImageTooManyPixels):
        check(info, ImageLimits())


def test_truncated_heif_is_found_from_the_item_locations(read: Callable[[str], bytes]) -> None:
    data = read("cat-truncated.heic")
    assert len(data) > 1000  # meta whole; the coded picture cut in half
    with pytest.raises(ImageTruncated):
        probe(data)
    whole = read("cat.avif")
    with pytest.raises(ImageTruncated):
        probe(whole[:-1])


@pytest.mark.parametrize("fraction", [0.02, 0.05, 0.1, 0.2, 0.5, 0.9, 0.999])
def test_every_cut_of_a_heif_is_truncated(fraction: float, read: Callable[[str], bytes]) -> None:
    for name in ("cat.heic", "cat-grid.heic", "cat.avif"):
        data = read(name)
        with pytest.raises(ImageTruncated):
            probe(data[: int(len(data) * fraction)])


# Hand-built ISOBMFF for the parser's edge cases.


def box(kind: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, body: bytes, version: int = 0, flags: int = 0) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + body)


def ispe(width: int, height: int) -> bytes:
    return full_box(b"ispe", struct.pack(">II", width, height))


def irot(angle: int) -> bytes:
    return box(b"irot", bytes([angle]))


def imir(axis: int) -> bytes:
    return box(b"imir", bytes([axis]))


def clap(width: int, height: int) -> bytes:
    return box(b"clap", struct.pack(">IIIIiIiI", width, 1, height, 1, 0, 1, 0, 1))


def heif_file(
    props: list[bytes],
    assoc: dict[int, list[int]] | None = None,
    *,
    brands: list[bytes] | None = None,
    primary: int = 1,
    handler: bytes = b"pict",
    meta_extra: bytes = b"",
    iprp_extra: bytes = b"",
    after: bytes = b"",
) -> bytes:
    """ftyp + meta (hdlr, pitm, iprp) + `after`; `assoc` maps items to 1-based properties."""
    brands = brands or [b"heic", b"mif1", b"heic"]
    assoc = {1: list(range(1, len(props) + 1))} if assoc is None else assoc
    ipma = struct.pack(">I", len(assoc)) + b"".join(
        struct.pack(">HB", item, len(indices)) + bytes(indices) for item, indices in assoc.items()
    )
    meta = full_box(
        b"meta",
        full_box(b"hdlr", bytes(4) + handler + bytes(13))
        + full_box(b"pitm", struct.pack(">H", primary))
        + box(b"iprp", box(b"ipco", b"".join(props)) + full_box(b"ipma", ipma) + iprp_extra)
        + meta_extra,
    )
    ftyp = box(b"ftyp", brands[0] + bytes(4) + b"".join(brands[1:]))
    return ftyp + meta + after


@pytest.mark.parametrize(
    ("props", "orientation", "size"),
    [
        ([ispe(64, 48)], 1, (64, 48)),
        ([ispe(64, 48), irot(1)], 8, (64, 48)),
        ([ispe(64, 48), irot(2)], 3, (64, 48)),
        ([ispe(64, 48), irot(3)], 6, (64, 48)),
        ([ispe(64, 48), imir(0)], 4, (64, 48)),
        ([ispe(64, 48), imir(1)], 2, (64, 48)),
        ([ispe(64, 48), irot(1), imir(0)], 5, (64, 48)),  # MIAF order: rotate, then mirror
        ([ispe(64, 48), irot(3), imir(1)], 5, (64, 48)),
        ([ispe(64, 48), imir(0), irot(1)], 7, (64, 48)),  # the other order is another result
        ([ispe(64, 48), clap(60, 40)], 1, (60, 40)),
        ([ispe(64, 48), clap(60, 40), irot(1)], 8, (60, 40)),
    ],
)
def test_transform_properties_apply_in_association_order(
    props: list[bytes], orientation: int, size: tuple[int, int]
) -> None:
    info = probe(heif_file(props))
    assert info.orientation == orientation
    assert (info.width, info.height) == size
    assert info.canvas_pixels == (64 * 48 if size != (64, 48) else 0)


def test_avif_clap_is_not_applied() -> None:
    # Pillow's AVIF plugin (libavif) delivers the uncropped picture, so probe must say so.
    data = heif_file([ispe(64, 48), clap(60, 40)], brands=[b"avif", b"mif1"])
    assert (probe(data).width, probe(data).height) == (64, 48)


def test_unresolved_association_assumes_the_largest_ispe() -> None:
    props = [ispe(64, 48), ispe(4000, 3000), ispe(500, 500), irot(1)]
    for assoc in ({2: [1, 4]}, {1: [9, 10]}, {}):
        info = probe(heif_file(props, assoc))
        assert (info.width, info.height, info.orientation) == (4000, 3000, 1)
    info = probe(heif_file(props, {1: [1, 4]}))
    assert (info.width, info.height, info.orientation) == (64, 48, 8)


def test_heif_without_a_size_or_meta_is_corrupt() -> None:
    with pytest.raises(ImageCorrupt):
        probe(heif_file([irot(1)]))
    with pytest.raises(ImageCorrupt):
        probe(box(b"ftyp", b"heic" + bytes(4) + b"mif1") + box(b"mdat", bytes(100)))
    with pytest.raises(ImageCorrupt):
        probe(heif_file([ispe(64, 48)], handler=b"mdir"))


def test_zero_size_boxes_end_at_their_parent() -> None:
    zero = struct.pack(">I4s", 0, b"free")
    # Last in meta: runs to the end of meta. Last in the file: to the end of the file.
    assert probe(heif_file([ispe(64, 48)], meta_extra=zero)).width == 64
    assert probe(heif_file([ispe(64, 48)], after=zero + bytes(1000))).width == 64
    # A zero-size box before meta swallows it: no image items.
    ftyp = box(b"ftyp", b"heic" + bytes(4))
    with pytest.raises(ImageCorrupt):
        probe(ftyp + zero + heif_file([ispe(64, 48)])[len(ftyp) :])


@pytest.mark.parametrize("size", [1, 4, 7])
def test_box_smaller_than_its_header_is_corrupt(size: int) -> None:
    bad = struct.pack(">I4s", size, b"free") + bytes(16)
    with pytest.raises(ImageCorrupt):
        probe(heif_file([ispe(64, 48)], meta_extra=bad))


def test_box_running_past_its_parent_is_corrupt_and_past_the_file_truncated() -> None:
    past = struct.pack(">I4s", 4000, b"free")
    with pytest.raises(ImageCorrupt):
        probe(heif_file([ispe(64, 48)], meta_extra=past, after=box(b"mdat", bytes(5000))))
    with pytest.raises(ImageTruncated):  # meta is last: the file may just be cut short
        probe(heif_file([ispe(64, 48)], meta_extra=past))
    huge = struct.pack(">I4sQ", 1, b"mdat", 2**63)
    ftyp = box(b"ftyp", b"heic" + bytes(4))
    with pytest.raises(ImageTruncated):
        probe(ftyp + huge + bytes(100))


def test_many_boxes_are_refused_quickly() -> None:
    start = time.perf_counter()
    with pytest.raises(ImageCorrupt):
        probe(heif_file([ispe(64, 48)], meta_extra=box(b"free") * 20_000))
    with pytest.raises(ImageCorrupt):
        probe(heif_file([ispe(64, 48)] * 20_000, {1: [1]}))
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("where", "table"),
    [
        ("iprp", full_box(b"ipma", struct.pack(">I", 0xFFFFFFFF) + bytes(20))),
        ("iprp", full_box(b"ipma", struct.pack(">IHB", 1, 1, 200) + bytes(20))),
        ("meta", full_box(b"iloc", bytes([0x44, 0x40]) + struct.pack(">H", 0xFFFF) + bytes(20))),
        (
            "meta",
            full_box(b"iloc", bytes([0x44, 0x40]) + struct.pack(">HHHIH", 1, 1, 0, 0, 0xFFFF)),
        ),
        ("meta", full_box(b"iloc", bytes([0x33, 0x00]) + struct.pack(">H", 1) + bytes(20))),
        ("meta", full_box(b"iinf", struct.pack(">H", 0xFFFF))),
    ],
)
def test_entry_counts_larger_than_their_box_are_corrupt(where: str, table: bytes) -> None:
    extra = {"meta_extra": table} if where == "meta" else {"iprp_extra": table}
    with pytest.raises(ImageCorrupt):
        probe(heif_file([ispe(64, 48)], **extra))


def test_item_data_past_the_end_is_truncated() -> None:
    # iloc version 0, 4-byte offsets and lengths: item 1 at offset 10000, 500 bytes.
    iloc = full_box(b"iloc", bytes([0x44, 0x00]) + struct.pack(">HHHHII", 1, 1, 0, 1, 10_000, 500))
    with pytest.raises(ImageTruncated):
        probe(heif_file([ispe(64, 48)], meta_extra=iloc))


# --- decode cost from the header (issue 14 items 3 and 4, issue 16) --------------------------


def test_jpeg_scans_are_counted(read: Callable[[str], bytes], encode: Any) -> None:
    assert probe(read("cat.jpg")).scans == 1
    progressive = read("cat-progressive.jpg")
    assert probe(progressive).scans == progressive.count(b"\xff\xda") > 1
    flat = encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG", progressive=True)
    assert probe(flat).scans == flat.count(b"\xff\xda")


def test_scan_bomb_is_counted_cheaply() -> None:
    from tests.hostile.make_corpus import jpeg_scan_bomb

    assert probe(jpeg_scan_bomb(3000)).scans == 3000


def test_scan_walk_is_bounded(read: Callable[[str], bytes]) -> None:
    """A million empty scans (10 MB) is counted up to MAX_SCANS_COUNTED, fast."""
    from imgest.imaging.sniff import MAX_SCANS_COUNTED

    data = read("cat.jpg")
    end = data.rindex(b"\xff\xd9")
    empty_scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    bomb = data[:end] + empty_scan * 1_000_000 + data[end:]
    started = time.monotonic()
    assert probe(bomb).scans == MAX_SCANS_COUNTED
    assert time.monotonic() - started < 5.0


def test_scan_count_skips_fake_markers_in_segments(read: Callable[[str], bytes]) -> None:
    """0xFFDA inside a segment between scans (a COM) is payload, not a scan."""
    data = read("cat-progressive.jpg")
    scans = probe(data).scans
    second = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    comment = b"\xff\xfe\x00\x0a" + b"\xff\xda" * 4
    assert probe(data[:second] + comment + data[second:]).scans == scans


@pytest.mark.parametrize(
    ("depth", "colour", "bpp"),
    [(8, 0, 1), (16, 0, 3), (1, 0, 2), (8, 2, 4), (16, 2, 4), (8, 3, 5), (8, 6, 8), (16, 4, 8)],
)
def test_png_bytes_per_pixel(depth: int, colour: int, bpp: int) -> None:
    from tests.hostile.make_corpus import _png

    assert probe(_png(10, 10, depth=depth, colour=colour)).bytes_per_pixel == bpp


def test_float_tiff_costs_five_bytes_per_pixel() -> None:
    from tests.hostile.make_corpus import tiff_float32

    assert probe(tiff_float32()).bytes_per_pixel == 5


@pytest.mark.parametrize("maker", ["tiff_float32_rgb", "tiff_float16_grey"])
def test_float_tiff_layouts_pillow_cannot_read_are_415(maker: str) -> None:
    from imgest.errors import UnsupportedPixelFormat
    from tests.hostile import make_corpus

    with pytest.raises(UnsupportedPixelFormat) as raised:
        probe(getattr(make_corpus, maker)())
    assert raised.value.status == 415 and raised.value.code == "unsupported_pixel_format"


def test_the_bytes_per_pixel_the_settings_quote_are_the_probes(
    read: Callable[[str], bytes],
) -> None:
    """IMGEST_MAX_DECODE_BYTES's description (and the docs made from it) quotes these costs."""
    import re

    from imgest.config import Settings
    from tests.hostile.make_corpus import tiff_float32

    description = Settings.model_fields["max_decode_bytes"].description or ""
    quoted = dict(re.findall(r" ?([A-Za-z/0-9 -]+?) \+?(\d+)[,)]", description.split("(", 2)[2]))
    samples = {
        "JPEG RGB": [read("cat.jpg")],
        "PNG/TIFF RGB": [read("cat.png"), read("cat.tiff")],
        "16-bit grey": [read("cat-gray16.png")],
        "float": [tiff_float32()],
        "WebP": [read("cat.webp")],
        "HEIF/AVIF": [read("cat.heic"), read("cat.avif")],
    }
    assert set(quoted) == {*samples, "alpha"}, quoted
    for label, files in samples.items():
        for data in files:
            assert probe(data).bytes_per_pixel == int(quoted[label]), label
    alpha = probe(read("cat-rgba.png")).bytes_per_pixel - probe(read("cat.png")).bytes_per_pixel
    assert alpha == int(quoted["alpha"])


# --- junk between JPEG segments, XMP orientation (issue 17) ----------------------------------


def with_junk(data: bytes, junk: bytes, *, before: bytes) -> bytes:
    """`data` with `junk` inserted just before the first marker `before` (e.g. b"\\xff\\xdb")."""
    at = data.index(before, 2)
    return data[:at] + junk + data[at:]


JUNK = [b"\x00", b"\x00\x00\x0d\x0a", b"junk\xff\x00more", b"\xff\x00", b"\x7f" * 5000]


@pytest.mark.parametrize("junk", JUNK)
@pytest.mark.parametrize("before", [b"\xff\xdb", b"\xff\xc4", b"\xff\xda", b"\xff\xe1"])
def test_junk_before_a_jpeg_marker_is_skipped_as_libjpeg_does(
    junk: bytes,
    before: bytes,
    oriented_jpeg: Callable[..., bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clean = oriented_jpeg(6)
    data = with_junk(clean, junk, before=before)
    with Image.open(io.BytesIO(data)) as im:  # Pillow's parser skips it too
        assert im.size == (300, 451)
    info = probe(data)
    assert info == probe(clean)  # size, orientation (in the APP1 after the junk), scans
    assert "extraneous bytes before marker" in caplog.text


def test_junk_between_scans_is_skipped(read: Callable[[str], bytes]) -> None:
    data = read("cat-progressive.jpg")
    scans = probe(data).scans
    second = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    assert probe(data[:second] + b"\x00junk\x00" + data[second:]).scans == scans


def test_jpeg_of_junk_without_a_marker_is_truncated_quickly() -> None:
    data = b"\xff\xd8\xff\xe0\x00\x04\x00\x00" + b"\x00\xff" * 5_000_000  # 10 MB, no marker
    started = time.monotonic()
    with pytest.raises(ImageTruncated):
        probe(data)
    assert time.monotonic() - started < 1.0


XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" {}/></rdf:RDF></x:xmpmeta>'
)


def xmp_oriented(img: Image.Image, fmt: str, k: int, *, exif: int | None = None) -> bytes:
    """`img` saved as `fmt` with orientation k only in XMP (and an EXIF orientation if given)."""
    from PIL import PngImagePlugin, TiffImagePlugin

    packet = XMP.format(f'tiff:Orientation="{k}"')
    kwargs: dict[str, Any] = {}
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", packet, zip=k % 2 == 0)  # deflated or not
        kwargs["pnginfo"] = info
    elif fmt == "TIFF":
        ifd = TiffImagePlugin.ImageFileDirectory_v2()
        ifd[700] = packet.encode()
        ifd.tagtype[700] = 1
        kwargs["tiffinfo"] = ifd
    else:
        kwargs["xmp"] = packet.encode()
        if fmt == "WEBP":
            kwargs["lossless"] = True
    if exif is not None:
        tags = Image.Exif()
        tags[0x0112] = exif
        kwargs["exif"] = tags.tobytes()
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("k", range(1, 9))
def test_orientation_only_in_xmp_is_read_as_pillow_reads_it(
    fmt: str, k: int, small_cat: Image.Image
) -> None:
    from PIL import ImageOps

    data = xmp_oriented(small_cat, fmt, k)
    assert probe(data).orientation == k
    with Image.open(io.BytesIO(data)) as im:
        assert ImageOps.exif_transpose(im).size == probe(data).oriented_size


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_wins_over_xmp(fmt: str, small_cat: Image.Image) -> None:
    from PIL import ImageOps

    data = xmp_oriented(small_cat, fmt, 6, exif=1)
    assert probe(data).orientation == 1
    with Image.open(io.BytesIO(data)) as im:
        assert ImageOps.exif_transpose(im).size == small_cat.size


def test_a_deflated_xmp_bomb_is_inflated_only_so_far(small_cat: Image.Image) -> None:
    """An iTXt XMP packet inflating to 200 MB is read to 1 MiB, quickly; orientation after
    that point is not seen (Pillow refuses such a chunk outright)."""
    import zlib

    packet = b" " * 200_000_000 + XMP.format('tiff:Orientation="6"').encode()
    body = b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(packet, 9)
    chunk = (
        struct.pack(">I", len(body))
        + b"iTXt"
        + body
        + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    )
    png = io.BytesIO()
    small_cat.save(png, "PNG")
    data = png.getvalue()[:33] + chunk + png.getvalue()[33:]  # after IHDR
    started = time.monotonic()
    assert probe(data).orientation == 1
    assert time.monotonic() - started < 2.0
