"""What inference.deblur returns, against explicit computations: the defocus map is the
model's map of the same forward pass, --strength blends input and output linearly, and
automatic tiles are planned and run with the user's overlap. Through the command line and
the API too, which must hand these on unchanged."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import nrkdeblur
from nrkdeblur.config import NRKConfig
from nrkdeblur.inference import InferenceOptions, choose_tile, deblur
from nrkdeblur.model import NRKNet
from nrkdeblur.weights import load_model, save_weights
from test_cli import photo, run

PLAIN = NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum", identity_start=True)


def acting(config: NRKConfig, seed: int = 0) -> NRKNet:
    """A tiny model near the identity start, whose change to a photo (up to ~50 levels,
    ~5 % of it clipped) and whose map are far from zero."""
    torch.manual_seed(seed)
    model = NRKNet(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module", params=[0, 3], ids=["kernels", "focus-head"])
def weights(request, tmp_path_factory):
    """Weights without a focus head (the map is the kernels' RMS radius) and with one."""
    path = tmp_path_factory.mktemp("w") / "acting.safetensors"
    save_weights(acting(dataclasses.replace(PLAIN, focus_width=request.param)), path)
    return path


def models_map(model: NRKNet, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image, defocus map) of one forward pass of the whole photo, by the model's own methods;
    the map refined with the photo as guide, as every way of deblurring returns it (map_refine)."""
    from nrkdeblur.map_refine import refine_map

    x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = model(x, return_gamma=True)
        raw = model.defocus_map(out, x.shape[-2:])[0, 0].numpy()
    return out.image[0].permute(1, 2, 0).numpy(), refine_map(raw, pixels, False).map


def test_the_map_is_the_models_defocus_map_of_the_same_forward(tmp_path, weights):
    model = load_model(weights)
    src = photo(tmp_path / "in.png", size=(45, 70))
    pixels = np.asarray(Image.open(src), dtype=np.float32) / 255
    image, want = models_map(model, pixels)
    assert np.ptp(want) > 0.1  # a map with something to get wrong
    got = deblur(model, pixels, defocus_map=True)
    assert np.abs(got.defocus_map - want).max() < 1e-4 and np.abs(got.image - image).max() < 1e-5
    r = run(src, "-o", tmp_path / "out.png", "--weights", weights, "--defocus-map", tmp_path / "maps")
    assert r.exit_code == 0, r.output
    assert np.abs(np.asarray(Image.open(tmp_path / "maps" / "in_defocus.tiff")) - want).max() < 1e-4
    _, api_map = nrkdeblur.load(weights, device="cpu").deblur(np.asarray(Image.open(src)), defocus_map=True)
    assert np.abs(api_map - want).max() < 1e-4


def test_half_strength_is_the_mean_of_input_and_output_within_one_level(tmp_path, weights):
    src = photo(tmp_path / "in.png", size=(48, 64))
    for strength in (0.5, 1):
        r = run(src, "-o", tmp_path / f"s{strength}.png", "--weights", weights, "--strength", strength)
        assert r.exit_code == 0, r.output
    x, full, half = (np.asarray(Image.open(p), dtype=float) for p in (src, tmp_path / "s1.png", tmp_path / "s0.5.png"))
    inside = (full > 0) & (full < 255)  # where the full output was not clipped
    assert inside.mean() > 0.9 and np.abs(full - x)[inside].max() > 20  # a change worth halving
    assert np.abs(half - (x + full) / 2)[inside].max() <= 1


def test_automatic_tiles_are_planned_and_run_with_the_users_overlap(tmp_path, weights, monkeypatch):
    """The tile chosen from the memory free depends on the overlap it must leave; the
    planning and the run both take the user's (fixed on 2026-12-01, guarded here)."""
    import nrkdeblur.inference as inference

    budget = 160_000 * 368  # the memory of a 160,000-pixel tile of this width-4 model
    monkeypatch.setattr(inference, "available_memory", lambda device: 3 * budget)
    seen = []
    real = inference.run_tiled
    monkeypatch.setattr(inference, "run_tiled", lambda fn, x, tile, overlap, *a, **k:
                        seen.append((tile, overlap)) or real(fn, x, tile, overlap, *a, **k))
    model = load_model(weights)
    cpu = torch.device("cpu")
    wanted = choose_tile(model, 400, 1000, cpu, budget=budget, overlap=32)
    assert wanted is not None and wanted != choose_tile(model, 400, 1000, cpu, budget=budget, overlap=192)
    pixels = np.random.default_rng(0).random((400, 1000, 3), dtype=np.float32)
    deblur(model, pixels, InferenceOptions(overlap=32))
    assert seen == [(wanted, 32)]
    src = photo(tmp_path / "in.png", size=(400, 1000))
    r = run(src, "-o", tmp_path / "out.png", "--weights", weights, "--tile-overlap", 32)
    assert r.exit_code == 0 and seen[1:] == [(wanted, 32)], r.output
