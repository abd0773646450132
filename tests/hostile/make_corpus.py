"""Write the hostile image corpus (tests/hostile/corpus/) from the real images in tests/data.

Deterministic for a given Pillow (seeded RNG, fixed encoder settings). The tests write it to a
temporary folder each session; to get the files for another tool, run
`python tests/hostile/make_corpus.py [OUT]` (default OUT: tests/hostile/corpus, git-ignored).
Each file's name says what it is; tests/hostile/README.md groups them.
"""

from __future__ import annotations

import io
import random
import shutil
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image

HERE = Path(__file__).parent
DATA = HERE.parent / "data"
OUT = HERE / "corpus"

Maker = Callable[[], bytes]


def _cat(name: str = "cat.jpg") -> bytes:
    return (DATA / name).read_bytes()


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def _small_cat() -> Image.Image:
    with Image.open(DATA / "cat.png") as img:
        return img.convert("RGB")


# --- PNG by hand: the encoder refuses what a hostile client sends ---------------------------
def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, *, depth: int = 8, colour: int = 0, rows: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(rows, 9) if rows else zlib.compress(b"\x00" * 64, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def png_zlib_bomb() -> bytes:
    """20000 x 2400 grey (48 MP, under the pixel limit) of zeros: 48 MB inflated from ~47 KB."""
    width, height = 20000, 2400
    return _png(width, height, rows=(b"\x00" + b"\x00" * width) * height)


def png_huge_dimensions() -> bytes:
    """IHDR claims 2**31-1 squared; a few bytes of data."""
    return _png(2**31 - 1, 2**31 - 1)


def png_zero_by_zero() -> bytes:
    return _png(0, 0)


def png_one_by_100000() -> bytes:
    """A valid 1 x 100000 grey strip: legal, absurd aspect ratio."""
    rows = b"".join(b"\x00" + bytes([y % 256]) for y in range(100_000))
    return _png(1, 100_000, rows=rows)


def png_100000_by_1() -> bytes:
    return _png(100_000, 1, rows=b"\x00" + bytes(i % 256 for i in range(100_000)))


def png_apng_claims_many_frames() -> bytes:
    """acTL says 100000 frames; there is one."""
    png = _encode(_small_cat(), "PNG")
    actl = _png_chunk(b"acTL", struct.pack(">II", 100_000, 0))
    return png[:33] + actl + png[33:]


def png_16bit_rgba() -> bytes:
    img = Image.new("RGBA", (64, 48))
    raw = b"".join(
        struct.pack(">HHHH", x * 1000, y * 1300, (x * y) % 65536, 40000)
        for y in range(48)
        for x in range(64)
    )
    rows = b"".join(b"\x00" + raw[y * 64 * 8 : (y + 1) * 64 * 8] for y in range(48))
    del img
    return _png(64, 48, depth=16, colour=6, rows=rows)


def png_1bit() -> bytes:
    return _encode(_small_cat().convert("1"), "PNG")


def png_bad_crc() -> bytes:
    png = bytearray(_encode(_small_cat(), "PNG"))
    png[29] ^= 0xFF  # the IHDR CRC
    return bytes(png)


# --- GIF ------------------------------------------------------------------------------------
def _gif_frame(width: int, height: int) -> bytes:
    # Image descriptor, no local table, LZW min code size 2, one sub-block: clear, 0, end.
    return b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"


def _gif(width: int, height: int, frames: int, frame_size: tuple[int, int] | None = None) -> bytes:
    head = (
        b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    )
    fw, fh = frame_size or (width, height)
    gce = b"\x21\xf9\x04\x00\x01\x00\x00\x00"
    return head + (gce + _gif_frame(fw, fh)) * frames + b"\x3b"


def gif_huge_screen() -> bytes:
    return _gif(65535, 65535, 1)


def gif_5000_frames() -> bytes:
    return _gif(2, 2, 5000)


def gif_frame_outside_screen() -> bytes:
    return _gif(2, 2, 1, frame_size=(60000, 60000))


def gif_js_polyglot() -> bytes:
    """Starts `GIF89a/*`: a GIF header that is also the start of a JavaScript comment."""
    js = b"*/=1;alert(document.cookie);/*"
    body = b"GIF89a/*\x0a\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    body += b"\x21\xfe" + bytes([len(js)]) + js + b"\x00"
    return body + _gif_frame(2, 2) + b"\x3b*/"


# --- JPEG -----------------------------------------------------------------------------------
def _jpeg_set_size(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    pos = 2
    while pos < len(out):
        marker, length = out[pos + 1], struct.unpack_from(">H", out, pos + 2)[0]
        if marker in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", out, pos + 5, height, width)
            return bytes(out)
        pos += 2 + length
    raise ValueError("no SOF")


def jpeg_huge_dimensions() -> bytes:
    return _jpeg_set_size(_cat(), 65500, 65500)


def jpeg_zero_width() -> bytes:
    return _jpeg_set_size(_cat(), 0, 300)


def jpeg_soi_eoi_only() -> bytes:
    return b"\xff\xd8\xff\xd9"


def _with_app1(exif: bytes) -> bytes:
    data = _cat()
    segment = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    return data[:2] + segment + data[2:]


def jpeg_exif_offset_past_end() -> bytes:
    return _with_app1(b"Exif\x00\x00MM\x00\x2a" + struct.pack(">I", 0xFFFFFFF0))


def jpeg_exif_ifd_loop() -> bytes:
    # IFD0 at 8 with one entry (Orientation=6), whose next-IFD offset points back at itself.
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 8)
    return _with_app1(b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08" + ifd)


def jpeg_exif_orientation_count_huge() -> bytes:
    ifd = struct.pack(">H", 1) + struct.pack(">HHII", 0x0112, 3, 0x7FFFFFFF, 0xFFFFFF00)
    return _with_app1(b"Exif\x00\x00II\x2a\x00\x08\x00\x00\x00" + _swap_ifd(ifd))


def _swap_ifd(big_endian_ifd: bytes) -> bytes:
    count = struct.unpack_from(">H", big_endian_ifd)[0]
    out = struct.pack("<H", count)
    for i in range(count):
        tag, kind, n, value = struct.unpack_from(">HHII", big_endian_ifd, 2 + 12 * i)
        out += struct.pack("<HHII", tag, kind, n, value)
    return out + b"\x00\x00\x00\x00"


def jpeg_exif_orientation_9() -> bytes:
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 9, 0) + b"\x00" * 4
    return _with_app1(b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08" + ifd)


def jpeg_garbage_icc() -> bytes:
    icc = b"ICC_PROFILE\x00\x01\x01" + bytes(range(256)) * 8
    data = _cat()
    return data[:2] + b"\xff\xe2" + struct.pack(">H", len(icc) + 2) + icc + data[2:]


def jpeg_zip_polyglot() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.sh", "#!/bin/sh\necho pwned\n")
    return _cat() + archive.getvalue()


def jpeg_many_app_segments() -> bytes:
    """2000 max-size APP15 segments (128 MB would be bigger than any limit; this is ~130 KB)."""
    seg = b"\xff\xef" + struct.pack(">H", 66) + b"\x00" * 64
    data = _cat()
    return data[:2] + seg * 2000 + data[2:]


def jpeg_scan_bomb(scans: int = 3000) -> bytes:
    """A flat 2048 x 2048 progressive JPEG whose smallest scan is repeated to `scans` scans.

    A flat picture's AC scans are a few bytes (end-of-band runs), yet libjpeg walks every
    block for each, and only warns about the repeats: ~0.5 MB that costs seconds of CPU.
    """
    flat = Image.new("RGB", (2048, 2048), (120, 130, 140))
    base = _encode(flat, "JPEG", quality=90, progressive=True)
    end = base.rindex(b"\xff\xd9")
    starts = [i for i in range(len(base) - 1) if base[i : i + 2] == b"\xff\xda"]
    bounds = list(zip(starts, [*starts[1:], end], strict=True))
    first, last = min(bounds[1:], key=lambda b: b[1] - b[0])  # not the DC scan
    # Scans are separated by table segments (DHT) in Pillow's output: keep each scan's own.
    return base[:end] + base[first:last] * (scans - len(starts)) + base[end:]


def jpeg_giant_icc() -> bytes:
    """A real (ProPhoto) profile padded to 5 MiB, over max_icc_bytes, in 81 APP2 segments."""
    icc = (DATA / "ProPhotoRGB.icc").read_bytes()
    icc += b"\x00" * (5 * 1024 * 1024 - len(icc))
    chunk = 65519
    parts = [icc[i : i + chunk] for i in range(0, len(icc), chunk)]
    segments = b"".join(
        b"\xff\xe2"
        + struct.pack(">H", len(part) + 16)
        + b"ICC_PROFILE\x00"
        + bytes([n + 1, len(parts)])
        + part
        for n, part in enumerate(parts)
    )
    data = _encode(_small_cat(), "JPEG", quality=90)
    return data[:2] + segments + data[2:]


def jpeg_giant_xmp() -> bytes:
    """40 full-size XMP APP1 segments (2.6 MB of metadata around a 225 x 150 picture)."""
    xmp = b"http://ns.adobe.com/xap/1.0/\x00" + b"<x:xmpmeta>" + b"A" * 65000
    segment = b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp
    data = _cat()
    return data[:2] + segment * 40 + data[2:]


def png_giant_exif() -> bytes:
    """A 4 MiB eXIf chunk whose IFD0 has 65535 entries, each a loop back to itself."""
    entry = struct.pack(">HHII", 0x8769, 4, 1, 8)  # ExifIFD pointer back at IFD0
    ifd = struct.pack(">H", 0xFFFF) + entry * 0xFFFF + struct.pack(">I", 8)
    exif = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    exif += b"\x00" * (4 * 1024 * 1024 - len(exif))
    png = _encode(_small_cat(), "PNG")
    return png[:33] + _png_chunk(b"eXIf", exif) + png[33:]


def png_giant_iccp() -> bytes:
    """An iCCP chunk that inflates to 64 MiB (a few tens of KB on disk)."""
    body = b"icc\x00\x00" + zlib.compress(b"\x00" * (64 * 1024 * 1024), 9)
    png = _encode(_small_cat(), "PNG")
    return png[:33] + _png_chunk(b"iCCP", body) + png[33:]


def jpeg_cmyk_inverted_adobe() -> bytes:
    return _encode(_small_cat().convert("CMYK"), "JPEG", quality=80)


# --- TIFF -----------------------------------------------------------------------------------
def _tiff(entries: list[tuple[int, int, int, int]], tail: bytes = b"") -> bytes:
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in sorted(entries):
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += b"\x00\x00\x00\x00"
    return b"II\x2a\x00" + struct.pack("<I", 8) + ifd + tail


def tiff_huge_dimensions() -> bytes:
    return _tiff(
        [
            (256, 4, 1, 100_000),
            (257, 4, 1, 100_000),
            (258, 3, 1, 8),
            (259, 3, 1, 1),
            (262, 3, 1, 1),
            (273, 4, 1, 200),
            (277, 3, 1, 1),
            (278, 4, 1, 100_000),
            (279, 4, 1, 16),
        ],
        b"\x00" * 200,
    )


def tiff_strip_offset_past_end() -> bytes:
    return _tiff(
        [
            (256, 3, 1, 64),
            (257, 3, 1, 64),
            (258, 3, 1, 8),
            (259, 3, 1, 1),
            (262, 3, 1, 1),
            (273, 4, 1, 0x7FFFFFF0),
            (277, 3, 1, 1),
            (278, 3, 1, 64),
            (279, 4, 1, 4096),
        ],
    )


def tiff_ifd_loop() -> bytes:
    data = bytearray(tiff_strip_offset_past_end())
    struct.pack_into("<I", data, len(data) - 4, 8)  # next IFD = this IFD
    return bytes(data)


def tiff_2000_pages() -> bytes:
    frame = Image.new("L", (2, 2), 128)
    return _encode(frame, "TIFF", save_all=True, append_images=[frame] * 1999)


def tiff_float32() -> bytes:
    return _encode(_small_cat().convert("F"), "TIFF")


def tiff_float32_49mp() -> bytes:
    """7000 x 7000 float grey (mode F), deflated to ~300 KB: 196 MB of samples to decode."""
    ramp = Image.linear_gradient("L").resize((7000, 7000)).convert("F")
    return _encode(ramp.point(lambda v: v * (1 / 255)), "TIFF", compression="tiff_adobe_deflate")


def _tiff_samples(width: int, height: int, bits: int, samples: int, sample_format: int) -> bytes:
    """An uncompressed chunky TIFF with per-sample BitsPerSample/SampleFormat arrays."""
    arrays = struct.pack(f"<{samples}H", *[bits] * samples)
    arrays += struct.pack(f"<{samples}H", *[sample_format] * samples)
    entries = 11
    arrays_at = 8 + 2 + 12 * entries + 4
    data_at = arrays_at + len(arrays)
    size = width * height * samples * bits // 8

    ifd = struct.pack("<H", entries)
    for tag, kind, count, value in (
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, samples, arrays_at if samples > 2 else bits),
        (259, 3, 1, 1),
        (262, 3, 1, 2 if samples >= 3 else 1),
        (273, 4, 1, data_at),
        (277, 3, 1, samples),
        (278, 4, 1, height),
        (279, 4, 1, size),
        (284, 3, 1, 1),
        (339, 3, samples, arrays_at + 2 * samples if samples > 2 else sample_format),
    ):
        if kind == 3 and count <= 2:
            packed = struct.pack("<H", value) * count + b"\x00\x00" * (2 - count)
        else:
            packed = struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    body = b"II\x2a\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + arrays
    rng = random.Random(f"{bits}-{samples}-{sample_format}")
    return body + bytes(rng.randrange(256) for _ in range(size))


def tiff_float32_rgb() -> bytes:
    """RGB with three 32-bit float samples: valid TIFF, no Pillow mode for it."""
    return _tiff_samples(64, 48, 32, 3, 3)


def tiff_float16_grey() -> bytes:
    return _tiff_samples(64, 48, 16, 1, 3)


def png_16bit_grey_49mp() -> bytes:
    """7000 x 7000 16-bit grey in ~110 KB: Pillow's I;16 is 98 MB before any conversion."""
    return _png(7000, 7000, depth=16, rows=(b"\x00" + b"\x12\x34" * 7000) * 7000)


def tiff_16bit_grey() -> bytes:
    return _encode(_small_cat().convert("I;16"), "TIFF")


def tiff_cmyk() -> bytes:
    return _encode(_small_cat().convert("CMYK"), "TIFF")


def tiff_lab() -> bytes:
    return _encode(_small_cat().convert("LAB"), "TIFF")


# --- WebP -----------------------------------------------------------------------------------
def webp_huge_canvas() -> bytes:
    vp8x = struct.pack("<I", 0) + (16383 - 1).to_bytes(3, "little") * 2
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_riff_size_lies() -> bytes:
    data = bytearray(_cat("cat.webp"))
    struct.pack_into("<I", data, 4, 0xFFFFFFF0)
    return bytes(data)


def webp_1500_frames() -> bytes:
    frames = [Image.new("RGB", (4, 4), (i % 256, 0, 0)) for i in range(1500)]
    return _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)


# --- BMP ------------------------------------------------------------------------------------
def bmp_huge_dimensions() -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 62, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, 60000, -60000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return header + info + b"\x00" * 8


# --- disguised non-images -------------------------------------------------------------------
def html_named_jpg() -> bytes:
    return b"<!doctype html><html><body><script>alert(1)</script></body></html>\n"


def svg_script_named_png() -> bytes:
    return (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100000" '
        b'height="100000"><script>alert(1)</script></svg>\n'
    )


def pdf_named_jpg() -> bytes:
    return b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def zip_named_png() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "x" * 1000)
    return archive.getvalue()


def elf_named_gif() -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\x00" * 57


def ico_named_jpg() -> bytes:
    return _encode(_small_cat().resize((32, 32)), "ICO")


# --- damaged copies of real files -----------------------------------------------------------
def _truncations() -> dict[str, Maker]:
    makers: dict[str, Maker] = {}
    sources = {
        "jpg": "cat.jpg",
        "png": "cat.png",
        "webp": "cat.webp",
        "tiff": "cat.tiff",
        "gif": "cat-animated.gif",
        "progressive.jpg": "cat-progressive.jpg",
    }
    for ext, name in sources.items():
        for frac in (0.02, 0.3, 0.7, 0.97):

            def cut(name: str = name, frac: float = frac) -> bytes:
                data = _cat(name)
                return data[: max(8, int(len(data) * frac))]

            makers[f"truncated-{int(frac * 100):02d}pct.{ext}"] = cut
    return makers


def _bit_flips() -> dict[str, Maker]:
    makers: dict[str, Maker] = {}
    sources = {
        "jpg": "cat.jpg",
        "png": "cat.png",
        "webp": "cat.webp",
        "tiff": "cat.tiff",
        "gif": "cat-animated.gif",
        "heic": "cat.heic",
        "avif": "cat.avif",
    }
    for ext, name in sources.items():
        for flips in (1, 16, 256):
            for seed in (1, 2):

                def flip(name: str = name, flips: int = flips, seed: int = seed) -> bytes:
                    data = bytearray(_cat(name))
                    rng = random.Random(f"{name}-{flips}-{seed}")
                    for _ in range(flips):
                        pos = rng.randrange(4, len(data))  # keep the magic: reach the decoder
                        data[pos] ^= 1 << rng.randrange(8)
                    return bytes(data)

                makers[f"bitflip-{flips}x-seed{seed}.{ext}"] = flip
    return makers


MAKERS: dict[str, Maker] = {
    "bomb-png-zlib-48mp.png": png_zlib_bomb,
    "bomb-png-huge-dimensions.png": png_huge_dimensions,
    "png-0x0.png": png_zero_by_zero,
    "png-1x100000.png": png_one_by_100000,
    "png-100000x1.png": png_100000_by_1,
    "apng-claims-100000-frames.png": png_apng_claims_many_frames,
    "png-16bit-rgba.png": png_16bit_rgba,
    "png-1bit.png": png_1bit,
    "png-bad-crc.png": png_bad_crc,
    "bomb-gif-huge-screen.gif": gif_huge_screen,
    "gif-5000-frames.gif": gif_5000_frames,
    "gif-frame-outside-screen.gif": gif_frame_outside_screen,
    "polyglot-gif-js.gif": gif_js_polyglot,
    "bomb-jpeg-huge-dimensions.jpg": jpeg_huge_dimensions,
    "jpeg-zero-width.jpg": jpeg_zero_width,
    "jpeg-soi-eoi-only.jpg": jpeg_soi_eoi_only,
    "jpeg-exif-offset-past-end.jpg": jpeg_exif_offset_past_end,
    "jpeg-exif-ifd-loop.jpg": jpeg_exif_ifd_loop,
    "jpeg-exif-count-huge.jpg": jpeg_exif_orientation_count_huge,
    "jpeg-exif-orientation-9.jpg": jpeg_exif_orientation_9,
    "jpeg-garbage-icc.jpg": jpeg_garbage_icc,
    "polyglot-jpeg-zip.jpg": jpeg_zip_polyglot,
    "jpeg-2000-app-segments.jpg": jpeg_many_app_segments,
    "jpeg-cmyk.jpg": jpeg_cmyk_inverted_adobe,
    "bomb-jpeg-3000-scans.jpg": jpeg_scan_bomb,
    "jpeg-giant-icc-5mib.jpg": jpeg_giant_icc,
    "jpeg-giant-xmp.jpg": jpeg_giant_xmp,
    "png-giant-exif.png": png_giant_exif,
    "png-giant-iccp.png": png_giant_iccp,
    "png-16bit-grey-49mp.png": png_16bit_grey_49mp,
    "bomb-tiff-huge-dimensions.tiff": tiff_huge_dimensions,
    "tiff-strip-offset-past-end.tiff": tiff_strip_offset_past_end,
    "tiff-ifd-loop.tiff": tiff_ifd_loop,
    "tiff-2000-pages.tiff": tiff_2000_pages,
    "tiff-float32.tiff": tiff_float32,
    "tiff-float32-49mp.tiff": tiff_float32_49mp,
    "tiff-float32-rgb.tiff": tiff_float32_rgb,
    "tiff-float16-grey.tiff": tiff_float16_grey,
    "tiff-16bit-grey.tiff": tiff_16bit_grey,
    "tiff-cmyk.tiff": tiff_cmyk,
    "tiff-lab.tiff": tiff_lab,
    "bomb-webp-huge-canvas.webp": webp_huge_canvas,
    "webp-riff-size-lies.webp": webp_riff_size_lies,
    "webp-1500-frames.webp": webp_1500_frames,
    "bomb-bmp-huge-dimensions.bmp": bmp_huge_dimensions,
    "disguised-html.jpg": html_named_jpg,
    "disguised-svg-script.png": svg_script_named_png,
    "disguised-pdf.jpg": pdf_named_jpg,
    "disguised-zip.png": zip_named_png,
    "disguised-elf.gif": elf_named_gif,
    "disguised-ico.jpg": ico_named_jpg,
    **_truncations(),
    **_bit_flips(),
}


def write_corpus(out: Path) -> int:
    """Write every file of the corpus into `out` (created if missing); returns total bytes."""
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, make in MAKERS.items():
        data = make()
        (out / name).write_bytes(data)
        total += len(data)
    return total


def main() -> None:
    """Rewrite the corpus into the folder given (default: tests/hostile/corpus)."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    if out.exists():
        shutil.rmtree(out)
    total = write_corpus(out)
    print(f"wrote {len(MAKERS)} files, {total / 1e6:.1f} MB, to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
