"""Tests of nrkdeblur.data: PSFs, the defocus renderer, image reading and the datasets."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from nrkdeblur.data import (
    Aperture,
    PairFolder,
    RenderSettings,
    SyntheticDefocus,
    aperture_psf,
    dpdd,
    lfdof,
    read_image,
    render_pair,
    sharp_photos,
    write_frozen_set,
)
from nrkdeblur.data.defocus import render_layers
from nrkdeblur.srgb import srgb_to_linear

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLEAN = RenderSettings(p_noise=0.0, quantize=False, p_jpeg=0.0)  # no noise, no 8-bit rounding, no JPEG


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A random HxWx3 float32 image with structure at several scales."""
    rng = np.random.default_rng(seed)
    image = rng.random((h, w, 3))
    image = 0.5 * image + 0.5 * ndimage.gaussian_filter(image, sigma=(3, 3, 0))
    return np.clip(image, 0, 1).astype(np.float32)


def save_png(path: Path, image: np.ndarray) -> None:
    """Write an HxWx3 float image as an 8-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path)


def write_png16(path: Path, pixels: np.ndarray, filters: np.ndarray) -> None:
    """Minimal 16-bit RGB PNG encoder using the given filter type (0-4) on each row."""
    h, w, _ = pixels.shape
    data = pixels.astype(">u2").view(np.uint8).reshape(h, w, 6).astype(np.int32)
    zero = np.zeros((1, 6), dtype=np.int32)
    previous = np.zeros((w, 6), dtype=np.int32)
    rows = []
    for y in range(h):
        row = data[y]
        left = np.vstack([zero, row[:-1]])
        corner = np.vstack([zero, previous[:-1]])
        guess = left + previous - corner
        da, db, dc = abs(guess - left), abs(guess - previous), abs(guess - corner)
        paeth = np.where((da <= db) & (da <= dc), left, np.where(db <= dc, previous, corner))
        predict = [0 * row, left, previous, (left + previous) >> 1, paeth][filters[y]]
        rows.append(bytes([int(filters[y])]) + ((row - predict) & 0xFF).astype(np.uint8).tobytes())
        previous = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    body = zlib.compress(b"".join(rows))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------
# PSFs


@pytest.mark.parametrize(
    "aperture",
    [Aperture("disk"), Aperture("polygon", blades=6, angle=0.3), Aperture("rim", strength=1.5),
     Aperture("soft", strength=0.5), Aperture("cateye", angle=1.0, strength=0.6)],
)
@pytest.mark.parametrize("radius", [0.7, 2.3, 9.5])
def test_psf_is_normalised_and_non_negative(aperture: Aperture, radius: float) -> None:
    psf = aperture_psf(radius, aperture)
    n = int(np.ceil(round(radius * 4) / 4))
    assert psf.shape == (2 * n + 1, 2 * n + 1)
    assert psf.min() >= 0
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)


def test_small_radius_is_dirac() -> None:
    assert aperture_psf(0.4).tolist() == [[1.0]]


def test_disk_support_matches_radius() -> None:
    radius = 6.0
    psf = aperture_psf(radius)
    n = psf.shape[0] // 2
    y, x = np.mgrid[-n : n + 1, -n : n + 1]
    distance = np.hypot(y, x)
    assert np.all(psf[distance > radius + 0.75] == 0)  # pixel wholly outside the disk
    inner = psf[distance < radius - 0.75]  # pixels wholly inside: flat top
    assert inner.min() > 0 and np.allclose(inner, inner.max())
    edge = psf[(distance > radius - 0.3) & (distance < radius + 0.3)]
    assert np.all(edge < inner.max())  # anti-aliased rim


def test_flip_rotates_by_180_degrees() -> None:
    aperture = Aperture("polygon", blades=5, angle=0.2)  # odd blade count: not point-symmetric
    psf, flipped = aperture_psf(5.0, aperture), aperture_psf(5.0, aperture, flip=True)
    assert np.array_equal(flipped, psf[::-1, ::-1]) and not np.allclose(flipped, psf)
    assert not np.allclose(aperture_psf(5.0, Aperture("polygon", blades=5)), aperture_psf(5.0))


# ----------------------------------------------------------------------------
# renderer


def test_render_pair_shapes_and_ranges() -> None:
    sharp = textured(40, 56)
    for seed in range(4):
        pair = render_pair(sharp, np.random.default_rng(seed))
        assert pair.blurry.shape == pair.sharp.shape == (40, 56, 3)
        assert pair.coc.shape == (40, 56)
        assert pair.blurry.dtype == pair.sharp.dtype == pair.coc.dtype == np.float32
        assert 0 <= pair.blurry.min() and pair.blurry.max() <= 1
        assert 0 <= pair.coc.min() and pair.coc.max() <= RenderSettings().max_coc_radius + 1e-4
        np.testing.assert_array_equal(pair.sharp, sharp)


def test_border_is_context_only() -> None:
    sharp = textured(70, 80)
    pair = render_pair(sharp, np.random.default_rng(1), border=10)
    assert pair.blurry.shape == (50, 60, 3)
    np.testing.assert_array_equal(pair.sharp, sharp[10:-10, 10:-10])


def test_render_is_deterministic() -> None:
    sharp = textured(48, 48)
    a = render_pair(sharp, np.random.default_rng([3, 7]))
    b = render_pair(sharp, np.random.default_rng([3, 7]))
    c = render_pair(sharp, np.random.default_rng([3, 8]))
    np.testing.assert_array_equal(a.blurry, b.blurry)
    assert not np.array_equal(a.blurry, c.blurry)


def test_in_focus_region_stays_sharp() -> None:
    """Pixels with CoC 0, farther than any blur radius from blurred pixels, are untouched."""
    sharp = textured(96, 96)
    checked = 0
    for seed in range(40):
        pair = render_pair(sharp, np.random.default_rng(seed), CLEAN)
        if pair.coc.max() == 0:
            continue
        far = ndimage.distance_transform_edt(pair.coc == 0) > pair.coc.max() + 1.5
        if far.sum() < 50:
            continue
        np.testing.assert_allclose(pair.blurry[far], pair.sharp[far], atol=2e-4)
        checked += 1
    assert checked >= 3


def test_blurred_region_is_blurred() -> None:
    sharp = textured(96, 96)
    for seed in range(40):
        pair = render_pair(sharp, np.random.default_rng(seed), CLEAN)
        if (pair.coc > 5).mean() > 0.5:
            high = lambda im: np.abs(np.diff(im, axis=1)).mean()  # noqa: E731
            assert high(pair.blurry) < 0.5 * high(pair.sharp)
            return
    pytest.fail("no strongly blurred sample in 40 seeds")


def test_all_in_focus_sample_is_identity() -> None:
    settings = replace(CLEAN, p_all_in_focus=1.0)
    sharp = textured(32, 32)
    pair = render_pair(sharp, np.random.default_rng(0), settings)
    assert pair.coc.max() == 0
    np.testing.assert_allclose(pair.blurry, sharp, atol=2e-4)


def test_sharp_foreground_keeps_hard_edge() -> None:
    """In-focus bright square in front of a blurred dark background: no bleeding either way."""
    image = np.full((80, 80, 3), 0.05, dtype=np.float32)
    image[30:50, 30:50] = 0.9
    square = np.zeros((80, 80), dtype=bool)
    square[30:50, 30:50] = True
    coc = np.where(square, 0.0, 8.0).astype(np.float32)  # background behind the focal plane
    out, radius, rms = render_layers(srgb_to_linear(image), coc, Aperture(), CLEAN)
    inside = srgb_to_linear(image)[square]
    np.testing.assert_allclose(out[square], inside, rtol=1e-4)  # background does not bleed in
    ring = ndimage.binary_dilation(square, iterations=3) & ~square
    background = srgb_to_linear(np.float32(0.05))
    np.testing.assert_allclose(out[ring], background, rtol=1e-3)  # nor the square out, nor a dark halo
    assert radius[square].max() == 0 and radius[~square].min() == pytest.approx(8.0, abs=0.01)
    # the PSF's own RMS radius: a uniform disk of radius R has R / sqrt(2)
    assert rms[square].max() == 0 and rms[~square].min() == pytest.approx(8.0 / np.sqrt(2), rel=0.03)


def test_psf_rms_radius_is_the_second_moment() -> None:
    from nrkdeblur.data.defocus import psf_rms_radius

    for r in (5.0, 12.0):  # pixels add their own width (1/12 px^2 per axis): small disks come out wider
        assert psf_rms_radius(aperture_psf(r, Aperture())) == pytest.approx(r / np.sqrt(2), rel=0.03)
    assert psf_rms_radius(aperture_psf(2.0, Aperture())) == pytest.approx(np.sqrt(2.0 + 1 / 6), rel=0.04)
    assert psf_rms_radius(aperture_psf(0.3, Aperture())) == 0.0
    # a bright rim puts more light far from the centre than a plain disk
    assert psf_rms_radius(aperture_psf(6.0, Aperture("rim", strength=2.0))) > psf_rms_radius(aperture_psf(6.0, Aperture()))


def test_soft_source_softens_only_the_target_background() -> None:
    from nrkdeblur.data.defocus import soften_background

    rng = np.random.default_rng(3)
    image = rng.uniform(0.1, 0.9, (64, 64, 3)).astype(np.float32)
    surface = np.zeros((64, 64), dtype=np.int32)
    surface[16:48, 16:48] = 1  # an object in front of the background
    soft = soften_background(image, surface, 3.0)
    assert np.abs(soft[:6, :6] - image[:6, :6]).mean() > 0.1  # the background lost its texture
    np.testing.assert_allclose(soft[28:36, 28:36], image[28:36, 28:36], atol=1e-3)  # the object kept it
    # in render_pair the softened photo becomes the target (p = 0: test_p_zero_draws_nothing...)
    photo = rng.uniform(0.1, 0.9, (48, 48, 3)).astype(np.float32)
    plain = render_pair(photo, np.random.default_rng(5), CLEAN)
    softened = render_pair(photo, np.random.default_rng(5), replace(CLEAN, p_soft_source=1.0))
    np.testing.assert_array_equal(plain.sharp, photo)
    assert np.abs(softened.sharp - photo).mean() > 0.01


def test_highlights_clip_into_bright_discs_after_the_blur() -> None:
    from nrkdeblur.data.defocus import stretch_highlights

    image = np.full((64, 64, 3), 0.1, dtype=np.float32)
    image[29:36, 29:36] = 1.0  # a lamp of 7 x 7 px, white in the photo
    linear = srgb_to_linear(image)
    coc = np.full((64, 64), 6.0, dtype=np.float32)  # all out of focus
    plain, _, _ = render_layers(linear, coc, Aperture(), CLEAN)
    bright, _, _ = render_layers(stretch_highlights(linear, 0.7, 10.0), coc, Aperture(), CLEAN)
    assert plain.max() < 0.5  # spread over a disc of radius 6, the lamp fades
    disc = bright[..., 0] >= 0.999
    assert 49 < disc.sum() < np.pi * 9.5**2  # a clipped disc wider than the lamp, inside its blur
    assert disc[32, 32] and not disc[32, 42]
    np.testing.assert_array_equal(stretch_highlights(linear, 0.7, 10.0)[:20], linear[:20])  # dark parts keep
    # in render_pair the target is the in-focus exposure: only its clipped whites change
    rng = np.random.default_rng(4)
    photo = rng.uniform(0.1, 0.9, (48, 48, 3)).astype(np.float32)
    photo[20:24, 20:24] = 0.97
    plain_pair = render_pair(photo, np.random.default_rng(5), CLEAN)
    lit = render_pair(photo, np.random.default_rng(5), replace(CLEAN, p_highlights=1.0))
    np.testing.assert_array_equal(plain_pair.sharp, photo)
    changed = np.abs(lit.sharp - photo) > 1e-4
    assert changed[20:24, 20:24].all() and np.all(srgb_to_linear(photo)[changed] > 0.7)


@pytest.mark.parametrize("share", ["p_soft_source", "p_highlights", "p_high_iso"])
def test_p_zero_draws_nothing_so_older_recipes_render_as_before(share: str) -> None:
    """A share above 0 must draw one number to decide, even where it never fires (1e-12);
    a share of 0 must draw none, so a render without the option leaves its stream one
    number behind, whatever the rest of the renderer draws."""
    photo = np.random.default_rng(4).uniform(0.1, 0.9, (48, 48, 3)).astype(np.float32)
    without, tiny = np.random.default_rng(5), np.random.default_rng(5)
    a = render_pair(photo, without, CLEAN)
    b = render_pair(photo, tiny, replace(CLEAN, **{share: 1e-12}))
    np.testing.assert_array_equal(a.blurry, b.blurry)  # it never fired, and CLEAN draws no noise
    without.random()  # the one number the share above 0 drew
    assert without.random() == tiny.random()


def test_high_iso_samples_are_noisier_and_the_default_renders_as_before() -> None:
    flat = np.full((64, 64, 3), 0.4, dtype=np.float32)  # in focus and flat: the spread is the noise
    base = replace(RenderSettings(), p_all_in_focus=1.0, p_noise=1.0, p_jpeg=0.0)
    plain = render_pair(flat, np.random.default_rng(3), base)
    spread = [[render_pair(flat, np.random.default_rng(seed), replace(base, p_high_iso=p)).blurry.std()
               for seed in range(12)] for p in (0.0, 1.0)]
    assert np.mean(spread[1]) > 1.5 * np.mean(spread[0]) > 0  # about 2x
    # a share above 0 draws one number more even where it picks the ordinary camera, so the
    # noise that follows differs: that p = 0 draws none is what keeps older recipes as they were
    never = render_pair(flat, np.random.default_rng(3), replace(base, p_high_iso=1e-12))
    assert not np.array_equal(never.blurry, plain.blurry)
    strong = RenderSettings().high_iso()
    assert strong.p_noise == strong.p_jpeg == 1.0 and strong.jpeg_quality_range == (30, 85)


def test_blurry_foreground_spills_over_background() -> None:
    image = np.full((80, 80, 3), 0.05, dtype=np.float32)
    image[30:50, 30:50] = 0.9
    square = np.zeros((80, 80), dtype=bool)
    square[30:50, 30:50] = True
    coc = np.where(square, -8.0, 0.0).astype(np.float32)  # square in front of the focal plane
    out, _, _ = render_layers(srgb_to_linear(image), coc, Aperture(), CLEAN)
    background = srgb_to_linear(np.float32(0.05))
    assert out[28, 40, 0] > background + 0.05  # spill just outside the square
    step = abs(out[30, 40, 0] - out[29, 40, 0])  # across the square's edge
    assert step < 0.1 * (srgb_to_linear(np.float32(0.9)) - background)  # soft edge, no outline
    np.testing.assert_allclose(out[5, 5], background, rtol=1e-3)  # far background untouched


# ----------------------------------------------------------------------------
# image reading


def test_read_16bit_png_by_dtype(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, (9, 7, 3)).astype(np.uint16)
    write_png16(tmp_path / "a.png", pixels, rng.integers(0, 5, 9))  # every PNG row filter
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), pixels / 65535.0, atol=1e-7)
    dark = rng.integers(0, 256, (5, 4, 3)).astype(np.uint16)  # 16-bit file with small values
    write_png16(tmp_path / "dark.png", dark, np.full(5, 4))
    assert read_image(tmp_path / "dark.png").max() < 256 / 65535 + 1e-7


def test_read_16bit_grey_png_and_8bit(tmp_path: Path) -> None:
    grey = np.arange(24, dtype=np.uint16).reshape(4, 6) * 2000
    Image.fromarray(grey).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (4, 6, 3)
    np.testing.assert_allclose(out[..., 1], grey / 65535.0, atol=1e-7)
    rgb = (np.arange(36, dtype=np.uint8) * 7).reshape(3, 4, 3)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_allclose(read_image(tmp_path / "c.png"), rgb / 255.0, atol=1e-7)


def test_read_16bit_tiff(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    pixels = (np.arange(60, dtype=np.uint16) * 1000).reshape(4, 5, 3)
    tifffile.imwrite(tmp_path / "t.tif", pixels)
    np.testing.assert_allclose(read_image(tmp_path / "t.tif"), pixels / 65535.0, atol=1e-7)


# ----------------------------------------------------------------------------
# datasets


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Three tiny sharp photos: RGB PNG, greyscale JPEG, 16-bit PNG."""
    folder = tmp_path / "photos"
    save_png(folder / "a.png", textured(90, 110, 1))
    folder.mkdir(exist_ok=True)
    Image.fromarray(np.round(textured(100, 96, 2)[..., 0] * 255).astype(np.uint8)).save(folder / "sub_b.jpg")
    (folder / "nested").mkdir()
    write_png16(folder / "nested" / "c.png", (textured(88, 92, 3) * 65535).astype(np.uint16), np.full(88, 4))
    (folder / "notes.txt").write_text("not an image")
    return sharp_photos([folder])


def test_sharp_photos_lists_images_recursively(photos: list[Path]) -> None:
    assert [p.name for p in photos] == ["a.png", "c.png", "sub_b.jpg"]
    assert photos == sorted(photos)
    with pytest.raises(ValueError, match="does not exist"):
        sharp_photos([photos[0].parent / "missing"])


def test_synthetic_defocus_items(photos: list[Path]) -> None:
    data = SyntheticDefocus(photos, crop=32, seed=5)
    assert len(data) >= 10**9
    for i in range(6):
        item = data[i]
        for key in ("blur", "sharp"):
            assert item[key].shape == (3, 32, 32) and item[key].dtype == torch.float32
            assert 0 <= item[key].min() and item[key].max() <= 1


def test_synthetic_defocus_is_deterministic_by_index(photos: list[Path]) -> None:
    first = SyntheticDefocus(photos, crop=32, seed=5)
    resumed = SyntheticDefocus(photos, crop=32, seed=5)  # a fresh process resuming at step 11
    a, b = first[11], resumed[11]
    assert torch.equal(a["blur"], b["blur"]) and torch.equal(a["sharp"], b["sharp"])
    assert torch.equal(first[11]["blur"], a["blur"])  # cached photo gives the same item
    assert not torch.equal(first[12]["sharp"], a["sharp"])
    other_seed = SyntheticDefocus(photos, crop=32, seed=6)[11]
    assert not torch.equal(other_seed["blur"], a["blur"])


def make_pairs(root: Path, names: list[str], blur_suffix: str = ".png", sharp_suffix: str = ".png") -> None:
    """blur/NAME and sharp/NAME images under root, blur = sharp (so augmentations can be compared)."""
    for k, name in enumerate(names):
        image = textured(30, 40, k)
        save_png(root / "blur" / f"{name}{blur_suffix}", image)
        save_png(root / "sharp" / f"{name}{sharp_suffix}", image)


def test_pair_folder_matches_names(tmp_path: Path) -> None:
    make_pairs(tmp_path, ["b", "a"])
    save_png(tmp_path / "blur" / "c.png", textured(30, 40, 9))
    save_png(tmp_path / "sharp" / "c.bmp", textured(30, 40, 9))  # partners may differ in format
    data = PairFolder(tmp_path / "blur", tmp_path / "sharp", crop=None, seed=0, augment=False)
    assert [(b.name, s.name) for b, s in data.pairs] == [("a.png", "a.png"), ("b.png", "b.png"), ("c.png", "c.bmp")]
    item = data[0]
    assert item["name"] == "a" and item["blur"].shape == (3, 30, 40)
    assert torch.allclose(item["blur"], item["sharp"])


def test_pair_folder_reads_16bit(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 65536, (12, 10, 3)).astype(np.uint16)
    for folder in ("blur", "sharp"):
        (tmp_path / folder).mkdir()
        write_png16(tmp_path / folder / "x.png", pixels, np.arange(12) % 5)
    item = PairFolder(tmp_path / "blur", tmp_path / "sharp", crop=None, seed=0, augment=False)[0]
    expected = torch.from_numpy(pixels.transpose(2, 0, 1) / 65535.0).float()
    assert torch.allclose(item["sharp"], expected, atol=1e-7)
    assert len(torch.unique(item["sharp"])) > 256  # really 16-bit, not rounded to 8


def test_pair_folder_errors_name_the_folder(tmp_path: Path) -> None:
    make_pairs(tmp_path, ["a", "b"])
    save_png(tmp_path / "blur" / "lonely.png", textured(30, 40))
    with pytest.raises(ValueError, match=r"blur.*no partner.*lonely"):
        PairFolder(tmp_path / "blur", tmp_path / "sharp", crop=None, seed=0, augment=False)
    (tmp_path / "blur" / "lonely.png").unlink()
    save_png(tmp_path / "sharp" / "orphan.png", textured(30, 40))
    with pytest.raises(ValueError, match=r"sharp.*no partner.*orphan"):
        PairFolder(tmp_path / "blur", tmp_path / "sharp", crop=None, seed=0, augment=False)
    (tmp_path / "empty_blur").mkdir()
    with pytest.raises(ValueError, match="no images.*empty_blur"):
        PairFolder(tmp_path / "empty_blur", tmp_path / "sharp", crop=None, seed=0, augment=False)


def test_pair_folder_crop_and_augment(tmp_path: Path) -> None:
    make_pairs(tmp_path, ["a", "b", "c"])
    data = PairFolder(tmp_path / "blur", tmp_path / "sharp", crop=16, seed=3, augment=True)
    crops = [data[1]["blur"] for _ in range(2)]
    assert crops[0].shape == (3, 16, 16) and torch.equal(crops[0], crops[1])
    for i in range(3):
        item = data[i]
        assert torch.equal(item["blur"], item["sharp"])  # same window, flip and rotation on both
    centre = PairFolder(tmp_path / "blur", tmp_path / "sharp", crop=16, seed=3, augment=False)[0]
    whole = read_image(tmp_path / "sharp" / "a.png")
    assert torch.allclose(centre["sharp"], torch.from_numpy(whole[7:23, 12:28].transpose(2, 0, 1)))


def test_dpdd_layout(tmp_path: Path) -> None:
    for split in ("train_c", "test_c"):
        base = tmp_path / split
        for name in ("1P0A1031", "1P0A1040"):
            image = textured(24, 32)
            save_png(base / "source" / f"{name}.png", image)
            save_png(base / "target" / f"{name}.png", image)
    train = dpdd(tmp_path, "train")
    assert len(train) == 2 and train[1]["name"] == "1P0A1040"
    assert len(dpdd(tmp_path, "test", crop=16, seed=1, augment=True)) == 2
    with pytest.raises(ValueError, match="split"):
        dpdd(tmp_path, "training")
    with pytest.raises(ValueError, match="val_c"):
        dpdd(tmp_path, "val")


def test_lfdof_layout_with_several_shots_per_target(tmp_path: Path) -> None:
    base = tmp_path / "LFDOF" / "test_data"
    for name in ("IMG_1567", "IMG_2026"):
        save_png(base / "ground_truth" / f"{name}.png", textured(20, 28))
        for shot in ("ap1_00", "ap2_03", "ap3_04"):
            save_png(base / "input" / name / f"{name}_{shot}.png", textured(20, 28))
    data = lfdof(tmp_path, "test")  # the folder holding LFDOF/ works too
    assert len(data) == 6
    assert {s.name for _, s in data.pairs} == {"IMG_1567.png", "IMG_2026.png"}
    assert data[0]["name"] == "IMG_1567/IMG_1567_ap1_00"
    assert len(lfdof(tmp_path / "LFDOF", "test")) == 6


def test_write_frozen_set(tmp_path: Path) -> None:
    for name, seed in (("kodim01", 1), ("kodim02", 2)):
        save_png(tmp_path / "in" / f"{name}.png", textured(36, 44, seed))
    paths = sharp_photos([tmp_path / "in"])
    assert write_frozen_set(paths, tmp_path / "a", seed=0) == ["kodim01", "kodim02"]
    write_frozen_set(paths, tmp_path / "b", seed=0)
    for name in ("kodim01", "kodim02"):
        blur = np.asarray(Image.open(tmp_path / "a" / "blur" / f"{name}.png"))
        sharp = np.asarray(Image.open(tmp_path / "a" / "sharp" / f"{name}.png"))
        assert blur.shape == sharp.shape == (36, 44, 3) and blur.dtype == np.uint8
        assert np.array_equal(sharp, np.asarray(Image.open(tmp_path / "in" / f"{name}.png")))
        assert np.array_equal(blur, np.asarray(Image.open(tmp_path / "b" / "blur" / f"{name}.png")))


def test_synthetic_defocus_on_real_photos() -> None:
    folder = SHARED_DATA / "BSDS500"
    if not folder.is_dir():
        pytest.skip(f"real photos not found at {folder}")
    photos = sharp_photos([folder])
    assert len(photos) >= 100
    data = SyntheticDefocus(photos, crop=96, seed=0)
    item = data[0]
    assert item["blur"].shape == item["sharp"].shape == (3, 96, 96)
    assert (item["blur"] - item["sharp"]).abs().mean() < 0.2
