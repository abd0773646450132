"""HEIF/HEIC and AVIF containers (ISOBMFF): brands, and the primary image's size read from boxes.

Bounded parsing only: one box budget for the whole file, entry counts checked against the
room left, no pixel decoded. `sniff.probe` calls `read_header` for these formats.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from imgest.errors import ImageTruncated
from imgest.imaging.header import SWAPS_AXES, corrupt, truncated

# Brands of HEVC-coded HEIF (image/heic), of AV1-coded AVIF, and of generic HEIF (MIAF)
# structure whose items could hold either; ISO/IEC 23008-12 annex B, AVIF section 7.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
_MAX_BRANDS = 64
_MAX_BOXES = 10_000  # boxes read from one file, all levels together
_MAX_ENTRIES = 100_000  # items in iinf/iloc/ipma; libheif itself stops at 1000 items
_MAX_PROPERTIES = 10_000
_TRACKS = (b"pict", b"vide")  # handlers of image-sequence tracks

# Orientations as 2x2 matrices acting on (x, y) with y pointing down: for each EXIF value, the
# transform that shows the stored picture upright (as decode's transposes do).
_Matrix = tuple[int, int, int, int]
_IDENTITY: _Matrix = (1, 0, 0, 1)
_ROTATE_CCW: _Matrix = (0, 1, -1, 0)  # irot: 90 degrees anti-clockwise per step
_MIRROR: dict[int, _Matrix] = {
    0: (1, 0, 0, -1),  # imir axis 0: top and bottom exchanged (as libheif and libavif read it)
    1: (-1, 0, 0, 1),  # imir axis 1: left and right exchanged
}
_ORIENTATION_OF: dict[_Matrix, int] = {
    _IDENTITY: 1,
    (-1, 0, 0, 1): 2,
    (-1, 0, 0, -1): 3,
    (1, 0, 0, -1): 4,
    (0, 1, 1, 0): 5,
    (0, -1, 1, 0): 6,
    (0, -1, -1, 0): 7,
    (0, 1, -1, 0): 8,
}


def _brands(data: bytes) -> list[bytes]:
    """The ftyp box's major brand, then its compatible brands."""
    size = int.from_bytes(data[:4], "big")
    end = min(size, len(data), 16 + 4 * _MAX_BRANDS)
    if size < 16 or end < 12:
        return []
    return [data[8:12]] + [data[i : i + 4] for i in range(16, end - 3, 4)]


def image_format(data: bytes) -> str | None:
    """ "heif" or "avif" from the ftyp brands of `data`, or None for other ISOBMFF files."""
    brands = _brands(data)
    for brand in brands:  # the major brand first: it says what the file is meant as
        if brand in _AVIF_BRANDS:
            return "avif"
        if brand in _HEIC_BRANDS:
            return "heif"
    if any(brand in _HEIF_BRANDS for brand in brands):
        return "heif"
    return None  # an MP4/MOV/3GP video, a CR3 raw, ...: not an image we decode


def heif_mime(data: bytes) -> str:
    """image/heic when the ftyp brands name HEVC coding, else the generic image/heif."""
    if any(brand in _HEIC_BRANDS for brand in _brands(data)):
        return "image/heic"
    return "image/heif"


class _Meta(NamedTuple):
    """What probe needs from a `meta` box."""

    primary: int  # -1 when there is no pitm
    item_types: dict[int, bytes]
    # item id -> (construction method, base offset, [(extent offset, extent length)])
    locations: dict[int, tuple[int, int, list[tuple[int, int]]]]
    idat: tuple[int, int] | None  # body start and end of the `idat` box
    properties: list[tuple[bytes, tuple[int, ...]]]  # ipco children in order
    associations: dict[int, list[int]]  # item id -> 1-based property indices, in order


class _Cursor:
    """Big-endian fields from data[pos:end]; a read past `end` means the box is corrupt."""

    def __init__(self, data: bytes, pos: int, end: int, fmt: str, kind: bytes) -> None:
        self.data, self.pos, self.end, self.fmt, self.kind = data, pos, end, fmt, kind

    def uint(self, size: int) -> int:
        if self.pos + size > self.end:
            raise corrupt(self.fmt, f"the '{self.kind.decode('latin-1')}' box is too short")
        value = int.from_bytes(self.data[self.pos : self.pos + size], "big")
        self.pos += size
        return value

    def count(self, size: int, entry_size: int, limit: int) -> int:
        """An entry count, checked against the room left for entries of at least entry_size."""
        value = self.uint(size)
        if value > limit or value * entry_size > self.end - self.pos:
            raise corrupt(self.fmt, f"too many entries in '{self.kind.decode('latin-1')}'")
        return value


class _Boxes:
    """Walks ISOBMFF boxes with one budget for the whole file, so no input can loop long."""

    def __init__(self, data: bytes, fmt: str) -> None:
        self.data, self.fmt, self.left = data, fmt, _MAX_BOXES

    def walk(self, start: int, end: int, top: bool = False) -> Iterator[tuple[bytes, int, int]]:
        """(type, body start, body end) of each box in data[start:end]."""
        data, pos = self.data, start
        while pos < end:
            if top and end - pos < 8:
                return  # a few stray bytes after the last box
            self.left -= 1
            if self.left < 0:
                raise corrupt(self.fmt, f"more than {_MAX_BOXES} boxes")
            size, kind = struct.unpack_from(">I4s", data, pos)
            header = 8
            if size == 1:
                (size,) = struct.unpack_from(">Q", data, pos + 8)
                header = 16
            elif size == 0:
                size = end - pos  # "to the end of the file" (or of the parent)
            if size < header:
                raise corrupt(self.fmt, f"a box of {size} bytes")
            if pos + size > end:
                if end == len(data):
                    raise truncated(self.fmt)
                raise corrupt(self.fmt, "a box runs past the end of its parent")
            yield kind, pos + header, pos + size
            pos += size

    def child(self, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
        """Body (start, end) of the first `kind` box in data[start:end]."""
        for found, body, stop in self.walk(start, end):
            if found == kind:
                return body, stop
        return None


def read_header(data: bytes, fmt: str) -> tuple[int, int, int, int, int]:
    """width, height, frames, orientation and canvas pixels of the primary image item."""
    label = fmt.upper()
    boxes = _Boxes(data, label)
    meta = moov = None
    try:
        for kind, body, stop in boxes.walk(0, len(data), top=True):
            if kind == b"meta" and meta is None:
                meta = body, stop
            elif kind == b"moov" and moov is None:
                moov = body, stop
    except ImageTruncated:
        if meta is None:
            raise
        # Cut short after `meta`: the item extents below tell whether pixels are missing.
    if meta is None:
        raise corrupt(label, "no 'meta' box with image items")
    info = _read_meta(boxes, *meta)
    for method, base, extents in info.locations.values():
        for offset, length in extents:
            if method == 0 and base + offset + max(length, 1) > len(data):
                raise ImageTruncated(f"The {label} data ends before its image items.")

    owned = [
        info.properties[i - 1]
        for i in info.associations.get(info.primary, [])
        if 0 < i <= len(info.properties)
    ]
    sizes = [values for kind, values in owned if kind == b"ispe"]
    if not sizes:
        # No size associated with the primary item: assume the biggest picture in the file,
        # which is what the limits must allow for, and no transform.
        owned = []
        sizes = [values for kind, values in info.properties if kind == b"ispe"]
        if not sizes:
            raise corrupt(label, "no image size ('ispe')")
    width, height = max(sizes, key=lambda wh: wh[0] * wh[1])
    canvas = width * height
    if info.item_types.get(info.primary) in (b"grid", b"iovl"):
        # A derived image's canvas is its descriptor's output size; decoders allocate that.
        out_w, out_h = _derived_size(data, info, label)
        canvas = max(canvas, out_w * out_h)

    matrix = _IDENTITY
    for kind, values in owned:  # transformative properties apply in association order
        if kind == b"clap" and fmt == "heif":  # libheif crops; Pillow's AVIF plugin does not
            width = _clap_side(values[0], values[1], label)
            height = _clap_side(values[2], values[3], label)
        elif kind == b"irot":
            for _ in range(values[0]):
                matrix = _matmul(_ROTATE_CCW, matrix)
                width, height = height, width
        elif kind == b"imir":
            matrix = _matmul(_MIRROR[values[0]], matrix)
    orientation = _ORIENTATION_OF[matrix]
    if orientation in SWAPS_AXES:  # report the stored size, as for EXIF orientation
        width, height = height, width
    frames = _track_samples(boxes, *moov) if moov is not None else 1
    return width, height, frames, orientation, canvas


def _read_meta(boxes: _Boxes, start: int, end: int) -> _Meta:
    data, fmt = boxes.data, boxes.fmt
    meta = _Meta(-1, {}, {}, None, [], {})
    handler = None
    primary = -1
    idat = None
    for kind, body, stop in boxes.walk(start + 4, end):  # + 4: FullBox version and flags
        cur = _Cursor(data, body, stop, fmt, kind)
        if kind == b"hdlr":
            cur.uint(8)
            handler = cur.uint(4).to_bytes(4, "big")
        elif kind == b"pitm":
            version = cur.uint(1)
            cur.uint(3)
            primary = cur.uint(2 if version == 0 else 4)
        elif kind == b"iinf":
            version = cur.uint(1)
            cur.uint(3)
            cur.count(2 if version == 0 else 4, 8, _MAX_ENTRIES)
            for infe, infe_body, infe_stop in boxes.walk(cur.pos, stop):
                if infe == b"infe":
                    _read_infe(_Cursor(data, infe_body, infe_stop, fmt, infe), meta)
        elif kind == b"iloc":
            _read_iloc(cur, meta)
        elif kind == b"idat":
            idat = body, stop
        elif kind == b"iprp":
            for sub, sub_body, sub_stop in boxes.walk(body, stop):
                if sub == b"ipco":
                    for prop, prop_body, prop_stop in boxes.walk(sub_body, sub_stop):
                        if len(meta.properties) >= _MAX_PROPERTIES:
                            raise corrupt(fmt, "too many item properties")
                        cursor = _Cursor(data, prop_body, prop_stop, fmt, prop)
                        meta.properties.append((prop, _read_property(prop, cursor)))
                elif sub == b"ipma":
                    _read_ipma(_Cursor(data, sub_body, sub_stop, fmt, sub), meta)
    if handler != b"pict":
        raise corrupt(fmt, "the 'meta' box does not describe pictures")
    return meta._replace(primary=primary, idat=idat)


def _read_infe(cur: _Cursor, meta: _Meta) -> None:
    version = cur.uint(1)
    cur.uint(3)
    if version < 2:
        return  # no item type before version 2: not an image item
    item = cur.uint(2 if version == 2 else 4)
    cur.uint(2)  # protection index
    meta.item_types[item] = cur.uint(4).to_bytes(4, "big")


def _read_iloc(cur: _Cursor, meta: _Meta) -> None:
    version = cur.uint(1)
    cur.uint(3)
    sizes = cur.uint(1)
    offset_size, length_size = sizes >> 4, sizes & 15
    sizes = cur.uint(1)
    base_size, index_size = sizes >> 4, (sizes & 15 if version in (1, 2) else 0)
    if any(size not in (0, 4, 8) for size in (offset_size, length_size, base_size, index_size)):
        raise corrupt(cur.fmt, "an 'iloc' field size other than 0, 4 or 8")
    extent_size = max(1, offset_size + length_size + index_size)  # 1: never a free entry
    left = _MAX_ENTRIES  # extents of all items together
    for _ in range(cur.count(2 if version < 2 else 4, 6, _MAX_ENTRIES)):
        item = cur.uint(2 if version < 2 else 4)
        method = cur.uint(2) & 15 if version in (1, 2) else 0
        cur.uint(2)  # data reference index
        base = cur.uint(base_size)
        count = cur.count(2, extent_size, left)
        left -= count
        extents = []
        for _ in range(count):
            cur.uint(index_size)
            extents.append((cur.uint(offset_size), cur.uint(length_size)))
        meta.locations[item] = (method, base, extents)


def _read_property(kind: bytes, cur: _Cursor) -> tuple[int, ...]:
    if kind == b"ispe":
        cur.uint(4)  # version and flags
        return cur.uint(4), cur.uint(4)
    if kind == b"irot":
        return (cur.uint(1) & 3,)
    if kind == b"imir":
        return (cur.uint(1) & 1,)
    if kind == b"clap":  # width N/D, height N/D; the offsets only move the crop
        return tuple(cur.uint(4) for _ in range(4))
    return ()


def _read_ipma(cur: _Cursor, meta: _Meta) -> None:
    version = cur.uint(1)
    flags = cur.uint(3)
    index_size = 2 if flags & 1 else 1
    for _ in range(cur.count(4, 3, _MAX_ENTRIES)):
        item = cur.uint(2 if version < 1 else 4)
        indices = meta.associations.setdefault(item, [])
        for _ in range(cur.uint(1)):
            indices.append(cur.uint(index_size) & (0x7FFF if index_size == 2 else 0x7F))


def _derived_size(data: bytes, meta: _Meta, fmt: str) -> tuple[int, int]:
    """Output size in the primary item's `grid` or `iovl` descriptor (ISO/IEC 23008-12)."""
    kind = meta.item_types[meta.primary]
    method, base, extents = meta.locations.get(meta.primary, (0, 0, []))
    if method == 1 and meta.idat is not None:
        origin, limit = meta.idat[0] + base, meta.idat[1]
    elif method == 0:
        origin, limit = base, len(data)
    else:
        raise corrupt(fmt, f"the '{kind.decode('latin-1')}' descriptor cannot be located")
    blob = b""
    for offset, length in extents:
        if len(blob) >= 32:  # a descriptor's sizes are within its first 20 bytes
            break
        start = origin + offset
        blob += data[start : min(limit, start + length) if length else limit][:32]
    cur = _Cursor(blob, 0, len(blob), fmt, kind)
    cur.uint(1)  # version
    wide = cur.uint(1) & 1
    cur.uint(2 if kind == b"grid" else 8)  # rows and columns, or the fill colour
    return cur.uint(4 if wide else 2), cur.uint(4 if wide else 2)


def _clap_side(numerator: int, denominator: int, fmt: str) -> int:
    """A clean-aperture side in whole pixels (libheif rounds a fraction to nearest)."""
    if denominator == 0 or numerator == 0:
        raise corrupt(fmt, "an empty or undefined clean aperture ('clap')")
    return (2 * numerator + denominator) // (2 * denominator)


def _matmul(a: _Matrix, b: _Matrix) -> _Matrix:
    return (
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
    )


def _track_samples(boxes: _Boxes, start: int, end: int) -> int:
    """Samples in the first picture or video track of `moov`: the frames of a sequence."""
    for kind, body, stop in boxes.walk(start, end):
        if kind != b"trak":
            continue
        mdia = boxes.child(body, stop, b"mdia")
        hdlr = boxes.child(*mdia, b"hdlr") if mdia else None
        if mdia is None or hdlr is None or boxes.data[hdlr[0] + 8 : hdlr[0] + 12] not in _TRACKS:
            continue
        minf = boxes.child(*mdia, b"minf")
        stbl = boxes.child(*minf, b"stbl") if minf else None
        for table, table_body, table_stop in boxes.walk(*stbl) if stbl else ():
            if table in (b"stsz", b"stz2"):  # both: sample count after 8 bytes
                return _Cursor(boxes.data, table_body + 8, table_stop, boxes.fmt, table).uint(4)
        return 1
    return 1
