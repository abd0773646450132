"""Regenerates the test images in tests/data from their committed sources (see README.md)."""

from __future__ import annotations

import argparse
import io
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import pillow_heif
from PIL import Image, ImageCms, ImageDraw, ImageOps

HERE = Path(__file__).resolve().parent
SKIMAGE_VERSION = "0.26.0"
# photo in the wheel -> (file here, re-encode as JPEG q90?)
WHEEL_PHOTOS = {
    "skimage/data/chelsea.png": ("cat.jpg", True),
    "skimage/data/coffee.png": ("coffee.jpg", True),
    "skimage/data/astronaut.png": ("astronaut.jpg", True),
    "skimage/data/rocket.jpg": ("rocket.jpg", False),  # kept byte for byte: real Adobe RGB ICC
}
SMALL = (225, 150)  # derived files are the cat at half size, to keep tests/data small


def photos_from_wheel(wheel: Path | None) -> None:
    """Write cat.jpg, coffee.jpg, astronaut.jpg and rocket.jpg from the scikit-image wheel."""
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    f"scikit-image=={SKIMAGE_VERSION}",
                    "--no-deps",
                    "--only-binary",
                    ":all:",
                    "-d",
                    tmp,
                ],
                check=True,
            )
            wheel = next(Path(tmp).glob("scikit_image-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for member, (name, reencode) in WHEEL_PHOTOS.items():
                raw = zf.read(member)
                if not reencode:
                    (HERE / name).write_bytes(raw)
                    continue
                with Image.open(io.BytesIO(raw)) as im:
                    # The PNGs carry an sRGB profile; plain JPEG means sRGB already.
                    im.convert("RGB").save(HERE / name, "JPEG", quality=90)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose IHDR claims width x height 8-bit grey; the IDAT holds 64 zero rows."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * ((width + 1) * 64), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def mp4_header() -> bytes:
    """The start of an MP4 video: ftyp (isom, mp42) and an empty moov and mdat."""

    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", 8 + len(body)) + kind + body

    ftyp = box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41mp42")
    mvhd = box(b"mvhd", bytes(4) + bytes(8) + struct.pack(">II", 1000, 0) + bytes(80))
    return ftyp + box(b"moov", mvhd) + box(b"mdat", b"")


def forge_ispe(heif: bytes, width: int, height: int) -> bytes:
    """`heif` with its only `ispe` property claiming width x height."""
    at = heif.index(b"ispe")
    assert heif.find(b"ispe", at + 4) < 0, "more than one ispe"
    body = at + 4 + 4  # after the type and the FullBox version and flags
    return heif[:body] + struct.pack(">II", width, height) + heif[body + 8 :]


def heif_files(cat: Image.Image, small: Image.Image, rgba: Image.Image) -> None:
    """HEIC with pillow-heif (libheif + x265), AVIF with Pillow's own plugin (libavif + aom)."""
    pillow_heif.register_heif_opener()
    small.save(HERE / "cat.heic", "HEIF", quality=80)
    small.save(HERE / "cat.avif", "AVIF", quality=80)
    # Stored turned a quarter, shown upright by `irot` (libheif writes it from the EXIF
    # orientation, and keeps Orientation = 6 in the EXIF, as an iPhone portrait photo has).
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = small.transpose(Image.Transpose.ROTATE_90)
    stored.save(HERE / "cat-rotated.heic", "HEIF", quality=80, exif=exif.tobytes())
    stored.save(HERE / "cat-rotated.avif", "AVIF", quality=80, exif=exif.tobytes())
    rgba.save(HERE / "cat-alpha.heic", "HEIF", quality=80)
    # The full cat in 128 px tiles: a grid image, as every iPhone photo is (in 512 px tiles).
    cat.save(HERE / "cat-grid.heic", "HEIF", quality=60, tile_size=128)
    heic = (HERE / "cat.heic").read_bytes()
    (HERE / "cat-truncated.heic").write_bytes(heic[: len(heic) // 2])
    (HERE / "cat-huge.heic").write_bytes(forge_ispe(heic, 100_000, 100_000))
    (HERE / "mp4-named.heic").write_bytes(mp4_header())


def derived() -> None:
    """Write every derived file from cat.jpg and ProPhotoRGB.icc."""
    with Image.open(HERE / "cat.jpg") as im:
        cat = im.convert("RGB")
    small = cat.resize(SMALL, Image.Resampling.LANCZOS)

    small.save(HERE / "cat.png")

    # RGBA: opaque ellipse of cat, fully transparent corners, a half-transparent band.
    alpha = Image.new("L", SMALL, 0)
    ImageDraw.Draw(alpha).ellipse((10, 5, SMALL[0] - 10, SMALL[1] - 5), fill=255)
    ImageDraw.Draw(alpha).rectangle((0, SMALL[1] // 2 - 5, SMALL[0], SMALL[1] // 2 + 5), fill=128)
    rgba = small.copy()
    rgba.putalpha(alpha)
    rgba.save(HERE / "cat-rgba.png")

    la = small.convert("L")
    la.putalpha(alpha)
    la.save(HERE / "cat-la.png")

    # Palette with a transparent index: 63 cat colours plus index 63 (green) as a 12 px frame.
    pal = small.quantize(63)
    palette = pal.getpalette() or []
    palette = [*palette[: 63 * 3], 0, 255, 0]
    pal.putpalette(palette)
    ImageDraw.Draw(pal).rectangle((0, 0, SMALL[0] - 1, SMALL[1] - 1), outline=63, width=12)
    pal.save(HERE / "cat-palette.png", transparency=63)

    # 16-bit grey: the 8-bit grey cat scaled to the full 16-bit range (v * 257).
    grey = small.convert("L")
    grey16 = Image.frombytes(
        "I;16", SMALL, bytes(b for v in grey.tobytes() for b in struct.pack("<H", v * 257))
    )
    grey16.save(HERE / "cat-gray16.png")

    small.save(HERE / "cat.webp", "WEBP", quality=85)
    small.save(HERE / "cat.tiff", "TIFF", compression="tiff_lzw")
    small.save(HERE / "cat.bmp", "BMP")
    grey.save(HERE / "cat-gray.jpg", "JPEG", quality=90)
    small.convert("CMYK").save(HERE / "cat-cmyk.jpg", "JPEG", quality=90)
    cat.save(HERE / "cat-progressive.jpg", "JPEG", quality=90, progressive=True)

    # Animated GIF: frame 0 is the cat, then a mirrored cat, then solid red.
    frames = [
        small,
        ImageOps.mirror(small),
        Image.new("RGB", SMALL, (255, 0, 0)),
    ]
    frames[0].save(
        HERE / "cat-animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0
    )

    # Pixels converted sRGB -> ProPhoto RGB, with the ProPhoto profile embedded: a viewer that
    # honours the profile shows the cat; one that ignores it shows a dull, darker cat.
    icc = (HERE / "ProPhotoRGB.icc").read_bytes()
    prophoto = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    srgb = ImageCms.createProfile("sRGB")
    converted = ImageCms.profileToProfile(small, srgb, prophoto, outputMode="RGB")
    assert isinstance(converted, Image.Image)
    converted.save(HERE / "cat-prophoto.jpg", "JPEG", quality=95, icc_profile=icc)

    jpeg = (HERE / "cat.jpg").read_bytes()
    (HERE / "cat-truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = (HERE / "cat.png").read_bytes()
    (HERE / "cat-truncated.png").write_bytes(png[: len(png) // 2])

    heif_files(cat, small, rgba)

    (HERE / "bomb.png").write_bytes(bomb_png())
    (HERE / "not-image.txt").write_text("This is a plain text file, not an image.\n")
    (HERE / "svg-named.jpg").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        '<circle cx="50" cy="50" r="40" fill="red"/></svg>\n'
    )
    (HERE / "pdf-named.png").write_bytes(
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--photos",
        action="store_true",
        help="also rewrite the photos (cat.jpg, ...) from the scikit-image wheel",
    )
    parser.add_argument("--wheel", type=Path, help="a scikit-image wheel already downloaded")
    parser.add_argument("--icc-from", type=Path, help="copy ProPhotoRGB.icc from this file first")
    args = parser.parse_args()
    if args.icc_from:
        shutil.copyfile(args.icc_from, HERE / "ProPhotoRGB.icc")
    if args.photos or args.wheel:
        photos_from_wheel(args.wheel)
    derived()


if __name__ == "__main__":
    main()
