"""Tests of the renderer's lens aberrations (data/lens.py) and camera pipeline (data/camera.py)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import fields, replace

import numpy as np
import pytest
from scipy import ndimage

from nrkdeblur.data import RECIPES, Aperture, RenderSettings, render_pair
from nrkdeblur.data.camera import CameraLook, bayer_mosaic, demosaic, develop, sharpen, tone_curve
from nrkdeblur.data.defocus import render_layers
from nrkdeblur.data.lens import Lens, PsfShape, curved_coc, lens_psf, psf_rms_radius
from nrkdeblur.srgb import srgb_to_linear

# The renders of nrkdeblur 2026-12-04 (before lens aberrations and the camera pipeline existed):
# sha256 of (blurry, sharp, coc, kernel_rms) and the generator's next number after the render.
PINNED = {
    ("training", 0): ("545d29786c9e579c", 0.8214549748737889),
    ("training", 1): ("482a148f8e1693b9", 0.3324490385512786),
    ("training", 2): ("4c55de3b8878181c", 0.4410699460150458),
    ("out-of-recipe", 0): ("b224450b4bf5a2be", 0.02734311485806562),
    ("out-of-recipe", 1): ("6b6a7c7ced8ceccd", 0.8500803238802243),
    ("out-of-recipe", 2): ("1729280809d0d962", 0.44409717802803605),
    ("mixed", 0): ("1e131a79912f7589", 0.4837484174096196),
    ("mixed", 1): ("b00723c95f0a89c5", 0.6124445256487527),
    ("mixed", 2): ("924ffdc2d8e8d69e", 0.6009149783111255),
}
CASES = {"training": RECIPES["training"], "out-of-recipe": RECIPES["out-of-recipe"],
         "mixed": replace(RenderSettings(), p_soft_source=0.5, p_highlights=0.5, p_high_iso=0.5)}
NEW_SHARES = ("p_spherical", "p_onion", "p_astigmatism", "p_coma", "p_field_curvature", "p_chromatic",
              "p_mosaic", "p_raw_noise", "p_tone_curve", "p_sharpen")
CLEAN = RenderSettings(p_noise=0.0, quantize=False, p_jpeg=0.0)


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A random HxWx3 float32 image with structure at several scales (as in test_data.py)."""
    rng = np.random.default_rng(seed)
    image = rng.random((h, w, 3))
    image = 0.5 * image + 0.5 * ndimage.gaussian_filter(image, sigma=(3, 3, 0))
    return np.clip(image, 0, 1).astype(np.float32)


def render_digest(settings: RenderSettings, seed: int) -> tuple[str, float]:
    rng = np.random.default_rng([seed, 11])
    pair = render_pair(textured(72, 88, 7), rng, settings, border=4)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in pair)).hexdigest()[:16]
    return digest, rng.random()


# ----------------------------------------------------------------------------
# share 0 renders as before; share > 0 changes the render


def test_every_new_share_defaults_to_zero() -> None:
    defaults = {f.name: f.default for f in fields(RenderSettings)}
    assert all(defaults[name] == 0.0 for name in NEW_SHARES)
    assert {f.name for f in fields(RenderSettings) if f.name.startswith("p_")} >= set(NEW_SHARES)


@pytest.mark.parametrize("key", sorted(PINNED))
def test_zero_shares_render_bit_identically_and_draw_nothing(key: tuple[str, int]) -> None:
    name, seed = key
    assert render_digest(CASES[name], seed) == PINNED[key]


@pytest.mark.parametrize("share", NEW_SHARES)
def test_each_share_changes_the_render(share: str) -> None:
    settings = replace(CASES["training"], **{share: 1.0})
    changed = [render_digest(settings, seed)[0] != PINNED[("training", seed)][0] for seed in range(3)]
    assert all(changed)


def test_camera_recipe_renders_valid_pairs() -> None:
    recipe = RECIPES["camera"]
    assert all(getattr(recipe, name) > 0 for name in NEW_SHARES)
    sharp = textured(64, 64, 3)
    for seed in range(3):
        pair = render_pair(sharp, np.random.default_rng(seed), recipe)
        assert 0 <= pair.blurry.min() and pair.blurry.max() <= 1
        assert np.isfinite(pair.kernel_rms).all() and pair.kernel_rms.max() <= recipe.max_coc_radius
        assert pair.coc.max() <= recipe.max_coc_radius + 1e-4


# ----------------------------------------------------------------------------
# lens


def radial_profile(psf: np.ndarray) -> np.ndarray:
    """Mean PSF value per integer distance from the centre."""
    n = psf.shape[0] // 2
    y, x = np.mgrid[-n : n + 1, -n : n + 1]
    rings = np.rint(np.hypot(y, x)).astype(int)
    return np.bincount(rings.ravel(), psf.ravel()) / np.bincount(rings.ravel())


def test_spherical_aberration_bright_rim_on_one_side_of_focus_bright_centre_on_the_other() -> None:
    shape = PsfShape(spherical=0.3)
    behind, front = lens_psf(10.0, Aperture(), shape, 4, 20.0), lens_psf(-10.0, Aperture(), shape, 4, 20.0)
    for psf in (behind, front):
        assert psf.sum() == pytest.approx(1.0, abs=1e-5) and psf.min() >= 0
    pb, pf = radial_profile(behind), radial_profile(front)
    assert pb[0] > 1.5 * pb[8]  # behind the focal plane: bright centre fading out
    assert pf[6] > 1.5 * pf[0]  # in front: a bright rim around a dim centre
    assert behind.shape[0] > front.shape[0]  # the rim's rays land farther out behind
    plain = radial_profile(lens_psf(10.0, Aperture(), PsfShape(), 4, 20.0))
    assert plain[0] == pytest.approx(plain[7], rel=0.02)  # the bare disk is flat


def test_traced_psf_of_a_bare_disk_matches_the_aperture_psf() -> None:
    """The ray tracer with a tiny aberration lands where the supersampled aperture PSF is."""
    traced = lens_psf(8.0, Aperture(), PsfShape(spherical=1e-9), 4, 20.0)
    plain = lens_psf(8.0, Aperture(), PsfShape(), 4, 20.0)
    assert traced.shape == plain.shape
    assert np.abs(traced - plain).sum() < 0.02
    assert psf_rms_radius(traced) == pytest.approx(psf_rms_radius(plain), rel=0.01)


def second_moments(psf: np.ndarray) -> tuple[float, float]:
    n = psf.shape[0] // 2
    r = np.arange(-n, n + 1)
    return float((psf.sum(axis=0) * r**2).sum()), float((psf.sum(axis=1) * r**2).sum())  # along x, along y


def test_astigmatism_stretches_along_the_radius_behind_focus_and_across_it_in_front() -> None:
    shape = PsfShape(astigmatism=0.4, angle=0.0)  # the frame's centre lies toward -x
    mx, my = second_moments(lens_psf(8.0, Aperture(), shape, 4, 20.0))
    assert mx > 1.5 * my
    mx, my = second_moments(lens_psf(-8.0, Aperture(), shape, 4, 20.0))
    assert my > 1.5 * mx
    turned = lens_psf(8.0, Aperture(), shape._replace(angle=math.pi / 2), 4, 20.0)
    assert second_moments(turned)[1] > 1.5 * second_moments(turned)[0]


def test_coma_has_a_tail_away_from_the_centre_and_no_shift() -> None:
    psf = lens_psf(8.0, Aperture(), PsfShape(coma=0.2, angle=0.0), 4, 20.0)
    n = psf.shape[0] // 2
    x = np.arange(-n, n + 1)
    column = psf.sum(axis=0)
    assert abs((column * x).sum()) < 0.05  # centred: coma's shift is distortion, not blur
    assert (column * x**3).sum() > 5.0  # skewed outward (+x)
    assert abs((psf.sum(axis=1) * x**3).sum()) < 0.5  # symmetric across the radius


def test_onion_rings_ripple_the_bokeh() -> None:
    plain = radial_profile(lens_psf(12.0, Aperture(), PsfShape(), 4, 20.0))[:11]
    rings = radial_profile(lens_psf(12.0, Aperture(), PsfShape(onion=0.3, rings=4), 4, 20.0))[:11]
    turns = lambda p: int((np.diff(np.sign(np.diff(p))) != 0).sum())  # noqa: E731
    assert turns(rings) >= 4 and np.ptp(rings) > 0.3 * rings.mean()
    assert np.ptp(plain) < 0.05 * plain.mean()


def edge_width(row: np.ndarray) -> int:
    """Pixels between 10 % and 90 % of a rising edge."""
    lo, hi = row.min(), row.max()
    t = (row - lo) / (hi - lo)
    return int(((t > 0.1) & (t < 0.9)).sum())


def test_chromatic_aberration_blurs_each_colour_by_its_own_radius() -> None:
    image = np.zeros((64, 96, 3), dtype=np.float32)
    image[:, 48:] = 0.8  # a grey step edge
    coc = np.full((64, 96), 5.0, dtype=np.float32)
    lens = Lens(Aperture(), chromatic=3.0)  # red 8 px, green 5 px, blue 2 px
    out, radius, rms = render_layers(srgb_to_linear(image), coc, Aperture(), CLEAN, lens)
    widths = [edge_width(out[32, 20:76, ch]) for ch in range(3)]
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] == pytest.approx(2 * 0.8 * 8, abs=2) and widths[2] == pytest.approx(2 * 0.8 * 2, abs=2)
    # the maps are green's
    assert radius[32, 48] == pytest.approx(5.0) and rms[32, 48] == pytest.approx(psf_rms_radius(
        lens_psf(5.0, Aperture(), PsfShape(), 4, 20.0)), rel=1e-5)


def test_position_dependent_psf_and_its_rms_map() -> None:
    """Corners get their own PSF; the RMS map is that of the bilinear blend of the corners' PSFs."""
    h, w = 80, 80
    coc = np.full((h, w), 8.0, dtype=np.float32)
    lens = Lens(Aperture(), astigmatism=0.5, coma=0.15, centre=(40.0, 40.0), half_diagonal=40 * math.sqrt(2))
    image = np.full((h, w, 3), 0.2, dtype=np.float32)
    _, _, rms = render_layers(image, coc, Aperture(), CLEAN, lens)
    corner = lens_psf(8.0, Aperture(), lens.shape_at(0, 0), 4, 20.0)
    assert rms[0, 0] == pytest.approx(psf_rms_radius(corner), rel=1e-5)
    assert rms[0, 0] > 1.05 * psf_rms_radius(lens_psf(8.0, Aperture(), PsfShape(), 4, 20.0))  # stretched
    shapes = [lens.shape_at(y, x) for y, x in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1))]
    m2 = np.array([psf_rms_radius(lens_psf(8.0, Aperture(), s, 4, 20.0)) ** 2 for s in shapes])
    ty = tx = 40 / 79  # bilinear weights of pixel (40, 40) between the corners
    weights = np.array([(1 - ty) * (1 - tx), (1 - ty) * tx, ty * (1 - tx), ty * tx])
    assert rms[40, 40] == pytest.approx(math.sqrt(weights @ m2), rel=1e-5)
    # a point light near the top-left corner comes out stretched toward that corner (diagonal)
    dot = np.zeros((h, w, 3), dtype=np.float32)
    dot[14, 14] = 1.0
    spot, _, _ = render_layers(dot, coc, Aperture(), CLEAN, lens)
    y, x = np.mgrid[0:h, 0:w]
    s = spot[..., 1] / spot[..., 1].sum()
    dy, dx = y - (s * y).sum(), x - (s * x).sum()
    along, across = ((dx + dy) ** 2 * s).sum(), ((dx - dy) ** 2 * s).sum()
    assert along > 1.3 * across


def test_field_curvature_adds_blur_toward_the_corners() -> None:
    lens = Lens(Aperture(), curvature=4.0, centre=(20.0, 30.0), half_diagonal=math.hypot(20, 30))
    coc = curved_coc(np.zeros((40, 60), dtype=np.float32), lens, 20.0)
    assert coc[20, 30] == 0.0 and coc[0, 0] == pytest.approx(4.0, rel=1e-5)
    assert coc[0, 30] == pytest.approx(4.0 * (20 / math.hypot(20, 30)) ** 2, rel=1e-4)
    assert curved_coc(np.full((40, 60), 19.0, dtype=np.float32), lens, 20.0).max() == 20.0  # within the margin


# ----------------------------------------------------------------------------
# camera


def test_mosaic_and_demosaic_of_a_flat_colour_is_exact() -> None:
    flat = np.broadcast_to(np.float32([0.7, 0.2, 0.45]), (9, 12, 3))
    np.testing.assert_allclose(demosaic(bayer_mosaic(flat)), flat, atol=1e-6)
    raw = bayer_mosaic(textured(8, 8))
    assert raw.shape == (8, 8)
    np.testing.assert_array_equal(demosaic(raw)[0::2, 0::2, 0], raw[0::2, 0::2])  # R sites keep R
    np.testing.assert_array_equal(demosaic(raw)[1::2, 1::2, 2], raw[1::2, 1::2])  # B sites keep B


def test_sharpening_overshoots_at_an_edge() -> None:
    step = np.full((16, 32, 3), 0.3, dtype=np.float32)
    step[:, 16:] = 0.6
    out = sharpen(step, 1.0, 1.5)
    assert out[8, 16:20].max() > 0.65 and out[8, 12:16].min() < 0.25  # halos both sides
    np.testing.assert_allclose(out[8, :4], 0.3, atol=1e-3)  # flat parts keep their value


def test_raw_noise_grows_with_signal_and_is_correlated_after_demosaic() -> None:
    settings = RenderSettings()
    look = CameraLook(iso=1600)
    spreads = []
    for level in (0.05, 0.5):
        flat = np.full((128, 128, 3), level, dtype=np.float32)
        noisy = develop(flat, np.random.default_rng(0), look, settings)  # sRGB
        linear = srgb_to_linear(noisy)[..., 1]
        spreads.append(float(linear.std()))
        residual = linear - linear.mean()
    assert spreads[1] > 1.5 * spreads[0]  # shot noise: variance grows with the signal
    neighbours = np.corrcoef(residual[:, :-1].ravel(), residual[:, 1:].ravel())[0, 1]
    assert neighbours > 0.2  # demosaicking spreads each raw sample's noise to its neighbours
    plain = develop(np.full((128, 128, 3), 0.5, dtype=np.float32), np.random.default_rng(0), CameraLook(),
                    replace(settings, p_noise=1.0))
    r = plain[..., 1] - plain[..., 1].mean()
    assert abs(np.corrcoef(r[:, :-1].ravel(), r[:, 1:].ravel())[0, 1]) < 0.05  # noise on RGB: white


def test_tone_curve_is_an_s_curve_applied_to_the_target_too() -> None:
    y = np.linspace(0, 1, 101, dtype=np.float32)
    curve = tone_curve(y, 0.6)
    assert curve[0] == 0 and curve[-1] == pytest.approx(1.0) and curve[50] == pytest.approx(0.5)
    assert np.all(np.diff(curve) > 0) and curve[25] < y[25] and curve[75] > y[75]
    photo = textured(48, 48, 5)
    pair = render_pair(photo, np.random.default_rng(1), replace(CLEAN, p_tone_curve=1.0))
    assert not np.allclose(pair.sharp, photo)
    y, t = photo[10, 10, 0], pair.sharp[10, 10, 0]
    strength = (t - y) / (y * (1 - y) * (2 * y - 1))  # the curve's strength, from one pixel
    assert 0.2 <= strength <= 0.8
    np.testing.assert_allclose(pair.sharp, tone_curve(photo, strength), atol=1e-5)  # the whole target
