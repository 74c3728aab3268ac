"""EXIF metadata: reading it from photos and parsing its first directory, in one place.

An EXIF block is b"Exif\\0\\0" followed by a little TIFF structure: a byte-order mark,
42, the offset of the first directory (IFD0), and the directories themselves. Reading
keeps the block as it is, with its Orientation tag set to 1 (the pixels are turned
upright on read); TIFF and RAW files, whose EXIF lives in the image's own directory, get
a block built from their descriptive tags. The TIFF writer reuses IFD0's entries.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from PIL import Image

ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_INTEROP_IFD = 0xA005
# tags of a TIFF's own directory that describe the photo rather than its pixel layout;
# these (and the EXIF and GPS sub-directories) are what we keep as EXIF from a TIFF
_TIFF_DESCRIPTIVE_TAGS = (
    269, 270, 271, 272, 274, 282, 283, 296, 305, 306, 315, 316, 33432,  # names, dates, dpi
)
MARKER = b"Exif\x00\x00"


class Entry(NamedTuple):
    """One 12-byte entry of a TIFF directory."""

    tag: int
    type: int
    count: int
    field: bytes  # the 4-byte value-or-offset field, as stored
    at: int  # offset of the entry in the TIFF structure


def ifd0_entries(tiff: bytes) -> tuple[str, list[Entry]] | None:
    """(struct byte order "<" or ">", entries of the first directory) of a TIFF structure
    (an EXIF block without its marker); None if it is not a valid TIFF structure."""
    endian = {b"II": "<", b"MM": ">"}.get(bytes(tiff[:2]))
    if endian is None:
        return None
    try:
        magic, ifd = struct.unpack_from(endian + "HI", tiff, 2)
        (count,) = struct.unpack_from(endian + "H", tiff, ifd)
        entries = []
        for i in range(count):
            at = ifd + 2 + 12 * i
            tag, typ, n = struct.unpack_from(endian + "HHI", tiff, at)
            field = bytes(tiff[at + 8:at + 12])
            if len(field) != 4:
                return None
            entries.append(Entry(tag, typ, n, field, at))
    except struct.error:
        return None
    return (endian, entries) if magic == 42 else None


def reset_orientation(blob: bytes) -> bytes:
    """The EXIF block with its Orientation tag set to 1 in place (unchanged if it has none)."""
    parsed = ifd0_entries(blob[len(MARKER):])
    if parsed is None:
        return blob
    endian, entries = parsed
    data = bytearray(blob)
    for e in entries:
        if e.tag == ORIENTATION and e.type == 3 and e.count == 1:  # one SHORT, stored inline
            struct.pack_into(endian + "H", data, len(MARKER) + e.at + 8, 1)
    return bytes(data)


def read_exif(im: Image.Image) -> tuple[bytes | None, int]:
    """(EXIF block to keep, with orientation reset to 1; the orientation to apply, 1..8).

    A photo whose EXIF cannot be parsed is read without it: (None, 1).
    """
    try:
        exif = im.getexif()
        orientation = exif.get(ORIENTATION, 1)
        if im.format == "TIFF":
            return exif_from_tiff_tags(exif), orientation if orientation in range(1, 9) else 1
    except (SyntaxError, ValueError, TypeError, EOFError, struct.error, KeyError, IndexError):
        return None, 1
    if orientation not in range(1, 9):
        orientation = 1
    blob = im.info.get("exif")
    if not blob:
        return None, orientation
    if not blob.startswith(MARKER):
        blob = MARKER + blob  # WebP stores the block without the marker
    return reset_orientation(blob), orientation


def exif_from_tiff_tags(exif: Image.Exif) -> bytes | None:
    """EXIF block made of a TIFF's descriptive tags and its EXIF/GPS sub-directories.

    exif: the TIFF's first directory as Pillow reads it (all tags, pixel layout included).
    """
    out = Image.Exif()
    for tag in _TIFF_DESCRIPTIVE_TAGS:
        if tag in exif:
            out[tag] = exif[tag]
    for ifd_tag in (_EXIF_IFD, _GPS_IFD):
        if ifd_tag in exif:
            sub = dict(exif.get_ifd(ifd_tag))
            if ifd_tag == _EXIF_IFD and _INTEROP_IFD in sub:
                interop = dict(exif.get_ifd(_INTEROP_IFD))
                if interop:
                    sub[_INTEROP_IFD] = interop
                else:
                    del sub[_INTEROP_IFD]
            if sub:
                out[ifd_tag] = sub
    if not len(out):
        return None
    if ORIENTATION in out:
        out[ORIENTATION] = 1
    return out.tobytes()


def raw_exif(data: bytes) -> bytes | None:
    """Best effort: the EXIF of a TIFF-based RAW file (DNG, CR2, NEF, ARW...), else None.

    LibRaw turns the pixels upright, so the kept orientation is 1.
    """
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    try:
        exif = Image.Exif()
        exif.load(data)  # the file's first directory, as for an EXIF block
        return exif_from_tiff_tags(exif)
    except Exception:  # metadata is optional: any failure to parse it means "none"
        return None
