"""Tiled inference with the shipped weights equals whole-image inference; memory stays bounded."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nrkdeblur.imageio import read_photo
from nrkdeblur.inference import DEFAULT_OVERLAP, choose_tile, deblur
from nrkdeblur.weights import default_weights, load_model

PHOTO = Path(__file__).resolve().parents[1] / "benchmarks" / "kodak24-defocus" / "blur" / "kodim05.png"


@pytest.fixture(scope="module")
def model():
    return load_model(default_weights())


def test_tiled_equals_untiled_within_one_level(model):
    pixels = read_photo(PHOTO).pixels  # a real photo with synthetic defocus, 500 x 500
    whole = deblur(model, pixels, tile=None, defocus=True)
    tiled = deblur(model, pixels, tile=256, overlap=DEFAULT_OVERLAP, defocus=True)
    assert np.abs(np.clip(tiled.image, 0, 1) - np.clip(whole.image, 0, 1)).max() < 1 / 255
    assert np.abs(tiled.defocus - whole.defocus).max() < 0.05 * max(whole.defocus.max(), 1)


def test_tile_choice_follows_the_memory_budget(model):
    cpu = torch.device("cpu")
    assert choose_tile(model, 500, 500, cpu, budget=1 << 30) is None  # fits: whole
    side = choose_tile(model, 6000, 4000, cpu, budget=256 << 20)
    assert side is not None and side % 16 == 0 and 256 <= side < 4000


def test_a_24_megapixel_photo_stays_in_bounded_memory(tmp_path):
    """A tiny model isolates what tiling keeps: one tile's work plus the photo itself."""
    code = """
import resource, numpy as np, torch
from nrkdeblur.config import NRKConfig
from nrkdeblur.model import NRKNet
from nrkdeblur.inference import deblur
torch.manual_seed(0)
model = NRKNet(NRKConfig(width=4, num_atoms=4, atoms_per_channel=False, mixing="sum")).eval()
img = np.random.default_rng(0).random((4000, 6000, 3), dtype=np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
deblur(model, img, tile=512, overlap=64)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    growth_mb = float(out.stdout.strip().splitlines()[-1])
    photo_mb = 4000 * 6000 * 3 * 4 / 2**20  # the float32 photo: 275 MB
    assert growth_mb < 2.5 * photo_mb, growth_mb  # output + blending, not a whole-photo forward (~10 GB)
