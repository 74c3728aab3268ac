"""The Python API: nrkdeblur.load().deblur() on arrays and PIL images, nrkdeblur.deblur_file()."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import nrkdeblur
from nrkdeblur.imageio import read_photo
from nrkdeblur.inference import deblur
from nrkdeblur.weights import load_model
from test_cli import REPO, photo, weights  # noqa: F401 (weights: the tiny model's file, a fixture)


@pytest.fixture(scope="module")
def deblurrer(weights):
    return nrkdeblur.load(weights, device="cpu")


def network(weights, pixels: np.ndarray) -> np.ndarray:
    """The network's output for float pixels HxWxC, clipped: what the API must return."""
    return np.clip(deblur(load_model(weights), pixels).image, 0, 1)


RNG = np.random.default_rng(0)


def test_importing_the_package_stays_light():
    code = "import sys, nrkdeblur; print('torch' in sys.modules, callable(nrkdeblur.load))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.stdout.split() == ["False", "True"], r.stderr


def test_uint8_rgb_array(deblurrer, weights):
    a = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    out = deblurrer.deblur(a)
    assert out.dtype == np.uint8 and out.shape == a.shape
    want = np.rint(network(weights, a / np.float32(255)) * 255)
    assert np.abs(out - want).max() == 0
    assert np.abs(out.astype(int) - a).mean() > 1  # it did change the photo


def test_uint16_array_keeps_16_bits(deblurrer, weights):
    a = RNG.integers(0, 65536, (40, 56, 3), dtype=np.uint16)
    out = deblurrer.deblur(a)
    assert out.dtype == np.uint16 and out.shape == a.shape
    want = np.rint(network(weights, a / np.float32(65535)) * 65535)
    assert np.abs(out.astype(np.int64) - want).max() <= 1
    assert len(np.unique(out % 257)) > 10  # real 16-bit levels


@pytest.mark.parametrize("shape", [(40, 56), (40, 56, 1)])
def test_grey_arrays_keep_their_shape(deblurrer, weights, shape):
    a = RNG.integers(0, 256, shape, dtype=np.uint8)
    out = deblurrer.deblur(a)
    assert out.shape == shape and out.dtype == np.uint8
    grey = a.reshape(40, 56, 1) / np.float32(255)
    assert np.abs(out.reshape(40, 56, 1) - np.rint(network(weights, grey) * 255)).max() == 0


def test_float_array_and_alpha_passes_through(deblurrer, weights):
    a = RNG.random((40, 56, 4))  # float64 RGBA
    out = deblurrer.deblur(a)
    assert out.dtype == np.float64 and out.shape == a.shape
    assert np.array_equal(out[..., 3], a[..., 3])
    assert np.allclose(out[..., :3], network(weights, a[..., :3].astype(np.float32)), atol=1e-6)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I;16", "P"])
def test_pil_images_come_back_as_pil_images(deblurrer, weights, mode):
    rgba = Image.fromarray(RNG.integers(0, 256, (40, 56, 4), dtype=np.uint8))
    im = rgba.convert("RGB").convert(mode) if mode != "RGBA" else rgba
    if mode == "I;16":
        im = Image.fromarray(RNG.integers(0, 65536, (40, 56), dtype=np.uint16))
    im.info["icc_profile"] = b"profile"
    out = deblurrer.deblur(im)
    assert isinstance(out, Image.Image) and out.size == im.size and out.info["icc_profile"] == b"profile"
    assert out.mode == {"P": "RGB"}.get(mode, mode)  # a palette cannot hold the result
    if mode == "RGBA":
        assert np.array_equal(np.asarray(out)[..., 3], np.asarray(im)[..., 3])
    if mode == "RGB":
        want = np.rint(network(weights, np.asarray(im) / np.float32(255)) * 255)
        assert np.abs(np.asarray(out) - want).max() == 0


@pytest.mark.parametrize("kind", ["uint8", "uint16", "pil"])
def test_strength_zero_returns_the_input(deblurrer, kind):
    a = RNG.integers(0, 256 if kind != "uint16" else 65536, (40, 56, 3)).astype(np.uint16 if kind == "uint16" else np.uint8)
    image = Image.fromarray(a) if kind == "pil" else a
    out = np.asarray(deblurrer.deblur(image, strength=0.0))
    assert np.abs(out.astype(np.int64) - a).max() <= 1
    assert np.abs(np.asarray(deblurrer.deblur(image)).astype(np.int64) - a).mean() > 1  # strength 1 changes it


def test_defocus_map_on_request(deblurrer):
    a = RNG.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    out, defocus = deblurrer.deblur(a, defocus_map=True)
    assert out.shape == a.shape and defocus.shape == (45, 70) and defocus.dtype == np.float32
    assert np.isfinite(defocus).all() and defocus.min() >= 0


def test_tiles_and_bad_inputs(deblurrer, monkeypatch):
    import nrkdeblur.inference as inference

    calls = []
    real = inference.run_tiled
    monkeypatch.setattr(inference, "run_tiled", lambda fn, x, tile, *a, **k: calls.append(tile) or real(fn, x, tile, *a, **k))
    a = RNG.integers(0, 256, (40, 800, 3), dtype=np.uint8)
    assert deblurrer.deblur(a, tile=384).shape == a.shape and calls == [(384, 384)]
    with pytest.raises(ValueError, match="at least 384"):
        deblurrer.deblur(a, tile=100)
    with pytest.raises(ValueError, match="strength"):
        deblurrer.deblur(a, strength=1.5)
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        deblurrer.deblur(a.astype(np.int32))
    with pytest.raises(ValueError, match="HxW"):
        deblurrer.deblur(a[..., None])


def test_deblur_file_is_what_the_command_line_writes(tmp_path, weights, deblurrer):
    from test_cli import run

    src = photo(tmp_path / "in.png")
    out = nrkdeblur.deblur_file(src, tmp_path / "api.png", weights=weights, device="cpu")
    assert out == tmp_path / "api.png"
    assert run(src, "-o", tmp_path / "cli.png", "--weights", weights).exit_code == 0
    assert np.array_equal(read_photo(out).pixels, read_photo(tmp_path / "cli.png").pixels)
    assert deblurrer.deblur_file(src) == tmp_path / "in_sharp.png"  # the command line's default name
    with pytest.raises(FileExistsError):
        deblurrer.deblur_file(src, out)
    deblurrer.deblur_file(src, out, overwrite=True, strength=0.0, defocus_map_dir=tmp_path / "maps")
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(src)))
    assert (tmp_path / "maps" / "in_defocus.tiff").is_file()
    with pytest.raises(nrkdeblur.api.ImageError, match="cannot write .xyz"):
        deblurrer.deblur_file(src, tmp_path / "x.xyz")


def test_linear_pixels_are_srgb_encoded_for_the_network_and_decoded_back(deblurrer, weights):
    from nrkdeblur.srgb import linear_to_srgb, srgb_to_linear

    a = RNG.random((40, 56, 3)).astype(np.float32)
    got = deblurrer.deblur(a, linear=True)
    want = srgb_to_linear(deblur(load_model(weights), linear_to_srgb(a)).image)  # decoding clips to [0, 1]
    assert np.abs(got - want).max() < 1e-5
    assert np.abs(got - deblurrer.deblur(a)).max() > 0.05  # not what the network gives the pixels as sRGB


def test_bad_values_types_and_empty_images_are_refused_before_any_work(deblurrer, monkeypatch):
    import torch

    import nrkdeblur.api as api

    def ran(*args, **kwargs):
        raise AssertionError("the network ran on an image that must be refused first")

    monkeypatch.setattr(api, "deblur", ran)
    a = RNG.random((40, 56, 3))
    for value in (np.nan, np.inf):
        bad = a.copy()
        bad[3, 4, 1] = value
        with pytest.raises(ValueError, match="^image holds NaN or infinite values$"):
            deblurrer.deblur(bad)
    with pytest.raises(ValueError, match=r"^a float image must be in \[0, 1\], this one spans 0 to 255 "):
        deblurrer.deblur(np.linspace(0, 255, 40 * 56 * 3).reshape(40, 56, 3))
    out_of_range = a.copy()
    out_of_range[0, 0, :2] = -0.25, 1.5
    with pytest.raises(ValueError, match=r"spans -0.25 to 1.5 "):
        deblurrer.deblur(out_of_range)
    for kind, image in (("list", a.tolist()), ("torch.Tensor", torch.from_numpy(a))):
        with pytest.raises(TypeError, match=f"^image must be a numpy array or a PIL image, not {kind}$"):
            deblurrer.deblur(image)
    for empty in (np.zeros((0, 56, 3), np.uint8), np.zeros((40, 0)), Image.new("RGB", (0, 0))):
        with pytest.raises(ValueError, match=r"^image is empty \("):
            deblurrer.deblur(empty)


def test_a_shipped_model_by_name_is_what_the_command_line_runs(tmp_path, weights):
    """model= takes a shipped model's name or a file; the API and the CLI resolve it alike."""
    from nrkdeblur.weights import WeightsError, shipped_weights
    from test_cli import run

    assert nrkdeblur.load(model="default", device="cpu").options.inference.weights == shipped_weights("default")
    src = photo(tmp_path / "in.png", size=(48, 64))
    nrkdeblur.deblur_file(src, tmp_path / "api.png", model=weights, device="cpu")
    assert run(src, "-o", tmp_path / "cli.png", "--model", weights).exit_code == 0
    assert np.array_equal(read_photo(tmp_path / "api.png").pixels, read_photo(tmp_path / "cli.png").pixels)
    with pytest.raises(WeightsError, match="no shipped model has that name"):
        nrkdeblur.load(model="fastest")
    with pytest.raises(ValueError, match="not both"):
        nrkdeblur.load(weights, model="default")
