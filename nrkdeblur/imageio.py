"""Reading and writing photos: JPEG, PNG, TIFF, WebP, BMP and camera RAW files.

A photo is read into a `Photo`: float32 pixels in [0, 1] (grey or RGB), the untouched
alpha channel, the bit depth of the file (8 or 16), and the EXIF and ICC metadata to
write back. Every problem the user can cause (missing file, not an image, truncated
data, full disk...) raises `ImageError` with one line naming the file and the reason.

Notes on Pillow:
- Pillow has no 16-bit RGB(A) image mode: it opens 48/64-bit PNG and TIFF files as 8-bit
  "RGB"/"RGBA", keeping only the high byte of every sample. We decode such files twice,
  once with the "big-endian" and once with the "little-endian" unpacker, which gives the
  high byte of every sample in one pass and the low byte in the other (the decoders undo
  PNG filters and TIFF compression on the raw bytes first, so both passes see the same
  bytes). 16-bit grey + alpha PNG is decoded in one pass with the plain "RGBA" unpacker,
  which hands over the four bytes of every pixel unchanged.
- Pillow cannot write 16-bit RGB either, so 16-bit PNG and all TIFF files are written by
  our own small encoders (encoders.py).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import NAME_MAX, atomic_write, os_reason as _os_reason
from .errors import ImageError
from .encoders import write_png16, write_tiff
from .exif import MARKER, ORIENTATION, raw_exif, read_exif
from .levels import from_levels, to_levels

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".bmp"})
RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"})

# output format by extension, and the names accepted for write_photo(format=...)
_FORMAT_BY_EXTENSION = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG",
    ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP",
}
_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
_MAX_SIDE = {"JPEG": 65535, "WEBP": 16383}  # largest width or height the format can store
_MAX_JPEG_EXIF = 65533  # an EXIF block must fit in one JPEG marker segment

# camera RAW development: camera white balance, sRGB primaries and tone curve, 16 bits,
# exposure as shot (no automatic brightening, which would clip the brightest 1%)
_RAW_SETTINGS = dict(use_camera_wb=True, output_bps=16, no_auto_bright=True, gamma=(2.4, 12.92))



@dataclass
class Photo:
    """A decoded photo and what is needed to write it back faithfully.

    pixels: float32 array [H, W, C] in [0, 1], C = 1 (grey) or 3 (RGB), upright.
    alpha: the original alpha channel [H, W] (uint8 or uint16, unchanged), or None.
    bit_depth: 8 or 16, from the file's sample format (not from the pixel values).
    exif: EXIF block starting with b"Exif\\0\\0" with the orientation reset to 1, or None.
    icc_profile: the embedded ICC colour profile, or None (sRGB).
    source_format: the format read: "JPEG", "PNG", "TIFF", "WEBP", "BMP", "RAW", ...
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    exif: bytes | None = None
    icc_profile: bytes | None = None
    source_format: str = ""


def list_images(folder: str | os.PathLike, recursive: bool = False, raw: bool = True) -> list[Path]:
    """The image files read_photo understands in `folder` (and its subfolders with
    `recursive`), sorted; camera RAW files only with `raw`. Hidden files and folders are
    skipped: "._photo.jpg" is a macOS resource fork, ".Trashes/" holds deleted files."""
    folder = Path(folder)
    extensions = IMAGE_EXTENSIONS | RAW_EXTENSIONS if raw else IMAGE_EXTENSIONS
    return sorted(p for p in folder.glob("**/*" if recursive else "*")
                  if p.is_file() and p.suffix.lower() in extensions
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


# -----------------------------------------------------------------------------
# errors

@contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Turn the exceptions of opening and decoding an image into ImageError."""
    try:
        yield
    except FileNotFoundError as e:
        raise ImageError(f"{path}: no such file") from e
    except UnidentifiedImageError as e:
        if path.is_file() and path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file") from e
        raise ImageError(f"{path}: not an image file (cannot identify image)") from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: image too large to open safely ({e})") from e
    except OSError as e:
        if e.errno is not None:  # a real I/O error; Pillow's decoding errors have none
            raise ImageError(f"{path}: cannot read: {_os_reason(e)}") from e
        raise ImageError(f"{path}: truncated or corrupt image data ({e})") from e
    except (SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError) as e:
        # Pillow's plugins signal malformed headers and unsupported layouts with these
        raise ImageError(f"{path}: corrupt or unsupported image data ({e})") from e


# -----------------------------------------------------------------------------
# reading


def read_photo(path: str | os.PathLike) -> Photo:
    """Read a photo (JPEG, PNG, TIFF, WebP, BMP or camera RAW), upright, fully decoded.

    Raises ImageError for missing, unreadable, non-image, truncated or corrupt files.
    """
    path = Path(path)
    if path.suffix.lower() in RAW_EXTENSIONS:
        return _read_raw(path)
    with _read_errors(path):
        with Image.open(path) as im:
            source_format = im.format or "UNKNOWN"
            _refuse_several_frames(path, im)
            tiles = list(im.tile)  # the decoder setup, cleared by load()
            if im.format != "TIFF":
                im.load()  # full decode here, so truncated files fail now
            exif, orientation = read_exif(im)  # TIFF: before load(), which closes the file
            im.load()
            if im.format == "TIFF" and ORIENTATION not in im.tag_v2:
                orientation = 1  # newer Pillow (13) turns TIFFs upright itself in load()
            icc = im.info.get("icc_profile") or None
            if _is_wide_color(im, tiles):
                color, alpha, bit_depth = _decode_wide_color(path, tiles)
            else:
                if im.mode == "CMYK":
                    icc = None  # a CMYK profile no longer fits the RGB pixels
                color, alpha, bit_depth = pil_samples(im)
    color = _orient(color, orientation)
    alpha = None if alpha is None else _orient(alpha, orientation)
    return Photo(from_levels(color), alpha, bit_depth, exif, icc, source_format)


def _refuse_several_frames(path: Path, im: Image.Image) -> None:
    """An animation or a multi-page file is refused rather than cut to its first frame.

    MPO files (JPEGs from many cameras and phones, with extra preview or depth frames
    after the photo) are read as their first, primary image, as every viewer shows them.
    """
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and im.format != "MPO":
        kind = "an animation" if im.format in ("GIF", "PNG", "WEBP") else "a multi-page file"
        raise ImageError(f"{path}: has {frames} frames ({kind}); only single images can be deblurred")


def pil_samples(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Samples of an image in any ordinary Pillow mode: (color [H,W,C] uint8 or uint16,
    alpha [H,W] | None, bits); palette, 1-bit, CMYK and YCbCr images become RGB(A) or L."""
    mode = im.mode
    transparent = "transparency" in im.info
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.uint16)[..., None], None, 16
    if mode == "I":  # 16-bit grey in older Pillow versions
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)[..., None], None, 16
    if mode == "1" or (mode == "L" and not transparent):
        im = im.convert("L")
    elif mode in ("L", "LA", "La"):
        im = im.convert("LA")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or transparent or (im.palette is not None and im.palette.mode == "RGBA")
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("RGBA", "RGBa") or (mode == "RGB" and transparent):
        im = im.convert("RGBA")
    elif mode in ("RGB", "RGBX", "CMYK", "YCbCr"):
        im = im.convert("RGB")
    else:
        raise ValueError(f"unsupported pixel format {mode!r}")
    a = np.asarray(im)
    if a.ndim == 2:
        a = a[..., None]
    if im.mode in ("LA", "RGBA"):
        return np.ascontiguousarray(a[..., :-1]), np.ascontiguousarray(a[..., -1]), 8
    return a, None, 8


def _tile_rawmode(args: object) -> str:
    """The raw mode in a Pillow tile's decoder arguments (a string or a tuple starting with one)."""
    return args if isinstance(args, str) else args[0]


def _is_wide_color(im: Image.Image, tiles: list) -> bool:
    """True for 16-bit colour images, which Pillow decodes to 8 bits by default."""
    if im.mode not in ("RGB", "RGBA"):
        return False
    bits = im.tag_v2.get(258, (8,)) if hasattr(im, "tag_v2") else (8,)
    if max(bits if isinstance(bits, tuple) else (bits,)) > 8:
        return True  # a TIFF; _decode_wide_color rejects the layouts it cannot read
    return any(";16" in _tile_rawmode(t[3]) for t in tiles)


def _decode_wide_color(path: Path, tiles: list) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Decode a 16-bit RGB, RGBA or grey+alpha image to uint16 samples (see module notes)."""
    rawmodes = {_tile_rawmode(t[3]) for t in tiles}
    if rawmodes == {"LA;16B"}:  # 16-bit grey + alpha PNG, opened by Pillow as RGBA
        b = _decode_with_rawmode(path, "RGBA").astype(np.uint16)
        return (b[..., 0] << 8 | b[..., 1])[..., None], b[..., 2] << 8 | b[..., 3], 16
    rawmode = _tile_rawmode(tiles[0][3])
    if len(rawmodes) != 1 or not rawmode.endswith((";16B", ";16L", ";16N")):
        # e.g. planar TIFF, whose 16-bit samples Pillow cannot decode correctly at all
        raise ValueError(f"unsupported high-bit-depth sample layout {sorted(rawmodes)}")
    big = _decode_with_rawmode(path, rawmode[:-1] + "B").astype(np.uint16)  # first byte
    little = _decode_with_rawmode(path, rawmode[:-1] + "L").astype(np.uint16)  # second byte
    stored_big_endian = rawmode.endswith("B") or (rawmode.endswith("N") and sys.byteorder == "big")
    hi, lo = (big, little) if stored_big_endian else (little, big)
    samples = hi << 8 | lo
    if samples.shape[-1] == 4:
        return np.ascontiguousarray(samples[..., :3]), np.ascontiguousarray(samples[..., 3]), 16
    return samples, None, 16


def _decode_with_rawmode(path: Path, rawmode: str) -> np.ndarray:
    """Open the file again and decode it with every tile's raw mode replaced by `rawmode`."""
    with Image.open(path) as im:
        im.tile = [_with_rawmode(tile, rawmode) for tile in im.tile]
        im.load()
        return np.asarray(im)


def _with_rawmode(tile: tuple, rawmode: str) -> tuple:
    """A copy of a Pillow tile descriptor (codec, extents, offset, args) with another raw mode."""
    args = tile[3]
    args = rawmode if isinstance(args, str) else (rawmode, *args[1:])
    return tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args)


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an [H, W, ...] array so that it is upright."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = np.rot90(a, -1)  # 90 degrees clockwise
    elif orientation == 7:
        a = a[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        a = np.rot90(a, 1)  # 90 degrees counter-clockwise
    return np.ascontiguousarray(a)


def _read_raw(path: Path) -> Photo:
    """Develop a camera RAW file with LibRaw (rawpy) to a 16-bit sRGB photo."""
    import rawpy

    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ImageError(f"{path}: no such file") from e
    except OSError as e:
        raise ImageError(f"{path}: cannot read: {_os_reason(e)}") from e
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            rgb = raw.postprocess(**_RAW_SETTINGS)
    except rawpy.LibRawFileUnsupportedError as e:
        raise ImageError(f"{path}: not a supported RAW file") from e
    except (rawpy.LibRawError, ValueError) as e:
        detail = e.args[0] if e.args else type(e).__name__
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        raise ImageError(f"{path}: truncated or corrupt RAW data ({str(detail).lower()})") from e
    return Photo(from_levels(rgb), None, 16, raw_exif(data), None, "RAW")


# -----------------------------------------------------------------------------
# writing


def write_photo(
    path: str | os.PathLike, photo: Photo, quality: int = 95, format: str | None = None
) -> None:
    """Write a photo atomically; the format comes from the extension unless given.

    PNG and TIFF are written with 16 bits per sample when photo.bit_depth is 16; JPEG,
    WebP and BMP are 8-bit formats. Pixels are rounded to the nearest level and clipped.
    The alpha channel is written back unchanged (JPEG and BMP drop it: Pillow writes no
    BMP alpha that it reads back), EXIF and ICC where the format holds them (not BMP).
    quality: JPEG and WebP quality (1-100). The file is written to a hidden temporary
    file in the same folder, synced, then renamed over the target, so a failed write
    never leaves a half-written photo behind.
    """
    path = Path(path)
    fmt = output_format(path, format)
    height, width = photo.pixels.shape[:2]
    _check_side(path, fmt, width, height)
    color, alpha = _to_samples(photo, 16 if fmt in ("PNG", "TIFF") and photo.bit_depth == 16 else 8)
    exif = photo.exif or None
    if exif and not exif.startswith(MARKER):
        exif = MARKER + exif
    icc = photo.icc_profile or None

    def encode(f: BinaryIO) -> None:
        if fmt == "TIFF":
            write_tiff(f, color, alpha, exif, icc)
        elif fmt == "PNG" and color.dtype == np.uint16:
            write_png16(f, color, alpha, exif, icc)
        else:
            _write_with_pillow(f, fmt, color, alpha, exif, icc, quality)

    atomic_write(path, encode)


def output_format(path: Path, format: str | None = None) -> str:
    """The Pillow format name to write: from `format` if given, else from the extension."""
    if format is not None:
        name = _FORMAT_ALIASES.get(format.upper().lstrip("."), format.upper().lstrip("."))
        if name not in _FORMAT_BY_EXTENSION.values():
            raise ImageError(f"{path}: unsupported output format {format!r}")
        return name
    suffix = path.suffix.lower()
    if suffix in RAW_EXTENSIONS:
        raise ImageError(f"{path}: cannot write camera RAW files (use .tif or .png)")
    if suffix not in _FORMAT_BY_EXTENSION:
        what = f"{suffix} files" if suffix else "files without an extension"
        raise ImageError(f"{path}: cannot write {what} (use .jpg, .png, .tif, .webp or .bmp)")
    return _FORMAT_BY_EXTENSION[suffix]


def check_output(path: Path, format: str | None = None, source: Path | None = None) -> None:
    """Raise ImageError now, before any work, if write_photo(path, format=format) must fail:
    a format nothing here writes, a name too long, a parent that is a file, a folder we may
    not write to; with `source`, the photo to be written there, one too large for the
    format (its size read from its header)."""
    fmt = output_format(path, format)
    if len(os.fsencode(path.name)) > NAME_MAX:
        raise ImageError(f"{path}: cannot write: file name too long (at most {NAME_MAX} bytes)")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder")
    check_folder(path.parent, path)
    size = image_size(source) if source is not None and fmt in _MAX_SIDE else None
    if size is not None:
        _check_side(path, fmt, *size)


def check_folder(folder: Path, target: Path) -> None:
    """Raise ImageError (naming `target`) if `folder` cannot be created or written into."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # atomic_write creates the missing folders
    if folder.exists() and not folder.is_dir():
        raise ImageError(f"{target}: cannot write: {folder} is not a folder")
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(folder) else "permission denied"
        raise ImageError(f"{target}: cannot write: {reason} in {folder}")


def _read_only(folder: Path) -> bool:
    """Whether `folder` is on a file system mounted read-only (os.access says only "no")."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image from its header, None for RAW files and for anything
    Pillow cannot open (read_photo reports those)."""
    if path.suffix.lower() in RAW_EXTENSIONS:
        return None
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, IndexError, KeyError,
            Image.DecompressionBombError):  # reported when the photo is read
        return None


def _check_side(path: Path, fmt: str, width: int, height: int) -> None:
    if max(height, width) > _MAX_SIDE.get(fmt, 2**32 - 1):
        raise ImageError(f"{path}: {width} x {height} is too large for {fmt} (max {_MAX_SIDE[fmt]} px a side)")


def _to_samples(photo: Photo, bits: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Integer samples to write: (color [H,W,C], alpha [H,W] | None), uint8 or uint16."""
    pixels = photo.pixels
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ValueError(f"pixels must be [H, W, 1] or [H, W, 3], got {pixels.shape}")
    color = to_levels(pixels, bits)
    alpha = photo.alpha
    if alpha is None:
        return color, None
    if alpha.shape != pixels.shape[:2] or alpha.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"alpha must be uint8 or uint16 [H, W], got {alpha.dtype} {alpha.shape}")
    if alpha.dtype == np.uint16 and bits == 8:
        alpha = ((alpha.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif alpha.dtype == np.uint8 and bits == 16:
        alpha = alpha.astype(np.uint16) * 257
    return color, alpha


def _write_with_pillow(
    f: BinaryIO, fmt: str, color: np.ndarray, alpha: np.ndarray | None,
    exif: bytes | None, icc: bytes | None, quality: int,
) -> None:
    """Encode 8-bit samples with Pillow (JPEG, WebP, BMP and 8-bit PNG)."""
    grey = color.shape[2] == 1
    if alpha is not None and fmt in ("PNG", "WEBP"):
        if grey and fmt == "WEBP":  # WebP has no grey + alpha
            color, grey = np.repeat(color, 3, axis=2), False
        im = Image.fromarray(np.dstack([color, alpha]), "LA" if grey else "RGBA")
    else:
        im = Image.fromarray(color[..., 0] if grey else color, "L" if grey else "RGB")
    params: dict[str, object] = {}
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = quality
    if fmt == "JPEG" and quality >= 90:
        params["subsampling"] = 0  # full-resolution colour at high quality
    if fmt == "JPEG" and exif and len(exif) > _MAX_JPEG_EXIF:
        exif = None  # too large for JPEG (e.g. a huge maker note): written without it
    if fmt != "BMP":
        if exif:
            params["exif"] = exif
        if icc:
            params["icc_profile"] = icc
    im.save(f, format=fmt, **params)
