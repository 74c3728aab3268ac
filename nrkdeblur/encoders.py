"""Encoders Pillow lacks: 16-bit PNG and 8/16-bit TIFF with EXIF, in zlib and struct.

Pillow has no 16-bit RGB image mode, so it cannot write 48/64-bit PNG or TIFF. These
write numpy samples straight into the file. EXIF in TIFF output is kept without
relocating it: the EXIF block (itself a little TIFF file) goes at the start of the
output, where all its offsets stay valid, and the new image directory reuses its tags.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import BinaryIO

import numpy as np

from .exif import MARKER, ifd0_entries

# tags that describe the pixel layout (or the ICC profile) of a TIFF image: never copied
# from the EXIF block into a TIFF we write, since we write our own
_TIFF_LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284,
    317, 320, 322, 323, 324, 325, 338, 339, 340, 341, 513, 514, 529, 530, 531, 532, 34675,
})


# -----------------------------------------------------------------------------
# PNG encoder for 16-bit samples


def write_png16(
    f: BinaryIO, color: np.ndarray, alpha: np.ndarray | None, exif: bytes | None, icc: bytes | None
) -> None:
    """Write a 16-bit grey, grey+alpha, RGB or RGBA PNG (Sub filter, zlib level 6)."""
    samples = color if alpha is None else np.dstack([color, alpha])
    h, w, s = samples.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[s]
    f.write(b"\x89PNG\r\n\x1a\n")
    _png_chunk(f, b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
    if icc:
        _png_chunk(f, b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    if exif:
        _png_chunk(f, b"eXIf", exif[len(MARKER):])
    bpp = 2 * s  # bytes per pixel
    compressor = zlib.compressobj(6)
    rows_per_block = max(1, (1 << 20) // (w * bpp))
    for y in range(0, h, rows_per_block):
        rows = samples[y:y + rows_per_block].astype(">u2").view(np.uint8).reshape(-1, w * bpp)
        filtered = rows.copy()
        filtered[:, bpp:] -= rows[:, :-bpp]  # Sub filter: difference to the pixel on the left
        block = np.empty((len(rows), 1 + w * bpp), np.uint8)
        block[:, 0] = 1
        block[:, 1:] = filtered
        data = compressor.compress(block.tobytes())
        if data:
            _png_chunk(f, b"IDAT", data)
    _png_chunk(f, b"IDAT", compressor.flush())
    _png_chunk(f, b"IEND", b"")


def _png_chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    """Write one PNG chunk: length, type, data, CRC."""
    f.write(struct.pack(">I", len(data)) + kind + data)
    f.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


# -----------------------------------------------------------------------------
# TIFF encoder (8 and 16 bits, deflate with horizontal predictor)


def write_tiff(
    f: BinaryIO, color: np.ndarray, alpha: np.ndarray | None, exif: bytes | None, icc: bytes | None
) -> None:
    """Write a deflate-compressed grey/RGB(A) TIFF with 8- or 16-bit samples.

    Layout: [EXIF block or plain header] [strips] [image directory]. The EXIF block
    (a TIFF structure) goes at offset 0 so its internal offsets stay valid; its first
    directory's tags are reused in ours and its header is patched to point to ours.
    """
    if alpha is not None and color.shape[2] == 1 and color.dtype == np.uint16:
        color = np.repeat(color, 3, axis=2)  # Pillow cannot open 16-bit grey + alpha TIFF
    samples = color if alpha is None else np.dstack([color, alpha])
    h, w, s = samples.shape
    bits = samples.dtype.itemsize * 8
    parsed = ifd0_entries(exif[len(MARKER):]) if exif else None
    if parsed is not None:
        endian, found = parsed
        exif_entries = [(e.tag, e.type, e.count, e.field) for e in found]
        f.write(exif[len(MARKER):])
    else:
        endian, exif_entries = "<", []
        f.write(b"II*\x00\x00\x00\x00\x00")
    if f.tell() % 2:
        f.write(b"\x00")

    row_bytes = w * s * samples.dtype.itemsize
    rows_per_strip = max(1, (1 << 18) // row_bytes)
    offsets, counts = [], []
    for y in range(0, h, rows_per_strip):
        strip = samples[y:y + rows_per_strip]
        diff = strip.copy()
        diff[:, 1:] -= strip[:, :-1]  # predictor 2: difference to the pixel on the left
        data = zlib.compress(diff.astype(endian + ("u2" if bits == 16 else "u1")).tobytes(), 6)
        offsets.append(f.tell())
        counts.append(len(data))
        f.write(data)
        if f.tell() % 2:
            f.write(b"\x00")

    def short(*v: int) -> bytes:
        return struct.pack(f"{endian}{len(v)}H", *v)

    def long(*v: int) -> bytes:
        return struct.pack(f"{endian}{len(v)}I", *v)

    entries = [
        (256, 4, 1, long(w)),
        (257, 4, 1, long(h)),
        (258, 3, s, short(*[bits] * s)),
        (259, 3, 1, short(8)),  # Adobe deflate
        (262, 3, 1, short(2 if s >= 3 else 1)),  # RGB or grey (black is zero)
        (273, 4, len(offsets), long(*offsets)),
        (277, 3, 1, short(s)),
        (278, 4, 1, long(rows_per_strip)),
        (279, 4, len(counts), long(*counts)),
        (284, 3, 1, short(1)),  # samples interleaved
        (317, 3, 1, short(2)),  # horizontal differencing
    ]
    if alpha is not None:
        entries.append((338, 3, 1, short(2)))  # unassociated alpha
    if icc:
        entries.append((34675, 7, len(icc), icc))
    used = {e[0] for e in entries}
    entries += [e for e in exif_entries if e[0] not in used and e[0] not in _TIFF_LAYOUT_TAGS]
    ifd_offset = f.tell()
    f.write(_ifd_bytes(entries, ifd_offset, endian))
    f.seek(4)
    f.write(struct.pack(endian + "I", ifd_offset))
    f.seek(0, io.SEEK_END)


def _ifd_bytes(entries: list[tuple[int, int, int, bytes]], offset: int, endian: str) -> bytes:
    """A TIFF directory placed at `offset`: entries (tag, type, count, value bytes).

    Values of up to 4 bytes are stored in the entry itself (so a 4-byte offset copied
    from another directory is kept as is); longer ones follow the directory.
    """
    entries = sorted(entries)
    data_offset = offset + 2 + 12 * len(entries) + 4
    table = bytearray(struct.pack(endian + "H", len(entries)))
    extra = bytearray()
    for tag, typ, count, value in entries:
        if len(value) <= 4:
            field = value.ljust(4, b"\x00")
        else:
            if len(extra) % 2:
                extra += b"\x00"
            field = struct.pack(endian + "I", data_offset + len(extra))
            extra += value
        table += struct.pack(endian + "HHI", tag, typ, count) + field
    table += struct.pack(endian + "I", 0)  # no next directory
    return bytes(table + extra)
