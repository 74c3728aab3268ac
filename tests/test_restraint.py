"""--mask and --protect: where the network's change is kept (nrkdeblur/restraint.py), through
inference.deblur, tiles, --linear, the command line, `eval` and the Python API."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import nrkdeblur
from nrkdeblur.cli import main
from nrkdeblur.errors import SettingsError
from nrkdeblur.inference import InferenceOptions, deblur
from nrkdeblur.restraint import PROTECT_WIDTH, mask_from_array, protect_weight
from nrkdeblur.srgb import linear_to_srgb, srgb_to_linear
from nrkdeblur.weights import load_model
from test_cli import photo, run, weights  # noqa: F401 (weights: the tiny model's file, a fixture)
from test_imageio import exif_with

MAP_PER_RED = 12.0  # the fake network's defocus map: 12 px per unit of the input's red


def smooth_step(radius, limit):
    """The documented weight, written out here: 1 up to R - 2, 0 from R, u^2 (3 - 2u) between."""
    u = np.clip((limit - np.asarray(radius, dtype=np.float64)) / 2.0, 0, 1)
    return u * u * (3 - 2 * u)


def pointwise(model, x, defocus_map, coefficients):
    """A network whose every output pixel depends on its input pixel only: the image x^2, the
    defocus map MAP_PER_RED * red. Tiled equals whole for it up to float rounding."""
    parts = [x * x]
    if defocus_map:
        parts.append(MAP_PER_RED * x[:, :1])
    assert not coefficients
    return torch.cat(parts, dim=1)


@pytest.fixture
def fake_network(monkeypatch):
    import nrkdeblur.runtime as runtime

    monkeypatch.setattr(runtime, "forward_maps", pointwise)


@pytest.fixture(scope="module")
def model(weights):
    return load_model(weights)


def two_regions(height=40, width=64, seed=0):
    """Float RGB: the left half's red maps to 6.1-12 px (above R = 6), the right half's to
    0-3.6 px (below R - 2); green and blue random."""
    rng = np.random.default_rng(seed)
    x = rng.random((height, width, 3), dtype=np.float32)
    half = width // 2
    x[:, :half, 0] = 0.51 + 0.49 * x[:, :half, 0]
    x[:, half:, 0] = 0.3 * x[:, half:, 0]
    return x


def test_the_protect_weight_is_a_smooth_step_ending_at_R():
    r = torch.tensor([0.0, 3.0, 4.0, 4.5, 5.0, 5.5, 6.0, 6.01, 9.0])
    w = protect_weight(r, 6.0)
    assert PROTECT_WIDTH == 2.0
    assert np.allclose(w.numpy(), smooth_step(r.numpy(), 6.0), atol=1e-7)
    assert w[6] == 0 and w[7] == 0 and w[2] == 1 and w[4] == 0.5  # 0 from R on, 1 up to R - 2
    assert (w[1:] <= w[:-1]).all()  # never more change for more blur


def test_protect_keep_lifts_the_step_to_the_share_kept():
    r = torch.tensor([0.0, 4.0, 5.0, 6.0, 9.0])
    w = protect_weight(r, 6.0, keep=0.3)
    assert np.allclose(w.numpy(), 0.3 + 0.7 * smooth_step(r.numpy(), 6.0), atol=1e-7)
    assert w[0] == 1 and w[3] == pytest.approx(0.3) and w[4] == pytest.approx(0.3)  # K from R on, 1 below R - 2
    with pytest.raises(SettingsError, match="give protect"):
        InferenceOptions(protect_keep=0.5)  # K means nothing without R
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(SettingsError, match="share"):
            InferenceOptions(protect=6.0, protect_keep=bad)


def test_protect_leaves_regions_measured_above_R_as_they_are(fake_network, model):
    x = two_regions()
    full = deblur(model, x).image
    out = deblur(model, x, InferenceOptions(protect=6.0), defocus_map=True)
    assert np.array_equal(out.image[:, :32], x[:, :32])  # measured 6.1-12 px: the input
    assert np.allclose(out.image[:, 32:], full[:, 32:], atol=1e-6)  # 0-3.6 px: deblurred in full
    assert np.abs(full[:, 32:] - x[:, 32:]).mean() > 0.1
    from nrkdeblur.map_refine import refine_map  # protect reads the raw map; the refined one is returned

    assert np.allclose(out.defocus_map, refine_map(MAP_PER_RED * x[..., 0], x, False).map, atol=1e-5)
    ramp = x.copy()
    ramp[..., 0] = np.linspace(0.3, 0.55, 64, dtype=np.float32)  # 3.6 to 6.6 px: across the step
    k = smooth_step(MAP_PER_RED * ramp[..., :1], 6.0)
    got = deblur(model, ramp, InferenceOptions(protect=6.0, strength=0.8)).image
    assert np.allclose(got, ramp + 0.8 * k * (ramp * ramp - ramp), atol=1e-6)


def test_the_mask_blends_per_pixel_and_is_cut_with_the_tiles(fake_network, model):
    rng = np.random.default_rng(1)
    x = rng.random((64, 800, 3), dtype=np.float32)
    x[:, 400:, 0] *= 0.4  # the right half below R - 2 for protect, the left half across R
    mask = rng.random((64, 800), dtype=np.float32)
    options = dict(protect=5.0, protect_keep=0.2, strength=0.9)
    whole = deblur(model, x, InferenceOptions(**options), mask=mask).image
    k = mask[..., None] * (0.2 + 0.8 * smooth_step(MAP_PER_RED * x[..., :1], 5.0))
    assert np.allclose(whole, x + 0.9 * k * (x * x - x), atol=1e-6)
    calls = []
    tiled = deblur(model, x, InferenceOptions(tile=384, overlap=64, **options), mask=mask,
                   on_tile=lambda done, total: calls.append(total)).image
    assert calls[-1] == 3 and np.abs(tiled - whole).max() < 1e-5  # three tiles, the same photo


def test_with_linear_the_mask_blends_in_the_files_linear_space(fake_network, model):
    x = np.random.default_rng(2).random((40, 48, 3), dtype=np.float32)
    half = np.full((40, 48), 0.5, dtype=np.float32)
    out = deblur(model, x, InferenceOptions(linear=True), mask=half).image
    net = srgb_to_linear(linear_to_srgb(x) ** 2)  # the network sees and returns sRGB
    assert np.allclose(out, x + 0.5 * (net - x), atol=1e-5)


def test_masks_of_every_kind_read_as_grey_levels():
    grey = np.array([[0, 128, 255]], dtype=np.uint8)
    assert np.allclose(mask_from_array(grey), [[0, 128 / 255, 1]])
    assert np.allclose(mask_from_array((grey.astype(np.uint16) * 257)[..., None]), [[0, 128 / 255, 1]])
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    assert np.allclose(mask_from_array(rgb), [[0.299, 0.587, 0.114]], atol=1e-6)  # as Pillow's "L"
    assert np.allclose(mask_from_array(np.dstack([grey, grey])), mask_from_array(grey))  # alpha ignored
    assert np.array_equal(mask_from_array(np.array([[True, False]])), [[1.0, 0.0]])
    assert np.array_equal(mask_from_array(np.array([[-1.0, 2.0]])), [[0.0, 1.0]])
    with pytest.raises(SettingsError, match="HxW"):
        mask_from_array(np.zeros((2, 2, 5)))
    with pytest.raises(SettingsError, match="int32"):
        mask_from_array(np.zeros((2, 2), np.int32))
    with pytest.raises(SettingsError, match="above 0"):
        InferenceOptions(protect=0.0)


def grey_mask(path, size, value=255, mode="L", **save):
    """A mask file of one grey level, or of a function of the column when value is callable."""
    h, w = size
    a = np.broadcast_to(np.asarray(value(np.arange(w)) if callable(value) else value, dtype=np.uint8), (h, w))
    Image.fromarray(np.dstack([a] * 3) if mode == "RGB" else np.ascontiguousarray(a), mode).save(path, **save)
    return path


def pixels(path):
    return np.asarray(Image.open(path), dtype=np.int64)


def test_black_keeps_the_input_white_deblurs_half_masks_half(tmp_path, weights, model):
    src = photo(tmp_path / "in.png", size=(48, 64))
    common = ["--weights", weights, "--overwrite"]
    assert run(src, "-o", tmp_path / "plain.png", *common).exit_code == 0
    plain, a = pixels(tmp_path / "plain.png"), pixels(src)
    assert np.abs(plain - a).mean() > 1
    for name, value in [("black", 0), ("white", 255), ("half", lambda c: np.where(c < 32, 255, 0))]:
        r = run(src, "-o", tmp_path / f"{name}.png", *common, "--mask", grey_mask(tmp_path / f"m_{name}.png", (48, 64), value))
        assert r.exit_code == 0, r.output
    assert np.abs(pixels(tmp_path / "black.png") - a).max() <= 1  # black: the input
    assert np.array_equal(pixels(tmp_path / "white.png"), plain)  # white: as without a mask
    half = pixels(tmp_path / "half.png")
    assert np.array_equal(half[:, :32], plain[:, :32]) and np.abs(half[:, 32:] - a[:, 32:]).max() <= 1
    # 16-bit and RGB masks: the same grey levels, the same output
    grey16 = tmp_path / "m16.png"
    Image.fromarray(np.full((48, 64), 128 * 257, np.uint16)).save(grey16)
    rgb = grey_mask(tmp_path / "mrgb.png", (48, 64), 128, mode="RGB")
    for mask, out in [(grey16, "g16.png"), (rgb, "rgb.png"), (grey_mask(tmp_path / "m8.png", (48, 64), 128), "g8.png")]:
        assert run(src, "-o", tmp_path / out, *common, "--mask", mask).exit_code == 0
    g8 = pixels(tmp_path / "g8.png")
    assert np.array_equal(pixels(tmp_path / "g16.png"), g8) and np.array_equal(pixels(tmp_path / "rgb.png"), g8)
    net = deblur(model, a / np.float32(255)).image  # not clipped: the blend comes first
    assert np.abs(g8 - np.rint(np.clip(a / 255 + 128 / 255 * (net - a / 255), 0, 1) * 255)).max() <= 1  # grey blends


def test_a_mask_of_another_size_is_refused_in_one_line(tmp_path, weights):
    src = photo(tmp_path / "in.png", size=(48, 64))
    r = run(src, "-o", tmp_path / "o.png", "--weights", weights, "--mask", grey_mask(tmp_path / "m.png", (48, 60)))
    assert r.exit_code == 1 and not (tmp_path / "o.png").exists()
    assert "in.png: the mask m.png is 60 x 48 px, the photo 64 x 48 (after EXIF orientation): they must match" in r.stderr
    (tmp_path / "bad.png").write_bytes(b"not an image")
    r = run(src, "-o", tmp_path / "o.png", "--weights", weights, "--mask", tmp_path / "bad.png")
    assert r.exit_code == 2 and "mask" in r.output and "bad.png" in r.output and not (tmp_path / "o.png").exists()
    # a batch: one mask for every photo; the photo of another size fails, the others are done
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    photo(shoot / "a.png", size=(48, 64))
    photo(shoot / "b.png", size=(40, 56))
    photo(shoot / "turned.jpg", size=(64, 48), exif=exif_with(6), quality=95)  # upright: 48 high, 64 wide
    r = run(shoot, "-o", tmp_path / "out", "--weights", weights, "--mask", grey_mask(tmp_path / "m2.png", (48, 64), 0))
    assert r.exit_code == 1 and "1 failed" in r.stderr and "b.png: the mask m2.png is 64 x 48 px" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "turned.jpg"]
    assert np.abs(pixels(tmp_path / "out" / "a.png") - pixels(shoot / "a.png")).max() <= 1


def test_protect_on_the_command_line(tmp_path, weights, fake_network):
    x = two_regions(48, 64)
    src = tmp_path / "in.png"
    Image.fromarray(np.rint(x * 255).astype(np.uint8)).save(src)
    a = pixels(src)
    assert run(src, "-o", tmp_path / "p.png", "--weights", weights, "--protect", 6).exit_code == 0
    out = pixels(tmp_path / "p.png")
    assert np.array_equal(out[:, :32], a[:, :32])  # measured above 6 px: unchanged
    want = np.rint((a[:, 32:] / 255) ** 2 * 255)  # below 4 px: the (fake) network's output
    assert np.abs(out[:, 32:] - want).max() <= 1 and np.abs(want - a[:, 32:]).mean() > 10
    assert run(src, "-o", tmp_path / "k.png", "--weights", weights, "--protect", 6, "--protect-keep", 0.25).exit_code == 0
    kept = pixels(tmp_path / "k.png")  # above 6 px: a quarter of the change
    assert np.abs(kept[:, :32] - np.rint(a[:, :32] + 0.25 * ((a[:, :32] / 255) ** 2 * 255 - a[:, :32]))).max() <= 1
    assert np.array_equal(kept[:, 32:], out[:, 32:])  # below 4 px: as without the share
    r = run(src, "-o", tmp_path / "q.png", "--weights", weights, "--protect", 0)
    assert r.exit_code == 2 and "--protect" in r.output
    r = run(src, "-o", tmp_path / "q.png", "--weights", weights, "--protect-keep", 0.5)
    assert r.exit_code == 2 and "give --protect too" in r.output and not (tmp_path / "q.png").exists()
    r = run(src, "-o", tmp_path / "q.png", "--weights", weights, "--protect", 6, "--protect-keep", 1)
    assert r.exit_code == 2 and "--protect-keep" in r.output and not (tmp_path / "q.png").exists()
    assert f"R - {PROTECT_WIDTH:g}" in run("deblur", "--help").output  # the help states the step


def test_eval_scores_the_output_with_protect(tmp_path, weights, fake_network):
    for folder in ("blur", "sharp"):
        (tmp_path / folder).mkdir()
    x = two_regions(48, 64)
    Image.fromarray(np.rint(x * 255).astype(np.uint8)).save(tmp_path / "blur" / "p.png")
    Image.fromarray(np.rint(x ** 2 * 255).astype(np.uint8)).save(tmp_path / "sharp" / "p.png")  # the fake's output
    scores = {}
    for name, extra in [("plain", []), ("protect", ["--protect", "6"]), ("keep", ["--protect", "6", "--protect-keep", "0.5"])]:
        r = CliRunner().invoke(main, ["eval", str(tmp_path / "blur"), str(tmp_path / "sharp"), "--weights", str(weights),
                                      "--json", str(tmp_path / f"{name}.json"), *extra])
        assert r.exit_code == 0, r.output
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())[0]
    assert scores["plain"]["psnr_out"] > 45  # the output is the sharp image
    assert scores["protect"]["psnr_out"] < scores["plain"]["psnr_out"] - 10  # the left half kept blurry
    assert scores["protect"]["psnr_out"] + 4 < scores["keep"]["psnr_out"] < scores["plain"]["psnr_out"] - 4  # half of it
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "blur"), str(tmp_path / "sharp"), "--method", "identity",
                                  "--protect", "6"])
    assert r.exit_code == 2 and "--method nrknet" in r.output
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "blur"), str(tmp_path / "sharp"), "--protect-keep", "0.5"])
    assert r.exit_code == 2 and "give --protect too" in r.output


@pytest.fixture(scope="module")
def deblurrer(weights):
    return nrkdeblur.load(weights, device="cpu")


def test_the_python_api_takes_protect_and_a_mask_as_array_path_or_pil(tmp_path, deblurrer, model):
    a = np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    x = a / np.float32(255)
    grey = np.tile(np.linspace(0, 255, 56).astype(np.uint8), (40, 1))
    expected = deblur(model, x, InferenceOptions(protect=5.0), mask=grey / np.float32(255)).image
    want = np.rint(np.clip(expected, 0, 1) * 255)
    Image.fromarray(grey).save(tmp_path / "m.png")
    for mask in (grey, tmp_path / "m.png", str(tmp_path / "m.png"), Image.fromarray(grey)):
        assert np.abs(deblurrer.deblur(a, protect=5.0, mask=mask).astype(np.int64) - want).max() == 0
    assert not np.array_equal(deblurrer.deblur(a, protect=5.0), deblurrer.deblur(a))  # protect changes it here
    half = deblur(model, x, InferenceOptions(protect=5.0, protect_keep=0.5)).image
    assert np.abs(deblurrer.deblur(a, protect=5.0, protect_keep=0.5).astype(np.int64)
                  - np.rint(np.clip(half, 0, 1) * 255)).max() == 0
    assert not np.array_equal(half, deblur(model, x, InferenceOptions(protect=5.0)).image)
    with pytest.raises(SettingsError, match="the mask is 55 x 40 px"):
        deblurrer.deblur(a, mask=grey[:, :55])
    src = tmp_path / "in.png"
    Image.fromarray(a).save(src)
    out = deblurrer.deblur_file(src, tmp_path / "api.png", protect=5.0, mask=str(tmp_path / "m.png"))
    assert run(src, "-o", tmp_path / "cli.png", "--weights", weights_of(deblurrer), "--protect", 5,
               "--mask", tmp_path / "m.png").exit_code == 0
    assert np.array_equal(pixels(out), pixels(tmp_path / "cli.png")) and np.array_equal(pixels(out), want)
    out = nrkdeblur.deblur_file(src, tmp_path / "black.png", weights=weights_of(deblurrer), device="cpu",
                                mask=grey_mask(tmp_path / "black_mask.png", (40, 56), 0))
    assert np.abs(pixels(out) - a).max() <= 1


def weights_of(deblurrer):
    return deblurrer.options.inference.weights
