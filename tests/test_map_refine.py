"""The defocus map's refinement (map_refine.py): values on synthetic photos, the guided
filter's identities, the fast filter's resampling, and that deblur returns the refined map."""

import dataclasses

import numpy as np
import pytest
import torch

from nrkdeblur.map_refine import block_means, confidence, grey, refine_map, upsample
from nrkdeblur.srgb import srgb_to_linear


def step_photo() -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """A 64 x 96 photo: grey 0.2 left of column 48, 0.8 right of it, both with a fine
    texture except a flat 16 x 16 patch on the right; and its raw map: 1 px left, 5 px
    right, with noise of +-0.5 px, and a wrong 0 in the flat patch (a guess)."""
    rng = np.random.default_rng(0)
    y = np.where(np.arange(96) < 48, 0.2, 0.8)[None, :] + rng.uniform(-0.05, 0.05, (64, 96))
    flat = (slice(24, 40), slice(64, 80))
    y[flat] = 0.8
    raw = np.where(np.arange(96) < 48, 1.0, 5.0)[None, :] + rng.uniform(-0.5, 0.5, (64, 96))
    raw[flat] = 0.0
    return np.repeat(y[..., None], 3, axis=2).astype(np.float32), raw.astype(np.float32), flat


def test_the_refined_map_follows_the_photos_edge_and_fills_its_flat_patch():
    pixels, raw, flat = step_photo()
    refined, c = refine_map(raw, pixels)
    assert c[flat][4:-4, 4:-4].max() < 0.01 and np.median(c[:, :40]) > 0.1  # flat: no confidence
    # filled from its textured neighbours (raw: 0; without the confidence the 0s pull it to 3)
    assert np.abs(refined[flat] - 5.0).max() < 0.5 and np.abs(refined[flat] - 5.0).mean() < 0.4
    left, right = refined[:, 4:40], refined[:, 84:92]  # 8 px or more from the edge and the patch
    assert np.abs(left - 1.0).mean() < 0.1 and np.abs(right - 5.0).mean() < 0.1
    assert left.std() < raw[:, 4:40].std() / 3  # the measurement noise averaged out
    # the step stays at the photo's edge: most of it between columns 47 and 48 on every row
    # (a Gaussian of sigma 4 px would spread it: 0.4 px there)
    assert (refined[:, 48] - refined[:, 47]).min() > 2.5


def test_a_constant_map_stays_constant_whatever_the_photo():
    pixels = np.random.default_rng(1).random((37, 53, 3), dtype=np.float32)
    pixels[10:30, 5:25] = 0.5  # a flat region too
    refined, _ = refine_map(np.full((37, 53), 2.5, np.float32), pixels)
    assert np.abs(refined - 2.5).max() < 1e-5


def test_a_photo_without_texture_keeps_its_map():
    raw = np.random.default_rng(2).random((20, 30)).astype(np.float32)
    refined, c = refine_map(raw, np.full((20, 30, 1), 0.4, np.float32))
    assert not c.any() and np.array_equal(refined, raw)


def test_confidence_is_a_quarter_at_the_median_texture_and_grows_with_it():
    slope = np.full(40, 0.01, np.float32)
    y = np.tile(np.cumsum(slope), (30, 1))  # a ramp: the same gradient everywhere
    assert confidence(y) == pytest.approx(0.25, abs=1e-5)
    slope[27:] = 0.02  # twice as steep on the right third: 4x the energy, the median unchanged
    c = confidence(np.tile(np.cumsum(slope), (30, 1)))
    assert c[:, :18] == pytest.approx(0.25, abs=2e-3) and c[:, 36:] == pytest.approx((4 / 5) ** 2, abs=2e-3)
    assert confidence(np.full((8, 8), 0.3, np.float32)).max() == 0.0


def test_blocks_and_their_bilinear_upsampling_reproduce_a_linear_ramp():
    """A block's mean of a ramp is the ramp at the block's centre; bilinear interpolation
    between centres gives the ramp back exactly (a half-block shift would not)."""
    rows, cols = np.mgrid[0:30, 0:41].astype(np.float64)
    ramp = 0.5 * rows - 0.25 * cols
    for s in (2, 4):
        back = upsample(block_means(ramp, s), s, ramp.shape)
        inner = (slice(s, 30 - 2 * s), slice(s, 41 - 2 * s))  # between the outer block centres
        assert np.abs(back[inner] - ramp[inner]).max() < 1e-5


def test_the_guide_of_linear_pixels_is_their_srgb_grey():
    p = np.random.default_rng(3).random((5, 6, 1), dtype=np.float32).repeat(3, axis=2)
    assert np.abs(grey(srgb_to_linear(p), linear=True) - p[..., 0]).max() < 1e-5
    assert refine_map(np.ones((5, 6)), p).map.shape == (5, 6)
    with pytest.raises(ValueError, match="differ in size"):
        refine_map(np.ones((5, 7)), p)


def test_deblur_returns_the_refined_map_of_the_networks_raw_map():
    from nrkdeblur.config import NRKConfig
    from nrkdeblur.forward import forward_maps
    from nrkdeblur.inference import InferenceOptions, deblur
    from nrkdeblur.model import NRKNet

    torch.manual_seed(0)
    model = NRKNet(NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum", focus_width=4)).eval()
    with torch.no_grad():  # a head that acts, not the zero start
        for p in model.focus.parameters():
            p.add_(0.3 * torch.randn_like(p))
    pixels, _, _ = step_photo()
    with torch.no_grad():
        raw = forward_maps(model, torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous(), True, False)
    raw = raw[0, 3].numpy()
    got = deblur(model, pixels, InferenceOptions(backend="torch"), defocus_map=True).defocus_map
    assert np.abs(got - refine_map(raw, pixels).map).max() < 1e-4
    assert np.abs(got - raw).max() > 0.05  # it did change the map
