"""Image format sniffing and header probing: format, dimensions, frames and orientation.

Everything here reads headers with `struct`; no pixel is decoded and no image library is
touched, so the size limits in `limits` run before any decoder sees the bytes. HEIF and AVIF
are ISOBMFF containers: their size and orientation come from the item properties in `meta`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from imgest.errors import EmptyFile, UnsupportedMediaType
from imgest.imaging import isobmff
from imgest.imaging.header import SWAPS_AXES, corrupt, truncated

MIME_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
    "heif": "image/heif",  # image/heic when the brands say HEVC (see heif_mime)
    "avif": "image/avif",
}
FORMATS = tuple(MIME_TYPES)

# BMP has a weak two-byte magic; also require one of the DIB header sizes Pillow reads.
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: format, stored size, frame count and orientation.

    For HEIF and AVIF, `orientation` is the EXIF value equivalent to the `irot`/`imir`
    properties (their EXIF orientation tag is never used: the container's transform wins), and
    `width` x `height` is the stored picture after any `clap` crop the decoder applies.
    """

    format: str  # one of FORMATS
    mime: str
    width: int  # as stored, before orientation
    height: int
    frames: int  # 1 for still images
    orientation: int = 1  # EXIF orientation 1-8; 1 when absent or invalid
    # What the decoder allocates before cropping (HEIF `clap`), when more than width x height.
    canvas_pixels: int = 0

    @property
    def pixels(self) -> int:
        """Pixels the decoder holds for one frame: width x height, or the uncropped canvas."""
        return max(self.width * self.height, self.canvas_pixels)

    @property
    def oriented_size(self) -> tuple[int, int]:
        """(width, height) as displayed, after EXIF orientation."""
        if self.orientation in SWAPS_AXES:
            return self.height, self.width
        return self.width, self.height


def sniff(data: bytes) -> str | None:
    """The format named by the magic bytes at the start of `data`, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if (
        data[:2] == b"BM"
        and len(data) >= 18
        and struct.unpack_from("<I", data, 14)[0] in _BMP_HEADER_SIZES
    ):
        return "bmp"
    if data[4:8] == b"ftyp":
        return isobmff.image_format(data)
    return None


def probe(data: bytes) -> ImageInfo:
    """Read format, size, frames and orientation from the header, without decoding pixels."""
    if not data:
        raise EmptyFile()
    fmt = sniff(data)
    if fmt is None:
        raise UnsupportedMediaType()
    canvas = 0
    try:
        if fmt in ("heif", "avif"):
            width, height, frames, orientation, canvas = isobmff.read_header(data, fmt)
        else:
            width, height, frames, orientation = _READERS[fmt](data)
    except (struct.error, IndexError) as exc:
        raise truncated(fmt.upper()) from exc
    return ImageInfo(
        format=fmt,
        mime=isobmff.heif_mime(data) if fmt == "heif" else MIME_TYPES[fmt],
        width=width,
        height=height,
        frames=max(1, frames),
        orientation=orientation if 1 <= orientation <= 8 else 1,
        canvas_pixels=canvas if canvas > width * height else 0,
    )


_Header = tuple[int, int, int, int]  # width, height, frames, orientation


# --- JPEG ----------------------------------------------------------------------------------

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_segments(data: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """The JPEG marker segments before the first scan, as (marker, start, end) of each
    payload, and the offset just after the SOS header; raises struct.error if cut short."""
    pos = 2
    segments: list[tuple[int, int, int]] = []
    size = len(data)
    while True:
        # Markers may be preceded by any number of 0xFF fill bytes.
        if data[pos] != 0xFF:
            raise corrupt("JPEG", f"expected a marker at byte {pos}")
        while data[pos] == 0xFF:
            pos += 1
        marker = data[pos]
        pos += 1
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone: TEM, RSTn
            continue
        if marker == 0xD9:
            raise corrupt("JPEG", "the image ends before its first scan")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise corrupt("JPEG", "segment length below 2")
        end = pos + length
        if end > size:
            raise struct.error("segment runs past the end of the data")
        segments.append((marker, pos + 2, end))
        pos = end
        if marker == 0xDA:
            return segments, pos


def _read_jpeg(data: bytes) -> _Header:
    segments, _ = jpeg_segments(data)
    width = height = -1
    orientation = 1
    exif_seen = False
    for marker, start, end in segments:
        if marker in _SOF_MARKERS and width < 0:
            height, width = struct.unpack_from(">HH", data, start + 1)
        elif marker == 0xE1 and not exif_seen and data[start : start + 6] == b"Exif\x00\x00":
            exif_seen = True  # like Pillow, only the first Exif APP1 counts
            orientation = exif_orientation(data[start + 6 : end])
    if width < 0:
        raise corrupt("JPEG", "no frame header (SOF) before the first scan")
    return width, height, 1, orientation


def exif_orientation(tiff: bytes) -> int:
    """Orientation (tag 0x0112) from IFD0 of a TIFF-structured EXIF block; 1 if unreadable."""
    if tiff[:6] == b"Exif\x00\x00":
        tiff = tiff[6:]
    try:
        order = _byte_order(tiff)
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for i in range(count):
            tag, kind = struct.unpack_from(order + "HH", tiff, ifd + 2 + 12 * i)
            if tag == 0x0112 and kind == 3:
                value: int = struct.unpack_from(order + "H", tiff, ifd + 2 + 12 * i + 8)[0]
                return value
    except (struct.error, ValueError):
        pass
    return 1


def _byte_order(tiff: bytes) -> str:
    if tiff[:2] == b"II":
        return "<"
    if tiff[:2] == b"MM":
        return ">"
    raise ValueError("not a TIFF byte order mark")


# --- PNG -----------------------------------------------------------------------------------


def _read_png(data: bytes) -> _Header:
    (length,) = struct.unpack_from(">I", data, 8)
    if data[12:16] != b"IHDR" or length != 13:
        raise corrupt("PNG", "the first chunk is not IHDR")
    width, height = struct.unpack_from(">II", data, 16)
    frames = 1
    orientation = 1
    idat_seen = False
    pos = 8
    # Walk chunk headers only (no inflating): acTL counts APNG frames, eXIf may follow IDAT.
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = pos + 8
        if kind == b"acTL" and not idat_seen:
            (frames,) = struct.unpack_from(">I", data, body)
        elif kind == b"eXIf":
            orientation = exif_orientation(data[body : body + length])
        elif kind == b"IDAT":
            idat_seen = True
        elif kind == b"IEND":
            break
        pos = body + length + 4
    return width, height, frames, orientation


# --- GIF -----------------------------------------------------------------------------------


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while True:
        size = data[pos]
        pos += 1
        if size == 0:
            return pos
        pos += size


def _read_gif(data: bytes) -> _Header:
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13
    if flags & 0x80:
        pos += 3 << ((flags & 7) + 1)
    frames = 0
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor
            x, y, w, h, local = struct.unpack_from("<HHHHB", data, pos + 1)
            if frames == 0:
                # Pillow grows the canvas to fit the first frame; report what it will decode.
                width, height = max(width, x + w), max(height, y + h)
            frames += 1
            pos += 10
            if local & 0x80:
                pos += 3 << ((local & 7) + 1)
            try:
                pos = _skip_sub_blocks(data, pos + 1)  # +1: LZW minimum code size
            except IndexError:
                break  # image data cut short: the decoder reports that
        else:
            break  # garbage after the last complete block: Pillow stops there too
    if frames == 0:
        raise truncated("GIF") if pos >= len(data) else corrupt("GIF", "no image")
    return width, height, frames, 1


# --- WebP ----------------------------------------------------------------------------------


def _read_webp(data: bytes) -> _Header:
    pos = 12
    width = height = -1
    frames = 0
    orientation = 1
    end = min(len(data), 8 + struct.unpack_from("<I", data, 4)[0])
    while pos + 8 <= end:
        kind, length = struct.unpack_from("<4sI", data, pos)
        body = pos + 8
        if kind == b"VP8X":
            width = 1 + int.from_bytes(data[body + 4 : body + 7], "little")
            height = 1 + int.from_bytes(data[body + 7 : body + 10], "little")
            if body + 10 > len(data):
                raise struct.error("VP8X chunk cut short")
        elif kind == b"VP8 " and width < 0:
            if data[body + 3 : body + 6] != b"\x9d\x01\x2a":
                raise corrupt("WebP", "bad VP8 start code")
            w, h = struct.unpack_from("<HH", data, body + 6)
            width, height = w & 0x3FFF, h & 0x3FFF
        elif kind == b"VP8L" and width < 0:
            if data[body] != 0x2F:
                raise corrupt("WebP", "bad VP8L signature")
            (bits,) = struct.unpack_from("<I", data, body + 1)
            width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        elif kind == b"ANMF":
            frames += 1
        elif kind == b"EXIF":
            orientation = exif_orientation(data[body : body + length])
        pos = body + length + (length & 1)
    if width < 0:
        if pos < len(data) or len(data) < end:
            raise truncated("WebP")
        raise corrupt("WebP", "no image chunk")
    return width, height, frames, orientation


# --- TIFF ----------------------------------------------------------------------------------

_MAX_IFDS = 100_000  # bounds the walk; far above any frame limit


def _read_tiff(data: bytes) -> _Header:
    order = _byte_order(data)
    big = data[2:4] in (b"+\x00", b"\x00+")
    if big:
        (offset,) = struct.unpack_from(order + "Q", data, 8)
        count_fmt, entry_size, offset_fmt, value_at = "Q", 20, "Q", 12
    else:
        (offset,) = struct.unpack_from(order + "I", data, 4)
        count_fmt, entry_size, offset_fmt, value_at = "H", 12, "I", 8
    count_size = struct.calcsize(count_fmt)
    width = height = -1
    orientation = 1
    frames = 0
    seen: set[int] = set()
    while offset and offset not in seen and frames < _MAX_IFDS:
        if offset + count_size > len(data):
            break  # an offset past the end (BigTIFF's are 64-bit: too big even to seek to)
        seen.add(offset)
        (count,) = struct.unpack_from(order + count_fmt, data, offset)
        if frames == 0:
            for i in range(count):
                entry = offset + count_size + entry_size * i
                tag, kind = struct.unpack_from(order + "HH", data, entry)
                if tag in (256, 257, 274):
                    fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
                    if fmt is None:
                        continue
                    (value,) = struct.unpack_from(order + fmt, data, entry + value_at)
                    if tag == 256:
                        width = value
                    elif tag == 257:
                        height = value
                    else:
                        orientation = value
        frames += 1
        next_at = offset + count_size + entry_size * count
        if next_at + struct.calcsize(offset_fmt) > len(data):
            break  # a cut-off IFD chain: count what is there
        (offset,) = struct.unpack_from(order + offset_fmt, data, next_at)
    if width < 0 or height < 0:
        raise corrupt("TIFF", "no ImageWidth/ImageLength in the first directory")
    return width, height, frames, orientation


# --- BMP -----------------------------------------------------------------------------------


def _read_bmp(data: bytes) -> _Header:
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size == 12:
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height), 1, 1


_READERS = {
    "jpeg": _read_jpeg,
    "png": _read_png,
    "gif": _read_gif,
    "webp": _read_webp,
    "tiff": _read_tiff,
    "bmp": _read_bmp,
}
