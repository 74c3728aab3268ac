"""Tests for nrkdeblur.imageio on tiny images made in tmp_path."""

import errno
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from nrkdeblur import encoders
from nrkdeblur.imageio import ImageError, Photo, list_images, read_photo, write_photo

RNG = np.random.default_rng(0)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def random_u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape).astype(np.uint8)


def random_u16(*shape: int) -> np.ndarray:
    return RNG.integers(0, 65536, shape).astype(np.uint16)


def levels(photo: Photo) -> np.ndarray:
    """The photo's pixels as integer levels of its bit depth."""
    top = 65535 if photo.bit_depth == 16 else 255
    return np.rint(photo.pixels * top).astype(np.int64)


def exif_with(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Maker"
    exif[0x8769] = {0x829A: 1 / 125}  # ExposureTime, in the EXIF sub-directory
    return exif.tobytes()


def read_exif(blob: bytes | None) -> Image.Exif:
    exif = Image.Exif()
    if blob:
        exif.load(blob)
    return exif


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16_all_filters(a: np.ndarray) -> bytes:
    """An independent 16-bit RGB PNG encoder using the five filter types in turn (row y: y % 5)."""
    h, w, c = a.shape
    bpp = 2 * c
    raw = a.astype(">u2").view(np.uint8).reshape(h, w * bpp).astype(np.int64)
    prev = np.zeros(w * bpp, np.int64)
    rows = b""
    for y in range(h):
        row = raw[y]
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        p = left + prev - upleft
        pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        predicted = [0, left, prev, (left + prev) // 2, paeth][y % 5]
        rows += bytes([y % 5]) + ((row - predicted) % 256).astype(np.uint8).tobytes()
        prev = row
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def make_dng(cfa: np.ndarray, orientation: int = 1, white: int = 4095) -> bytes:
    """A minimal uncompressed 16-bit RGGB DNG whose camera colour space is linear sRGB."""
    h, w = cfa.shape
    pixels = cfa.astype("<u2").tobytes()
    xyz_to_srgb = [3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570]
    tags = [  # (tag, type, count, value bytes); types: 1 byte, 2 ascii, 3 short, 4 long, 5/10 rational
        (254, 4, 1, struct.pack("<I", 0)), (256, 4, 1, struct.pack("<I", w)),
        (257, 4, 1, struct.pack("<I", h)), (258, 3, 1, struct.pack("<H", 16)),
        (259, 3, 1, struct.pack("<H", 1)), (262, 3, 1, struct.pack("<H", 32803)),  # CFA
        (271, 2, 5, b"Test\0"), (272, 2, 10, b"Synthetic\0"),
        (273, 4, 1, None),  # strip offset, known once the directory is laid out
        (274, 3, 1, struct.pack("<H", orientation)), (277, 3, 1, struct.pack("<H", 1)),
        (278, 4, 1, struct.pack("<I", h)), (279, 4, 1, struct.pack("<I", len(pixels))),
        (284, 3, 1, struct.pack("<H", 1)),
        (33421, 3, 2, struct.pack("<2H", 2, 2)), (33422, 1, 4, bytes([0, 1, 1, 2])),  # RGGB
        (50706, 1, 4, bytes([1, 4, 0, 0])), (50708, 2, 15, b"Test Synthetic\0"),
        (50714, 4, 1, struct.pack("<I", 0)), (50717, 4, 1, struct.pack("<I", white)),
        (50721, 10, 9, b"".join(struct.pack("<ii", round(v * 10000), 10000) for v in xyz_to_srgb)),
        (50728, 5, 3, struct.pack("<6I", 1, 1, 1, 1, 1, 1)),  # as-shot neutral: no white balance
        (50778, 3, 1, struct.pack("<H", 21)),  # D65
    ]
    extra_at = 8 + 2 + 12 * len(tags) + 4  # values longer than 4 bytes follow the directory
    extra, offsets = b"", {}
    for tag, _, _, value in tags:
        if value is not None and len(value) > 4:
            extra += b"\0" * (len(extra) % 2)
            offsets[tag] = extra_at + len(extra)
            extra += value
    data_at = extra_at + len(extra)
    ifd = struct.pack("<H", len(tags))
    for tag, typ, count, value in tags:
        if tag in offsets:
            value = struct.pack("<I", offsets[tag])
        elif value is None:
            value = struct.pack("<I", data_at)
        ifd += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + ifd + extra + pixels


# -----------------------------------------------------------------------------
# bit depth and values


def test_png_8bit_round_trip(tmp_path):
    a = random_u8(5, 7, 3)
    Image.fromarray(a).save(tmp_path / "in.png")
    photo = read_photo(tmp_path / "in.png")
    assert photo.bit_depth == 8 and photo.source_format == "PNG" and photo.alpha is None
    assert photo.pixels.dtype == np.float32 and photo.pixels.shape == (5, 7, 3)
    assert np.array_equal(levels(photo), a)
    write_photo(tmp_path / "out.png", photo)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), a)


def test_png_16bit_grey_round_trip(tmp_path):
    a = random_u16(6, 9)
    a[0, 0] = 65535
    Image.fromarray(a).save(tmp_path / "in.png")  # Pillow writes "I;16" as 16-bit grey PNG
    photo = read_photo(tmp_path / "in.png")
    assert photo.bit_depth == 16 and photo.pixels.shape == (6, 9, 1)
    assert np.array_equal(levels(photo)[..., 0], a)
    write_photo(tmp_path / "out.png", photo)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode.startswith("I;16") and np.array_equal(np.asarray(im).astype(np.uint16), a)
    assert np.array_equal(levels(read_photo(tmp_path / "out.png")), levels(photo))


@pytest.mark.parametrize("with_alpha", [False, True])
def test_png_16bit_rgb_round_trip(tmp_path, with_alpha):
    a = random_u16(5, 8, 3)
    alpha = random_u16(5, 8) if with_alpha else None
    write_photo(tmp_path / "out.png", Photo(a / np.float32(65535), alpha, 16))
    photo = read_photo(tmp_path / "out.png")
    assert photo.bit_depth == 16 and (levels(photo) > 255).any()
    assert np.array_equal(levels(photo), a)
    if with_alpha:
        assert photo.alpha.dtype == np.uint16 and np.array_equal(photo.alpha, alpha)
    with Image.open(tmp_path / "out.png") as im:  # Pillow itself sees the high bytes
        high = np.dstack([a, alpha]) if with_alpha else a
        assert np.array_equal(np.asarray(im), (high >> 8).astype(np.uint8))


def test_png_16bit_rgb_read_with_every_filter_type(tmp_path):
    a = random_u16(10, 6, 3)
    (tmp_path / "f.png").write_bytes(png16_all_filters(a))
    photo = read_photo(tmp_path / "f.png")
    assert photo.bit_depth == 16 and np.array_equal(levels(photo), a)


def test_png_16bit_grey_alpha_round_trip(tmp_path):
    grey, alpha = random_u16(4, 5, 1), random_u16(4, 5)
    write_photo(tmp_path / "la.png", Photo(grey / np.float32(65535), alpha, 16))
    photo = read_photo(tmp_path / "la.png")
    assert photo.bit_depth == 16 and photo.pixels.shape == (4, 5, 1)
    assert np.array_equal(levels(photo), grey) and np.array_equal(photo.alpha, alpha)


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_tiff_16bit_read_matches_tifffile(tmp_path, byteorder, compression, channels):
    tifffile = pytest.importorskip("tifffile")
    a = random_u16(6, 7, channels).squeeze()
    extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
    photometric = "minisblack" if channels == 1 else "rgb"
    tifffile.imwrite(tmp_path / "in.tif", a.astype(byteorder + "u2"), byteorder=byteorder,
                     compression=compression, photometric=photometric, **extra)
    photo = read_photo(tmp_path / "in.tif")
    assert photo.bit_depth == 16 and photo.source_format == "TIFF"
    got = levels(photo) if photo.alpha is None else np.dstack([levels(photo), photo.alpha])
    assert np.array_equal(got.squeeze(), a)


def test_tiff_16bit_planar_is_refused_not_misread(tmp_path):
    tifffile = pytest.importorskip("tifffile")  # Pillow 13 decodes these samples wrongly
    tifffile.imwrite(tmp_path / "planar.tif", random_u16(3, 6, 7), photometric="rgb", planarconfig="separate")
    with pytest.raises(ImageError, match="planar.tif: corrupt or unsupported"):
        read_photo(tmp_path / "planar.tif")


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("channels, with_alpha", [(1, False), (3, False), (3, True)])
def test_tiff_round_trip_and_tifffile_reads_it(tmp_path, bits, channels, with_alpha):
    tifffile = pytest.importorskip("tifffile")
    a = random_u16(6, 7, channels) if bits == 16 else random_u8(6, 7, channels)
    alpha = (random_u16(6, 7) if bits == 16 else random_u8(6, 7)) if with_alpha else None
    top = np.float32(65535 if bits == 16 else 255)
    write_photo(tmp_path / "out.tif", Photo(a / top, alpha, bits, icc_profile=SRGB_ICC))
    photo = read_photo(tmp_path / "out.tif")
    assert photo.bit_depth == bits and np.array_equal(levels(photo), a)
    assert photo.icc_profile == SRGB_ICC
    if with_alpha:
        assert photo.alpha.dtype == alpha.dtype and np.array_equal(photo.alpha, alpha)
    full = a if alpha is None else np.dstack([a, alpha])
    assert np.array_equal(tifffile.imread(tmp_path / "out.tif"), full.squeeze())


def test_16bit_photo_written_as_8bit_to_jpeg_webp_bmp(tmp_path):
    a = random_u16(8, 8, 3)
    for name in ("o.jpg", "o.webp", "o.bmp"):
        write_photo(tmp_path / name, Photo(a / np.float32(65535), None, 16))
        with Image.open(tmp_path / name) as im:
            assert im.mode == "RGB"
        assert read_photo(tmp_path / name).bit_depth == 8
    assert np.array_equal(levels(read_photo(tmp_path / "o.bmp")), np.rint(a / 257))


def test_write_rounds_to_nearest_and_clips(tmp_path):
    pixels = np.array([[[-0.5], [1.5], [100.4 / 255], [100.6 / 255], [np.nan]]], np.float32)
    write_photo(tmp_path / "r.png", Photo(pixels))
    with Image.open(tmp_path / "r.png") as im:
        assert np.asarray(im).tolist() == [[0, 255, 100, 101, 0]]


# -----------------------------------------------------------------------------
# modes


def test_grey_stays_grey(tmp_path):
    a = random_u8(5, 6)
    for name in ("g.png", "g.jpg", "g.tif", "g.bmp"):
        Image.fromarray(a, "L").save(tmp_path / name)
        photo = read_photo(tmp_path / name)
        assert photo.pixels.shape == (5, 6, 1) and photo.bit_depth == 8
        write_photo(tmp_path / ("out_" + name), photo)
        with Image.open(tmp_path / ("out_" + name)) as im:
            assert im.mode == "L"
    assert np.array_equal(levels(read_photo(tmp_path / "out_g.png"))[..., 0], a)


@pytest.mark.parametrize("name", ["a.png", "a.tif", "a.webp"])
def test_rgba_alpha_unchanged(tmp_path, name):
    rgba = random_u8(6, 5, 4)
    Image.fromarray(rgba, "RGBA").save(tmp_path / name, **({"lossless": True} if name.endswith("webp") else {}))
    photo = read_photo(tmp_path / name)
    assert photo.pixels.shape == (6, 5, 3) and photo.alpha.dtype == np.uint8
    assert np.array_equal(photo.alpha, rgba[..., 3])
    write_photo(tmp_path / ("out_" + name), photo)
    with Image.open(tmp_path / ("out_" + name)) as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im)[..., 3], rgba[..., 3])


def test_grey_alpha_and_palette_images(tmp_path):
    la = random_u8(4, 4, 2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    photo = read_photo(tmp_path / "la.png")
    assert photo.pixels.shape == (4, 4, 1) and np.array_equal(photo.alpha, la[..., 1])

    rgb = random_u8(4, 4, 3)
    Image.fromarray(rgb).quantize(8).save(tmp_path / "p.png")
    photo = read_photo(tmp_path / "p.png")
    assert photo.pixels.shape == (4, 4, 3) and photo.alpha is None and photo.bit_depth == 8

    pal = Image.new("P", (3, 2))
    pal.putpalette([255, 0, 0, 0, 0, 255])
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "pt.png", transparency=0)
    photo = read_photo(tmp_path / "pt.png")
    assert photo.alpha.tolist() == [[0, 0, 0], [0, 255, 0]]
    assert levels(photo)[1, 1].tolist() == [0, 0, 255]

    Image.fromarray(random_u8(4, 4) > 128).save(tmp_path / "bw.png")  # mode "1"
    assert read_photo(tmp_path / "bw.png").pixels.shape == (4, 4, 1)


# -----------------------------------------------------------------------------
# metadata


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("ext", ["png", "tif"])
def test_exif_orientation_applied_like_pillow(tmp_path, orientation, ext):
    a = random_u8(4, 6, 3)
    Image.fromarray(a).save(tmp_path / f"o.{ext}", exif=exif_with(orientation))
    photo = read_photo(tmp_path / f"o.{ext}")
    with Image.open(tmp_path / f"o.{ext}") as im:
        upright = np.asarray(ImageOps.exif_transpose(im))
    assert np.array_equal(levels(photo), upright)
    assert read_exif(photo.exif).get(0x0112) == 1
    assert read_exif(photo.exif).get(0x010F) == "Maker"


def test_exif_orientation_6_jpeg(tmp_path):
    y, x = np.mgrid[0:40, 0:60]
    a = np.dstack([x * 4, y * 6, np.full_like(x, 128)]).astype(np.uint8)  # height 40, width 60
    Image.fromarray(a).save(tmp_path / "o6.jpg", exif=exif_with(6), quality=95)
    photo = read_photo(tmp_path / "o6.jpg")
    assert photo.pixels.shape == (60, 40, 3)  # turned 90 degrees clockwise: upright
    assert np.abs(levels(photo) - np.rot90(a, -1)).mean() < 3
    exif = read_exif(photo.exif)
    assert exif.get(0x0112) == 1 and exif.get_ifd(0x8769)[0x829A] == 1 / 125
    write_photo(tmp_path / "out.jpg", photo)
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (40, 60) and im.getexif().get(0x0112) == 1


@pytest.mark.parametrize(
    "name, bits", [("i.jpg", 8), ("i.png", 8), ("i.png", 16), ("i.tif", 8), ("i.tif", 16), ("i.webp", 8)]
)
def test_icc_and_exif_preserved(tmp_path, name, bits):
    photo = Photo(RNG.random((6, 5, 3), dtype=np.float32), None, bits, exif_with(1), SRGB_ICC)
    write_photo(tmp_path / name, photo)
    with Image.open(tmp_path / name) as im:
        assert im.info.get("icc_profile") == SRGB_ICC
        assert im.getexif().get(0x010F) == "Maker"
    back = read_photo(tmp_path / name)
    assert back.icc_profile == SRGB_ICC
    exif = read_exif(back.exif)
    assert exif.get(0x010F) == "Maker" and exif.get_ifd(0x8769)[0x829A] == 1 / 125


def test_icc_read_from_jpeg(tmp_path):
    Image.fromarray(random_u8(4, 4, 3)).save(tmp_path / "c.jpg", icc_profile=SRGB_ICC)
    assert read_photo(tmp_path / "c.jpg").icc_profile == SRGB_ICC


def test_big_endian_exif_reset_in_place_and_kept_in_16bit_tiff(tmp_path):
    # "MM" EXIF: Make (out of line) and Orientation 6, written by hand
    entries = struct.pack(">HHII", 0x010F, 2, 6, 38) + struct.pack(">HHIH2x", 0x0112, 3, 1, 6)
    blob = b"Exif\0\0MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 2) + entries + struct.pack(">I", 0) + b"Canon\0"
    Image.fromarray(random_u8(2, 3, 3)).save(tmp_path / "mm.jpg", exif=blob)
    photo = read_photo(tmp_path / "mm.jpg")
    assert photo.pixels.shape == (3, 2, 3)
    assert photo.exif == blob.replace(struct.pack(">HHIH", 0x0112, 3, 1, 6), struct.pack(">HHIH", 0x0112, 3, 1, 1))
    photo.bit_depth = 16
    write_photo(tmp_path / "mm.tif", photo)
    assert (tmp_path / "mm.tif").read_bytes()[:4] == b"MM\0*"
    with Image.open(tmp_path / "mm.tif") as im:
        assert im.size == (2, 3) and im.getexif().get(0x010F) == "Canon"
    assert read_exif(read_photo(tmp_path / "mm.tif").exif).get(0x010F) == "Canon"


# -----------------------------------------------------------------------------
# writing


def test_jpeg_quality_changes_file_size(tmp_path):
    photo = Photo(RNG.random((64, 64, 3), dtype=np.float32))
    write_photo(tmp_path / "lo.jpg", photo, quality=30)
    write_photo(tmp_path / "hi.jpg", photo, quality=95)
    assert (tmp_path / "lo.jpg").stat().st_size < (tmp_path / "hi.jpg").stat().st_size


def test_format_from_extension_or_name(tmp_path):
    photo = Photo(RNG.random((4, 4, 3), dtype=np.float32))
    write_photo(tmp_path / "sub" / "dir" / "x.JPG", photo)  # parents created, case-insensitive
    write_photo(tmp_path / "x.out", photo, format="png")
    with Image.open(tmp_path / "sub" / "dir" / "x.JPG") as a, Image.open(tmp_path / "x.out") as b:
        assert (a.format, b.format) == ("JPEG", "PNG")
    for bad, fmt in [("x.xyz", None), ("x.dng", None), ("x.png", "gif")]:
        with pytest.raises(ImageError, match="x."):
            write_photo(tmp_path / bad, photo, format=fmt)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "photo.png"
    write_photo(target, Photo(RNG.random((4, 4, 3), dtype=np.float32)))
    write_photo(target, Photo(RNG.random((4, 4, 3), dtype=np.float32)))  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["photo.png"]


@pytest.mark.parametrize("name, bits", [("t.jpg", 8), ("t.png", 16), ("t.tif", 8)])
def test_failed_write_keeps_target_and_removes_temp(tmp_path, monkeypatch, name, bits):
    target = tmp_path / name
    target.write_bytes(b"old contents")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # fail in Pillow's encoder (JPEG) and in our own (PNG 16-bit, TIFF) after a partial write
    monkeypatch.setattr(Image.Image, "save", disk_full)
    monkeypatch.setattr(encoders, "_png_chunk", disk_full)
    monkeypatch.setattr(encoders, "_ifd_bytes", disk_full)
    with pytest.raises(ImageError, match=f"{name}: .*disk full"):
        write_photo(target, Photo(RNG.random((4, 4, 3), dtype=np.float32), None, bits))
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_write_into_a_file_instead_of_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="out.png"):
        write_photo(tmp_path / "file" / "out.png", Photo(np.zeros((2, 2, 1), np.float32)))


# -----------------------------------------------------------------------------
# errors


def test_truncated_file(tmp_path):
    for name in ("t.png", "t.jpg", "t.tif"):
        Image.fromarray(random_u8(64, 64, 3)).save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageError, match=f"{name}: truncated or corrupt"):
            read_photo(tmp_path / name)
    write_photo(tmp_path / "t16.png", Photo(RNG.random((64, 64, 3), dtype=np.float32), None, 16))
    data = (tmp_path / "t16.png").read_bytes()
    (tmp_path / "t16.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="t16.png: truncated or corrupt"):
        read_photo(tmp_path / "t16.png")


def test_not_an_image_missing_empty_and_folder(tmp_path):
    (tmp_path / "photo.jpg").write_text("hello, I am not a JPEG")
    with pytest.raises(ImageError, match=r"photo.jpg: not an image file \(cannot identify image\)$"):
        read_photo(tmp_path / "photo.jpg")
    with pytest.raises(ImageError, match="missing.png: no such file"):
        read_photo(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png: empty file"):
        read_photo(tmp_path / "empty.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="dir.png: "):
        read_photo(tmp_path / "dir.png")
    with pytest.raises(ImageError, match="missing.CR2: no such file"):
        read_photo(tmp_path / "missing.CR2")
    (tmp_path / "fake.nef").write_bytes(b"x" * 1000)
    with pytest.raises(ImageError, match="fake.nef: "):
        read_photo(tmp_path / "fake.nef")


def test_list_images_skips_hidden_and_unsupported_files(tmp_path):
    for name in ["b.JPG", "a.png", "._a.png", ".hidden.jpg", "notes.txt", "sub/c.dng", "sub/d.tif",
                 ".Trashes/e.jpg", "sub/.cache/f.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "a.png", "b.JPG", "sub/c.dng", "sub/d.tif"]
    assert [p.name for p in list_images(tmp_path / "sub", raw=False)] == ["d.tif"]


# -----------------------------------------------------------------------------
# camera RAW


def test_raw_dng_is_developed_upright_in_16_bits(tmp_path):
    h, w = 32, 48
    scene = np.zeros((h, w, 3))
    scene[:, : w // 2] = (0.6, 0.1, 0.1)  # left half red
    scene[:, w // 2:] = (0.1, 0.1, 0.6)  # right half blue
    channel = np.array([[0, 1], [1, 2]])[np.arange(h)[:, None] % 2, np.arange(w)[None, :] % 2]  # RGGB
    cfa = np.take_along_axis(scene, channel[..., None], axis=2)[..., 0] * 4095
    (tmp_path / "shot.DNG").write_bytes(make_dng(np.rint(cfa), orientation=6))

    photo = read_photo(tmp_path / "shot.DNG")
    assert photo.source_format == "RAW" and photo.bit_depth == 16 and photo.alpha is None
    assert photo.pixels.dtype == np.float32 and photo.pixels.shape == (w, h, 3)  # turned upright
    red = photo.pixels[4:20, 4:-4].reshape(-1, 3).mean(0)  # the old left half is now on top
    blue = photo.pixels[-20:-4, 4:-4].reshape(-1, 3).mean(0)
    # linear 0.6 and 0.1 with the sRGB tone curve: 0.80 and 0.35
    assert np.allclose(red, [0.80, 0.35, 0.35], atol=0.03) and np.allclose(blue, [0.35, 0.35, 0.80], atol=0.03)
    exif = read_exif(photo.exif)  # taken from the DNG's directory
    assert (exif.get(0x010F), exif.get(0x0110), exif.get(0x0112)) == ("Test", "Synthetic", 1)
    write_photo(tmp_path / "shot.tif", photo)
    back = read_photo(tmp_path / "shot.tif")
    assert back.bit_depth == 16 and np.array_equal(levels(back), levels(photo))


def test_raw_truncated(tmp_path):
    cfa = np.full((32, 48), 1000)
    (tmp_path / "cut.dng").write_bytes(make_dng(cfa)[:-100])  # pixel data cut short
    with pytest.raises(ImageError, match="cut.dng: truncated or corrupt RAW data"):
        read_photo(tmp_path / "cut.dng")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_unparsable_exif_does_not_stop_reading(tmp_path):
    Image.fromarray(random_u8(8, 8, 3)).save(tmp_path / "e.jpg", exif=b"Exif\0\0MM\0*\0\0\0\x08\xff\xff")
    photo = read_photo(tmp_path / "e.jpg")
    assert photo.pixels.shape == (8, 8, 3)
    write_photo(tmp_path / "e.tif", photo)  # a block that is not a TIFF structure is left out
    assert read_photo(tmp_path / "e.tif").pixels.shape == (8, 8, 3)


def test_mpo_photos_are_read_as_their_primary_image(tmp_path):
    """Many cameras and phones save JPEGs as MPO, with preview or depth frames after the photo."""
    y, x = np.mgrid[0:24, 0:32]
    a = np.dstack([x * 8, y * 10, np.full_like(x, 90)]).astype(np.uint8)  # smooth: JPEG keeps it closely
    b = random_u8(12, 16, 3)
    Image.fromarray(a).save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=[Image.fromarray(b)],
                            quality=100, subsampling=0)
    with Image.open(tmp_path / "phone.jpg") as im:
        assert im.format == "MPO" and im.n_frames == 2
    photo = read_photo(tmp_path / "phone.jpg")
    assert photo.pixels.shape == (24, 32, 3) and photo.source_format == "MPO"
    assert np.abs(photo.pixels * 255 - a).mean() < 3  # the first frame, JPEG-compressed
