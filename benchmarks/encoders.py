"""Our 16-bit PNG and TIFF writers (nrkdeblur/encoders.py) beside tifffile and imagecodecs.

    python benchmarks/encoders.py check            # pixels and metadata of every writer
    python benchmarks/encoders.py time             # CPU and wall seconds to encode, each writer in turn
    python benchmarks/encoders.py write WRITER     # one encode of the 12 MP photo (for whole-process timing)
    python benchmarks/encoders.py compressors      # CPU seconds of zlib and libdeflate on the TIFF's data

WRITER: ours-tiff, tifffile, ours-png, imagecodecs-png. The photo: 4000 x 3000 RGB,
16 bits, smooth shapes plus sensor-like noise (sigma 64 levels), with an sRGB ICC profile
and an EXIF block holding IFD0 tags (Make, Model) and an EXIF sub-directory (exposure,
ISO). Needs `pip install tifffile imagecodecs` (not dependencies of nrkdeblur).
"""

from __future__ import annotations

import io
import statistics
import struct
import sys
import time
import zlib

import numpy as np
from PIL import Image, ImageCms

from nrkdeblur.encoders import write_png16, write_tiff
from nrkdeblur.exif import MARKER, ifd0_entries

EXPOSURE, ISO = 0x829A, 0x8827


def photo(height: int = 3000, width: int = 4000) -> tuple[np.ndarray, bytes, bytes]:
    """(uint16 samples [H, W, 3], EXIF block, ICC profile)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = [0.5 + 0.4 * np.sin(x / (90 + 40 * c) + c) * np.cos(y / (70 + 30 * c)) for c in range(3)]
    rgb = np.stack(base, axis=-1) * 65535 + rng.normal(0, 64, (height, width, 3)).astype(np.float32)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Camera maker", "Model 1"
    exif[0x8769] = {EXPOSURE: 0.004, ISO: 400}
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return np.clip(rgb, 0, 65535).astype(np.uint16), exif.tobytes(), icc


def ours_tiff(samples, exif, icc) -> bytes:
    f = io.BytesIO()
    write_tiff(f, samples, None, exif, icc)
    return f.getvalue()


def ours_png(samples, exif, icc) -> bytes:
    f = io.BytesIO()
    write_png16(f, samples, None, exif, icc)
    return f.getvalue()


def with_tifffile(samples, exif, icc) -> bytes:
    """Same compression (deflate level 6, horizontal predictor); the EXIF IFD0 tags go in as
    extra tags. tifffile has no way to write the EXIF sub-directory (tag 34665 points to a
    directory whose offset only the writer knows), so that part is lost."""
    import tifffile

    endian, entries = ifd0_entries(exif[len(MARKER):])
    tiff = exif[len(MARKER):]
    extra = []
    for e in entries:
        if e.tag in (0x010F, 0x0110) and e.type == 2:  # ASCII: value at the offset in the field
            (offset,) = struct.unpack(endian + "I", e.field)
            extra.append((e.tag, "s", 0, tiff[offset:offset + e.count].rstrip(b"\0").decode(), True))
    f = io.BytesIO()
    tifffile.imwrite(f, samples, photometric="rgb", compression="zlib", compressionargs={"level": 6},
                     predictor=True, iccprofile=icc, extratags=extra, metadata=None)
    return f.getvalue()


def with_imagecodecs(samples, exif, icc) -> bytes:
    """libpng through imagecodecs (zlib level 6, Sub filter like ours); it writes no
    metadata, so the iCCP and eXIf chunks are spliced in after the header chunk."""
    import imagecodecs

    png = imagecodecs.png_encode(samples, level=6, filter=16)  # 16: PNG_FILTER_SUB

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header_end = 8 + 25  # signature, IHDR
    extra = chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc)) + chunk(b"eXIf", exif[len(MARKER):])
    return png[:header_end] + extra + png[header_end:]


WRITERS = {"ours-tiff": ours_tiff, "tifffile": with_tifffile, "ours-png": ours_png, "imagecodecs-png": with_imagecodecs}


def check(samples, exif, icc) -> None:
    from nrkdeblur.imageio import read_photo

    for name, write in WRITERS.items():
        data = write(samples, exif, icc)
        path = f"/tmp/encoders-check.{'tif' if 'tif' in name else 'png'}"
        with open(path, "wb") as f:
            f.write(data)
        got = read_photo(path)
        same = np.array_equal(np.rint(got.pixels * 65535).astype(np.uint16), samples)
        with Image.open(path) as im:
            tags = im.getexif()
            sub = tags.get_ifd(0x8769)
            meta = (f"ICC {'same' if im.info.get('icc_profile') == icc else 'MISSING'}, "
                    f"Make/Model {'kept' if tags.get(0x010F) == 'Camera maker' and tags.get(0x0110) == 'Model 1' else 'LOST'}, "
                    f"EXIF sub-directory {'kept' if sub.get(ISO) == 400 and float(sub.get(EXPOSURE, 0)) == 0.004 else 'LOST'}")
        print(f"{name:16s} {len(data) / 2**20:6.1f} MB  pixels {'same' if same else 'DIFFER'}, {meta}")


def timing(samples, exif, icc, repeats: int = 3) -> None:
    """Median wall and CPU seconds of encoding (no file system), each writer in turn."""
    for name, write in WRITERS.items():
        write(samples[:64], exif, icc)  # imports, first-call set-up
        wall, cpu = [], []
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            write(samples, exif, icc)
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
        print(f"{name:16s} encode: median {statistics.median(cpu):.2f} CPU s, {statistics.median(wall):.2f} wall s "
              f"({repeats} runs)")


def compressors(samples) -> None:
    """The deflate step alone, on the predictor's output for the whole photo."""
    import imagecodecs

    delta = samples.copy()
    delta[:, 1:] -= samples[:, :-1]
    data = delta.tobytes()
    for name, compress in (("python zlib, level 6", lambda: zlib.compress(data, 6)),
                           ("libdeflate (imagecodecs), level 6", lambda: imagecodecs.deflate_encode(data, 6))):
        c = time.process_time()
        size = len(compress())
        print(f"{name:34s} {time.process_time() - c:.2f} CPU s, {size / 2**20:.1f} MB")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    data = photo()
    if command == "check":
        check(*data)
    elif command == "time":
        timing(*data)
    elif command == "compressors":
        compressors(data[0])
    elif command == "write":
        WRITERS[sys.argv[2]](*data)
    else:
        sys.exit(__doc__)
