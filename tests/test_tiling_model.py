"""Tiled inference with the shipped weights equals whole-image inference; memory stays bounded."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nrkdeblur.imageio import read_photo
from nrkdeblur import inference
from nrkdeblur.inference import (DEFAULT_OVERLAP, MIN_TILE, InferenceOptions, bytes_per_pixel, choose_tile, deblur,
                                 processed_pixels)
from nrkdeblur.tiling import tile_spans
from nrkdeblur.weights import default_weights, load_model

PHOTO = Path(__file__).resolve().parents[1] / "benchmarks" / "kodak24-defocus" / "blur" / "kodim05.png"


@pytest.fixture(scope="module")
def model():
    return load_model(default_weights())


def test_tiled_equals_untiled_within_one_level(model):
    pixels = read_photo(PHOTO).pixels  # a real photo with synthetic defocus, 500 x 500
    whole = deblur(model, pixels, InferenceOptions(tile=None), defocus_map=True)
    tiled = deblur(model, pixels, InferenceOptions(tile=MIN_TILE, overlap=DEFAULT_OVERLAP), defocus_map=True)  # 2 x 2 tiles
    assert np.abs(np.clip(tiled.image, 0, 1) - np.clip(whole.image, 0, 1)).max() < 1 / 255
    assert np.abs(tiled.defocus_map - whole.defocus_map).max() < 0.05 * max(whole.defocus_map.max(), 1)
    # the map measures the blur as well in tiles as whole (true radius: the set's radius/ map)
    from nrkdeblur.data import read_radius_map
    from nrkdeblur.evaluate import map_scores

    truth = read_radius_map(PHOTO.parents[1] / "radius" / "kodim05.tiff")
    (rho_whole, _, mae_whole), (rho_tiled, _, mae_tiled) = map_scores(whole.defocus_map, truth), map_scores(tiled.defocus_map, truth)
    assert abs(rho_tiled - rho_whole) < 0.01 and abs(mae_tiled - mae_whole) < 0.05


@pytest.mark.parametrize("height, width, tile", [(500, 500, MIN_TILE), (301, 457, None), (700, 333, 320)])
def test_processed_pixels_are_what_the_tiles_feed_the_network(model, monkeypatch, height, width, tile):
    """bench's end-to-end MACs count these pixels: every tile as the network pads it."""
    seen = []
    monkeypatch.setattr(inference, "runner_for", lambda *a: lambda t: seen.append(t.shape[-2:]) or
                        torch.zeros(1, 3, *t.shape[-2:]))
    pixels = np.zeros((height, width, 3), np.float32)
    options = InferenceOptions(tile=tile, overlap=DEFAULT_OVERLAP if tile != 320 else 64)
    deblur(model, pixels, options)
    m = model.config.multiple
    fed = sum(max(-(-h // m) * m, 2 * m) * max(-(-w // m) * m, 2 * m) for h, w in seen)
    assert processed_pixels(model, height, width, options) == fed
    assert (tile is None) == (len(seen) == 1)


def test_tiled_equals_untiled_with_a_mask_and_protect(model):
    """Each tile takes --protect's weight from its own map, which differs from the whole
    photo's by up to 0.08 px near the seams; where that lands on the step and the network
    changes a pixel a lot, the outputs differ by a few levels (kodim05: 30 of 250,000
    pixels above one level at R = 6, at most 4.4 levels). The rest stays within one level."""
    pixels = read_photo(PHOTO).pixels[:384]  # 384 x 500: two tiles side by side
    mask = np.tile(np.linspace(0, 1, 500, dtype=np.float32), (384, 1))
    whole = deblur(model, pixels, InferenceOptions(protect=6.0), mask=mask).image
    tiled = deblur(model, pixels, InferenceOptions(protect=6.0, tile=MIN_TILE), mask=mask).image
    levels = np.abs(np.clip(tiled, 0, 1) - np.clip(whole, 0, 1)).max(axis=2) * 255
    assert (levels > 1).mean() < 1e-3 and levels.mean() < 0.02 and levels.max() < 8
    changed = np.abs(np.clip(whole, 0, 1) - pixels).max(axis=2) > 1 / 255
    assert 0.05 < changed.mean() < 0.5  # protect and the mask hold back most of the change, not all


def test_tile_choice_follows_the_memory_budget(model):
    cpu = torch.device("cpu")
    assert choose_tile(model, 500, 500, cpu, budget=1 << 30) is None  # fits: whole
    th, tw = choose_tile(model, 4000, 6000, cpu, budget=256 << 20)
    assert th % 16 == 0 and tw % 16 == 0 and 256 <= th < 4000 and 256 <= tw < 6000
    assert th * tw * bytes_per_pixel(model) <= 256 << 20
    th, tw = choose_tile(model, 4000, 6000, cpu, budget=512 << 20)
    oh, ow = choose_tile(model, 4000, 6000, cpu, budget=512 << 20, backend="onnxruntime")
    assert oh * ow * bytes_per_pixel(model, "onnxruntime") <= 512 << 20 and oh * ow < th * tw  # more bytes per pixel


def test_tile_shape_minimises_the_pixels_processed(model):
    """A 4000 x 3000 photo: 2 x 5 tiles instead of 3 x 4 squares of the budget's side."""
    cpu = torch.device("cpu")
    budget = int(1264 * 1264 * bytes_per_pixel(model))  # a square tile of 1264 fits
    th, tw = choose_tile(model, 3000, 4000, cpu, budget=budget)
    assert (th, tw) == (1616, 976)
    rows, cols = tile_spans(3000, th, DEFAULT_OVERLAP, 16), tile_spans(4000, tw, DEFAULT_OVERLAP, 16)
    assert len(rows) * len(cols) == 10  # 15.8 MP processed; squares of 1264: 3 x 4 = 19.2 MP
    for spans in (rows, cols):  # neighbours still share the full overlap
        assert all(a1 - b0 >= DEFAULT_OVERLAP for (_, a1), (b0, _) in zip(spans, spans[1:]))


def test_a_24_megapixel_photo_stays_in_bounded_memory(tmp_path):
    """A tiny model isolates what tiling keeps: one tile's work plus the photo itself."""
    code = """
import resource, numpy as np, torch
from nrkdeblur.config import NRKConfig
from nrkdeblur.model import NRKNet
from nrkdeblur.inference import InferenceOptions, deblur
torch.manual_seed(0)
model = NRKNet(NRKConfig(width=4, num_atoms=4, atoms_per_channel=False, mixing="sum")).eval()
img = np.random.default_rng(0).random((4000, 6000, 3), dtype=np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
deblur(model, img, InferenceOptions(tile=512, overlap=64))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    growth_mb = float(out.stdout.strip().splitlines()[-1])
    photo_mb = 4000 * 6000 * 3 * 4 / 2**20  # the float32 photo: 275 MB
    assert growth_mb < 2.5 * photo_mb, growth_mb  # output + blending, not a whole-photo forward (~10 GB)


def test_a_focus_head_tiles_like_the_rest_of_the_network():
    """The head's blend and its measured map come out of tiles as out of the whole photo."""
    from nrkdeblur.config import NRKConfig
    from nrkdeblur.model import NRKNet

    torch.manual_seed(0)
    model = NRKNet(NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum", focus_width=4)).eval()
    with torch.no_grad():  # a head that acts, not the zero start
        for p in model.focus.parameters():
            p.add_(0.3 * torch.randn_like(p))
    pixels = read_photo(PHOTO).pixels
    whole = deblur(model, pixels, InferenceOptions(tile=None), defocus_map=True)
    tiled = deblur(model, pixels, InferenceOptions(tile=MIN_TILE, overlap=DEFAULT_OVERLAP), defocus_map=True)
    assert np.abs(whole.image - pixels).max() > 10 / 255  # it changes the photo
    assert np.abs(tiled.image - whole.image).max() < 1 / 255
    assert np.abs(tiled.defocus_map - whole.defocus_map).max() < 0.01 * max(whole.defocus_map.max(), 1)
