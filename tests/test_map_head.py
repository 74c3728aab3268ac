"""The map head (map_head.py) of the shipped weights: what its map reads on blur of known
size, that it never changes the image, its spread, its loss."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve

from nrkdeblur.data.defocus import aperture_psf, psf_rms_radius
from nrkdeblur.evaluate import textured
from nrkdeblur.imageio import read_photo
from nrkdeblur.inference import InferenceOptions, deblur
from nrkdeblur.map_head import laplace_loss, map_input_channels
from nrkdeblur.weights import default_weights, load_model

SHARP = Path(__file__).resolve().parents[1] / "benchmarks" / "kodak24-defocus" / "sharp" / "kodim05.png"


@pytest.fixture(scope="module")
def model():
    m = load_model(default_weights())
    assert m.map_head is not None, "the shipped weights carry a map head"
    return m


def disk_blur(pixels: np.ndarray, radius: float) -> tuple[np.ndarray, float]:
    """The photo blurred by the renderer's disk aperture of that radius (in linear light,
    as the renderer blurs), and the disk's RMS radius: the map's unit."""
    psf = aperture_psf(radius)
    linear = np.where(pixels <= 0.04045, pixels / 12.92, ((pixels + 0.055) / 1.055) ** 2.4)
    blurred = np.stack([convolve(linear[..., c], psf, mode="reflect") for c in range(3)], axis=2)
    srgb = np.where(blurred <= 0.0031308, 12.92 * blurred, 1.055 * blurred ** (1 / 2.4) - 0.055)
    return np.round(np.clip(srgb, 0, 1) * 255).astype(np.float32) / 255, psf_rms_radius(psf)


@pytest.mark.parametrize("radius", [2.0, 4.0, 7.0])
def test_a_disk_blur_of_known_radius_reads_its_rms_radius(model, radius):
    """Median of the map over the textured pixels within 10 % of the disk's RMS radius
    (R / sqrt 2), for a photo blurred all over by one disk (measured 2026-12-05: -4.4 %,
    +0.1 %, +2.3 %; the map in the disk's radius instead of its RMS radius would be +41 %)."""
    sharp = read_photo(SHARP).pixels[100:356, 100:356]
    blurry, truth = disk_blur(sharp, radius)
    measured = deblur(model, blurry, defocus_map=True).defocus_map
    mask = textured(np.round(sharp * 255).astype(np.uint8))
    assert abs(np.median(measured[mask]) / truth - 1) < 0.10, (np.median(measured[mask]), truth)


def test_the_map_ranks_three_disks(model):
    sharp = read_photo(SHARP).pixels[100:356, 100:356]
    medians = [np.median(deblur(model, disk_blur(sharp, r)[0], defocus_map=True).defocus_map) for r in (1.5, 4, 8)]
    assert medians[0] < medians[1] < medians[2]


def test_the_map_head_never_changes_the_image(model):
    pixels = read_photo(SHARP).pixels[:192, :256]
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    with torch.inference_mode():
        plain, measured = model(x), model(x, measure=True)
    assert torch.equal(plain.image, measured.image)
    assert not torch.equal(plain.radius, measured.radius)  # the map is the map head's
    assert measured.spread is not None and plain.spread is None
    with_map = deblur(model, pixels, InferenceOptions(), defocus_map=True)
    assert np.array_equal(with_map.image, deblur(model, pixels).image)


def test_the_spread_is_larger_where_blur_cannot_be_seen(model):
    """A photo half flat grey and half texture, blurred alike: the head expects larger errors
    on the flat half (measured 2026-12-05: 4.7 times)."""
    sharp = read_photo(SHARP).pixels[100:356, 100:356].copy()
    sharp[:, :128] = 0.5
    blurry, _ = disk_blur(sharp, 3.0)
    x = torch.from_numpy(blurry).permute(2, 0, 1)[None]
    with torch.inference_mode():
        spread = model(x, measure=True).spread[0, 0].numpy()
    assert spread[:, 16:112].mean() > 2.5 * spread[:, 144:240].mean()


def test_the_laplace_loss_and_the_inputs_layout():
    mu, s = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    radius = torch.full((1, 1, 2, 2), math.e - 1)  # log(1 + r) = 1
    assert laplace_loss(mu, s, radius).item() == pytest.approx(1.0)
    assert laplace_loss(mu, torch.full_like(s, math.log(2)), radius).item() == pytest.approx(0.5 + math.log(2))
    assert map_input_channels(32, 3) == 3 * 33 + 7
