"""Image format sniffing and header probing: format, dimensions, frames and orientation.

Everything here reads headers with `struct`; no pixel is decoded and no image library is
touched, so the size limits in `limits` run before any decoder sees the bytes. HEIF and AVIF
are ISOBMFF containers: their size and orientation come from the item properties in `meta`.
Orientation is the EXIF tag, or, when there is none, `tiff:Orientation` in an XMP packet (JPEG
APP1, PNG iTXt, WebP `XMP `, TIFF tag 700), found as Pillow's `exif_transpose` finds it.

Besides the size, each reader says what decoding will cost: how many bytes per pixel the decode
path holds at its peak (the decoder's output mode, the copies our conversion makes, Pillow's
alpha premultiplication when reducing; measured in tests/imaging/test_decode_memory.py) and, for
JPEG, how many scans the decoder must run.

Why one long module: it is the one probe the limits run on, a reader of 20-60 lines per format
(JPEG, PNG, GIF, WebP, TIFF, BMP; HEIF/AVIF are in `isobmff`) that share the header record, the
decode-cost model and the EXIF reader; split by format they would each need all three.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import re
import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from imgest.errors import EmptyFile, UnsupportedMediaType, UnsupportedPixelFormat
from imgest.imaging import isobmff
from imgest.imaging.header import SWAPS_AXES, corrupt, truncated

log = logging.getLogger(__name__)

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
    scans: int = 1  # JPEG scans (progressive JPEGs have several); 1 for every other format
    # Peak bytes per pixel of the decode path at full size (see the module docstring).
    bytes_per_pixel: int = 4
    # Whether the decoder can decode at a reduced size (JPEG's DCT scaling).
    scalable: bool = False

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
            header = _Header(width, height, frames, orientation, bytes_per_pixel=_HEIF_BPP)
        else:
            header = _READERS[fmt](data)
    except (struct.error, IndexError) as exc:
        raise truncated(fmt.upper()) from exc
    width, height = header.width, header.height
    return ImageInfo(
        format=fmt,
        mime=isobmff.heif_mime(data) if fmt == "heif" else MIME_TYPES[fmt],
        width=width,
        height=height,
        frames=max(1, header.frames),
        orientation=header.orientation if 1 <= header.orientation <= 8 else 1,
        canvas_pixels=canvas if canvas > width * height else 0,
        scans=header.scans,
        bytes_per_pixel=header.bytes_per_pixel,
        scalable=header.scalable,
    )


class _Header(NamedTuple):
    width: int
    height: int
    frames: int
    orientation: int
    scans: int = 1
    bytes_per_pixel: int = 4
    scalable: bool = False


# Peak decode bytes per pixel, by what the decoder delivers (Pillow keeps RGB in 4 bytes):
# 1-byte grey/palette, 4-byte RGB(A)/CMYK/LAB/32-bit, and what our steps add at full size.
_ALPHA = 4  # Image.reduce premultiplies LA/RGBA into a full-size copy
_TO_RGB = 4  # palette/CMYK/LAB/YCbCr converted to RGB(A) before reducing
_TO_L = 1  # 1-bit, 16-bit, 32-bit and float grey brought to 8-bit grey
# libheif/libavif planes and RGB buffer, then Pillow's copy: 7.3 measured for a 24 MP HEIC
# (no alpha; an alpha one costs more, which the header does not say without parsing auxC).
_HEIF_BPP = 8


# --- JPEG ----------------------------------------------------------------------------------

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_segments(data: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """The JPEG marker segments before the first scan, as (marker, start, end) of each
    payload, and the offset just after the SOS header; raises struct.error if cut short."""
    pos = 2
    segments: list[tuple[int, int, int]] = []
    size = len(data)
    while True:
        marker, pos = _next_marker(data, pos)
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


def jpeg_without_header_junk(
    data: bytes, segments: list[tuple[int, int, int]], scan_start: int
) -> bytes:
    """`data` with the header (SOI to the first scan) rewritten from its segments alone: what
    libjpeg skips before a marker (see _next_marker) is left out, since TurboJPEG's header
    reader fails on the warning even when decoding is not strict. `data` itself, uncopied,
    when there is nothing to leave out."""
    header = 2 + sum(end - start + 4 for _, start, end in segments)
    if header == scan_start:
        return data
    parts = [b"\xff\xd8"]
    parts.extend(
        b"\xff" + bytes((marker,)) + data[start - 2 : end] for marker, start, end in segments
    )
    parts.append(data[scan_start:])
    return b"".join(parts)


# A marker: 0xFF, any 0xFF fill, then a byte that is neither fill nor a stuffed 0x00.
_MARKER = re.compile(rb"\xff+([^\x00\xff])")


def _next_marker(data: bytes, pos: int) -> tuple[int, int]:
    """(marker, offset after it) of the first marker at or after `pos`; raises IndexError at
    the end of the data.

    As libjpeg's next_marker(): anything else before a marker is skipped (it warns "Corrupt
    JPEG data: N extraneous bytes before marker"; cameras and editors leave such padding),
    0xFF 0x00 included. One regex search, in C: a file of junk costs no Python loop.
    """
    match = _MARKER.search(data, pos)
    if match is None:
        raise IndexError("no marker before the end of the data")
    if match.start() > pos:
        log.warning(
            "JPEG: %d extraneous bytes before marker 0x%02X skipped",
            match.start() - pos,
            data[match.end() - 1],
        )
    return data[match.end() - 1], match.end()


def _read_jpeg(data: bytes) -> _Header:
    segments, scan_start = jpeg_segments(data)
    width = height = -1
    components = 3
    orientation: int | None = None
    exif_seen = False
    xmp = b""
    for marker, start, end in segments:
        if marker in _SOF_MARKERS and width < 0:
            height, width, components = struct.unpack_from(">HHB", data, start + 1)
        elif marker == 0xE1 and not exif_seen and data[start : start + 6] == b"Exif\x00\x00":
            exif_seen = True  # like Pillow, only the first Exif APP1 counts
            orientation = exif_orientation_tag(data[start + 6 : end])
        elif marker == 0xE1 and data[start : start + len(_XMP_APP1)] == _XMP_APP1:
            xmp = data[start + len(_XMP_APP1) : end]  # like Pillow, the last one counts
    if width < 0:
        raise corrupt("JPEG", "no frame header (SOF) before the first scan")
    if orientation is None:
        orientation = xmp_orientation(xmp)
    # simplejpeg's array, then Pillow's copy (RGB: 3 + 4, grey: 1 + 1); CMYK/YCCK through
    # Pillow: CMYK, then the colour transform's RGB.
    bpp = {1: 2, 3: 7}.get(components, 4 + _TO_RGB)
    scans = jpeg_scans(data, scan_start)
    return _Header(width, height, 1, orientation, scans, bpp, scalable=True)


# A marker in entropy-coded data: 0xFF (any fill) then neither a stuffed 0x00 nor RSTn.
MAX_SCANS_COUNTED = 100_000  # bounds the walk; far above any scan limit


def _marker_offsets(data: bytes, pos: int) -> list[int]:
    """Offsets from `pos` on of every 0xFF that starts a marker (not stuffing, fill or RSTn).

    numpy runs the byte comparisons without holding the GIL: the scan data of a 20 MB photo
    is looked through in milliseconds, without stalling the event loop the way a regex
    search over it (which holds the GIL throughout) did.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    ff = np.flatnonzero(arr[pos:-1] == 0xFF) + pos
    following = arr[ff + 1]
    marker = (following != 0x00) & (following != 0xFF) & ((following < 0xD0) | (following > 0xD7))
    offsets: list[int] = ff[marker].tolist()
    return offsets


def jpeg_scans(data: bytes, pos: int) -> int:
    """How many scans (SOS segments) a JPEG has, its first scan's data starting at `pos`.

    Finds every marker candidate at once (`_marker_offsets`), then walks the segments between
    scans, skipping to the first candidate past each, so a file of many tiny scans costs one
    Python step per segment, up to MAX_SCANS_COUNTED.
    """
    scans = 1
    size = len(data)
    offsets = _marker_offsets(data, pos)
    index = 0
    while scans < MAX_SCANS_COUNTED:
        index = bisect.bisect_left(offsets, pos, index)
        if index == len(offsets):
            break  # cut short: the decoder reports that
        marker, pos = data[offsets[index] + 1], offsets[index] + 2
        if marker == 0xD9:  # EOI
            break
        if marker == 0x01:  # TEM: no length
            continue
        if pos + 2 > size:
            break
        if marker == 0xDA:
            scans += 1
        pos += struct.unpack_from(">H", data, pos)[0]
    return scans


_XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\x00"
# Pillow's pattern (Image.getexif): the attribute or element form, one digit.
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(="|>)([0-9])')


def xmp_orientation(packet: bytes) -> int:
    """Orientation from `tiff:Orientation` in an XMP packet, as Pillow reads it; 1 if none."""
    match = _XMP_ORIENTATION.search(packet)
    return int(match[2]) if match else 1


def exif_orientation(tiff: bytes) -> int:
    """Orientation (tag 0x0112) from IFD0 of a TIFF-structured EXIF block; 1 if unreadable."""
    value = exif_orientation_tag(tiff)
    return 1 if value is None else value


def exif_orientation_tag(tiff: bytes) -> int | None:
    """exif_orientation(), but None when the block has no orientation tag (then XMP counts)."""
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
    return None


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
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    frames = 1
    orientation: int | None = None
    xmp = b""
    idat_seen = False
    transparency = False
    pos = 8
    # Walk chunk headers only (no inflating but an XMP packet's): acTL counts APNG frames,
    # eXIf may follow IDAT.
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = pos + 8
        if kind == b"acTL" and not idat_seen:
            (frames,) = struct.unpack_from(">I", data, body)
        elif kind == b"eXIf":
            orientation = exif_orientation_tag(data[body : body + length])
        elif kind == b"iTXt" and data[body : body + len(_PNG_XMP)] == _PNG_XMP:
            xmp = _itxt_text(data[body + len(_PNG_XMP) : body + length])
        elif kind == b"IDAT":
            idat_seen = True
        elif kind == b"tRNS":
            transparency = True
        elif kind == b"IEND":
            break
        pos = body + length + 4
    if orientation is None:
        orientation = xmp_orientation(xmp)
    return _Header(width, height, frames, orientation, 1, _png_bpp(depth, colour, transparency))


_PNG_XMP = b"XML:com.adobe.xmp\x00"
_MAX_XMP_BYTES = 1 << 20  # inflated: far above any real packet's orientation


def _itxt_text(rest: bytes) -> bytes:
    """The text of an iTXt chunk after its keyword: compression flag and method, language and
    translated keyword, then the text, deflated when the flag says so (bounded)."""
    if len(rest) < 2:
        return b""
    compressed, method, rest = rest[0], rest[1], rest[2:]
    parts = rest.split(b"\x00", 2)
    if len(parts) < 3:
        return b""
    text = parts[2]
    if not compressed:
        return text
    if method != 0:
        return b""
    try:
        return zlib.decompressobj().decompress(text, _MAX_XMP_BYTES)
    except zlib.error:
        return b""


def _png_bpp(depth: int, colour: int, transparency: bool) -> int:
    if colour == 0:  # grey: "1", "L" or "I;16"
        decoded = 2 if depth == 16 else 1
        converted = _TO_L if depth in (1, 16) else 0
        # A tRNS colour key turns it into LA (4 bytes), premultiplied when reduced.
        return decoded + converted + (4 + _ALPHA if transparency else 0)
    if colour == 3:  # palette: P, then RGB(A)
        return 1 + _TO_RGB + (_ALPHA if transparency else 0)
    alpha = colour in (4, 6) or transparency
    return 4 + (_TO_RGB if colour == 2 and transparency else 0) + (_ALPHA if alpha else 0)


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
    # P, then RGBA when it has transparency, premultiplied when reduced.
    return _Header(width, height, frames, 1, 1, 1 + _TO_RGB + _ALPHA)


# --- WebP ----------------------------------------------------------------------------------


def _read_webp(data: bytes) -> _Header:
    pos = 12
    width = height = -1
    frames = 0
    orientation: int | None = None
    xmp = b""
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
            orientation = exif_orientation_tag(data[body : body + length])
        elif kind == b"XMP ":
            xmp = data[body : body + length]
        pos = body + length + (length & 1)
    if width < 0:
        if pos < len(data) or len(data) < end:
            raise truncated("WebP")
        raise corrupt("WebP", "no image chunk")
    if orientation is None:
        orientation = xmp_orientation(xmp)
    # libwebp's RGBA buffer, Pillow's bytes copy and image, the premultiplied reduce copy:
    # 16 bytes per pixel measured with or without alpha.
    return _Header(width, height, frames, orientation, 1, 4 + 4 + 4 + _ALPHA)


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
    inline = struct.calcsize(offset_fmt)
    width = height = -1
    orientation: int | None = None
    xmp = b""
    tags: dict[int, int] = {}
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
                elif tag == 700 and kind in (1, 7):  # XMP packet: BYTE or UNDEFINED
                    (n,) = struct.unpack_from(order + count_fmt, data, entry + 4)
                    at = entry + value_at
                    if n > inline:
                        (at,) = struct.unpack_from(order + offset_fmt, data, at)
                    xmp = data[at : at + min(n, _MAX_XMP_BYTES)]
                elif tag in _TIFF_PIXEL_TAGS and kind == 3:
                    # The first of SHORT values: inline when they fit, else at an offset.
                    (n,) = struct.unpack_from(order + count_fmt, data, entry + 4)
                    at = entry + value_at
                    if 2 * n > inline:
                        (at,) = struct.unpack_from(order + offset_fmt, data, at)
                    # An array past the end: Pillow refuses the file itself.
                    with contextlib.suppress(struct.error):
                        (tags[tag],) = struct.unpack_from(order + "H", data, at)
        frames += 1
        next_at = offset + count_size + entry_size * count
        if next_at + struct.calcsize(offset_fmt) > len(data):
            break  # a cut-off IFD chain: count what is there
        (offset,) = struct.unpack_from(order + offset_fmt, data, next_at)
    if width < 0 or height < 0:
        raise corrupt("TIFF", "no ImageWidth/ImageLength in the first directory")
    if orientation is None:
        orientation = xmp_orientation(xmp)
    return _Header(width, height, frames, orientation, 1, _tiff_bpp(tags))


# BitsPerSample, PhotometricInterpretation, SamplesPerPixel, ExtraSamples, SampleFormat
_TIFF_PIXEL_TAGS = frozenset({258, 262, 277, 338, 339})


def _tiff_bpp(tags: dict[int, int]) -> int:
    """Peak decode bytes per pixel of a TIFF; raises for sample layouts Pillow cannot read."""
    bits, samples = tags.get(258, 1), tags.get(277, 1)
    photometric, sample_format = tags.get(262, 1), tags.get(339, 1)
    if sample_format == 3 and (samples, bits) != (1, 32):
        raise UnsupportedPixelFormat(
            f"The TIFF holds {samples} x {bits}-bit floating-point samples per pixel; this "
            "server decodes floating-point TIFF only as one 32-bit sample (grey, Pillow's "
            "mode F). Convert it to 8- or 16-bit integer samples."
        )
    if samples == 1:
        if photometric == 3:  # palette
            return 1 + _TO_RGB
        decoded = {1: 1, 16: 2, 32: 4}.get(bits, 1)
        return decoded + (_TO_L if bits in (1, 16, 32) else 0)
    if photometric == 2 and samples == 3:  # RGB, 8 or 16 bits (Pillow keeps 8)
        return 4
    if (photometric == 2 and samples == 4) or samples == 2 or 338 in tags:
        return 4 + _ALPHA
    return 4 + _TO_RGB  # CMYK, LAB, YCbCr: converted to RGB


# --- BMP -----------------------------------------------------------------------------------


def _read_bmp(data: bytes) -> _Header:
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size == 12:
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
    else:
        width, height, _, bits = struct.unpack_from("<iiHH", data, 18)
    # Up to 8 bits: palette, converted to RGB; 32 bits may carry alpha.
    bpp = 1 + _TO_RGB if bits <= 8 else 4 + _ALPHA if bits == 32 else 4
    return _Header(abs(width), abs(height), 1, 1, 1, bpp)


_READERS = {
    "jpeg": _read_jpeg,
    "png": _read_png,
    "gif": _read_gif,
    "webp": _read_webp,
    "tiff": _read_tiff,
    "bmp": _read_bmp,
}
