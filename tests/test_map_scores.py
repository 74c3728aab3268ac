"""Defocus-map scores (evaluate.py), the guided filter and the classical Zhuo & Sim map, and
the eval command's map figures recomputed from the maps."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.special import ndtr

from nrkdeblur.cli import main
from nrkdeblur.evaluate import affine_scores, fit_set, map_scores, spearman, textured, weighted_median
from nrkdeblur.guided_filter import guided_filter

ROOT = Path(__file__).resolve().parents[1]


# --- scores ----------------------------------------------------------------------------

def test_a_map_twice_the_truth_fits_exactly_and_ranks_perfectly():
    rng = np.random.default_rng(0)
    truths = [rng.random((6, 7)) * 5, rng.random((4, 9)) * 3]
    scale, constant = fit_set([2 * t for t in truths], truths)
    assert scale == pytest.approx(0.5)
    assert spearman(2 * truths[0], truths[0]) == pytest.approx(1.0)
    assert spearman(-truths[0], truths[0]) == pytest.approx(-1.0)


def test_a_constant_map_fits_no_better_than_the_best_constant():
    truths = [np.arange(12.0).reshape(3, 4), np.array([[1.0, 2.0], [2.0, 9.0]])]
    scale, constant = fit_set([np.full_like(t, 3.0) for t in truths], truths)
    assert scale * 3.0 == pytest.approx(constant)
    assert spearman(np.full((3, 4), 3.0), truths[0]) == 0.0  # a flat map ranks nothing
    assert spearman(truths[0], np.ones((3, 4))) is None  # constant truth: no correlation


def test_the_scale_and_constant_minimise_the_mean_of_the_images_errors():
    """Images of different sizes count equally: the fit weights each pixel by 1 / its
    image's pixel count, so s and c are the exact minimisers of the mean over images."""
    rng = np.random.default_rng(1)
    truths = [rng.random((3, 3)) * 4, rng.random((10, 10)) * 8]
    maps = [t * rng.uniform(0.5, 2.0, t.shape) for t in truths]
    scale, constant = fit_set(maps, truths)

    def per_image(s=None, c=None):
        return np.mean([np.abs((s * m if c is None else c) - t).mean() for m, t in zip(maps, truths)])

    grid = np.linspace(0, 3, 3001)
    assert per_image(s=scale) <= min(per_image(s=s) for s in grid) + 1e-12
    assert per_image(c=constant) <= min(per_image(c=c) for c in np.linspace(0, 8, 8001)) + 1e-12


def test_weighted_median_is_the_smallest_value_holding_half_the_weight():
    assert weighted_median(np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0])) == 2.0
    assert weighted_median(np.array([1.0, 5.0]), np.array([1.0, 3.0])) == 5.0
    assert weighted_median(np.array([1.0, 5.0]), np.array([1.0, 1.0])) == 1.0


def test_textured_pixels_are_where_the_sharp_image_has_gradient_energy():
    rng = np.random.default_rng(2)
    sharp = np.full((40, 40, 3), 128, np.uint8)
    sharp[:, :16] = rng.integers(0, 256, (40, 16, 1), dtype=np.uint8)  # texture in the left 16 columns
    mask = textured(sharp)
    assert mask[:, :15].all() and not mask[:, 24:].any()
    assert 0.5 <= mask.mean() <= 0.6  # at or above the median: about half
    truth = np.tile(np.arange(40.0), (40, 1))
    pred = truth.copy()
    pred[:, 20:] = pred[:, 20:][:, ::-1]  # wrong order only where the image is flat
    rho, rho_textured, mae = map_scores(pred, truth, sharp)
    assert rho_textured == pytest.approx(spearman(pred[mask], truth[mask])) and rho_textured > rho
    assert mae == pytest.approx(np.abs(pred - truth).mean())


def test_affine_scores_are_zero_for_an_affine_map_and_fit_l1_and_l2():
    rng = np.random.default_rng(3)
    truth = rng.random((30, 40))
    confident = rng.random((30, 40)) > 0.3
    pred = np.where(confident, (truth - 0.2) / -3.0, 99.0)  # any affine map, sign included
    assert affine_scores(pred, truth, confident) == pytest.approx((0, 0, 0), abs=1e-9)
    # four points on a line and one outlier 96 above it: the L1 line keeps the four
    x = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]])
    y = np.array([[0.0, 1.0, 2.0, 3.0, 100.0]])
    aiwe1, aiwe2, rank_error = affine_scores(x, y, np.ones_like(x, bool))
    assert aiwe1 == pytest.approx(96 / 5, rel=1e-9)
    a, b = np.polyfit(x.ravel(), y.ravel(), 1)
    assert aiwe2 == pytest.approx(np.sqrt(np.mean((y - a * x - b) ** 2)))
    assert rank_error == pytest.approx(0.0)


# --- guided filter ---------------------------------------------------------------------

def direct_guided_filter(I, p, r, eps, c):
    """The weighted guided filter from its definition, one window at a time."""
    H, W = I.shape
    coef = {}
    for y in range(H):
        for x in range(W):
            win = (slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1))
            w, i, q = c[win].ravel(), I[win].ravel(), p[win].ravel()
            if w.sum() == 0:
                continue
            # minimise sum w ((a i + b - q)^2 + eps a^2): the 2x2 normal equations
            A = np.array([[np.sum(w * i * i) + eps * w.sum(), np.sum(w * i)], [np.sum(w * i), w.sum()]])
            a, b = np.linalg.solve(A, [np.sum(w * i * q), np.sum(w * q)])
            coef[y, x] = (a, b, w.mean())
    out = np.full((H, W), np.nan)
    for y in range(H):
        for x in range(W):
            near = [coef[k] for k in coef if abs(k[0] - y) <= r and abs(k[1] - x) <= r]
            if near:
                out[y, x] = sum(m * (a * I[y, x] + b) for a, b, m in near) / sum(m for _, _, m in near)
    return out


def test_guided_filter_matches_its_definition_with_and_without_confidence():
    rng = np.random.default_rng(4)
    I, p = rng.random((7, 9)), rng.random((7, 9))
    ones = np.ones_like(I)
    assert np.allclose(guided_filter(I, p, 2, 0.01), direct_guided_filter(I, p, 2, 0.01, ones), atol=1e-10)
    c = (rng.random((7, 9)) > 0.6) * rng.uniform(0.5, 2, (7, 9))
    assert np.allclose(guided_filter(I, p, 1, 0.05, c), direct_guided_filter(I, p, 1, 0.05, c), atol=1e-10,
                       equal_nan=True)


def test_guided_filter_keeps_an_edge_of_its_guide_and_leaves_unreached_pixels_unknown():
    guide = np.zeros((20, 20))
    guide[:, 10:] = 1.0
    src = guide * 3.0 + 1.0  # follows the guide: the local linear model holds exactly
    assert np.allclose(guided_filter(guide, src, 4, 1e-6), src, atol=1e-4)
    known = np.zeros((20, 20))
    known[:2, :2] = 1.0
    out = guided_filter(guide, src, 2, 1e-2, confidence=known)
    assert np.isfinite(out[:5, :5]).all() and np.isnan(out[6:, :]).all()  # 2r = 4 px of reach


# --- the classical map -----------------------------------------------------------------

@pytest.mark.parametrize("sigma", [1.5, 3.0, 5.0])
@pytest.mark.parametrize("centre", [31.0, 31.25, 31.5])
def test_zhuo_sim_reads_the_sigma_of_a_gaussian_blurred_step(sigma, centre):
    """A step blurred by a Gaussian of known sigma, sampled at pixel centres with the edge on
    a centre, a quarter and half way between: the map reads sqrt(2) sigma (the RMS radius)
    within 7 % (measured: at most 5.7 %, the half-way edge at sigma 1.5)."""
    pytest.importorskip("skimage")
    from nrkdeblur.zhuo_sim import defocus_map

    row = 0.2 + 0.6 * ndtr((np.arange(64) - centre) / sigma)
    image = np.repeat(np.repeat(row[None, :, None], 48, 0), 3, 2)
    radius = defocus_map(image)
    assert radius.shape == (48, 64) and radius.dtype == np.float32
    assert np.allclose(radius, np.sqrt(2) * sigma, rtol=0.07)


def test_zhuo_sim_ranks_two_blurs_and_reads_nothing_without_edges():
    pytest.importorskip("skimage")
    from nrkdeblur.zhuo_sim import defocus_map

    x = np.arange(96)
    image = np.zeros((48, 96))
    image[:, :48] = 0.2 + 0.6 * ndtr((x[:48] - 24) / 1.0)  # a mild and a strong blur side by side
    image[:, 48:] = 0.8 - 0.6 * ndtr((x[48:] - 72) / 4.0)
    radius = defocus_map(image)
    assert radius[:, 20:29].mean() == pytest.approx(np.sqrt(2) * 1.0, rel=0.15)
    assert radius[:, 68:77].mean() == pytest.approx(np.sqrt(2) * 4.0, rel=0.15)
    assert not defocus_map(np.full((32, 32, 3), 0.5)).any()


# --- through the command ---------------------------------------------------------------

def rendered_set(root: Path) -> Path:
    from nrkdeblur.data import RenderSettings, write_frozen_set

    rng = np.random.default_rng(5)
    (root / "src").mkdir()
    for i in range(3):
        blocks = rng.integers(0, 256, (8 + i, 10, 3), dtype=np.uint8).repeat(6, 0).repeat(6, 1)
        Image.fromarray(blocks).save(root / "src" / f"s{i}.png")
    write_frozen_set(sorted((root / "src").glob("*.png")), root / "set", seed=3,
                     settings=RenderSettings(max_coc_radius=4))
    return root / "set"


def test_eval_classical_map_scores_recomputed_from_the_maps(tmp_path):
    """The JSON's map figures are those of the maps: Spearman (all, textured), raw MAE, one
    scale per set and the best constant, recomputed here from the classical maps."""
    pytest.importorskip("skimage")
    from nrkdeblur.data import read_radius_map
    from nrkdeblur.zhuo_sim import defocus_map

    folder = rendered_set(tmp_path)
    r = CliRunner().invoke(main, ["eval", str(folder), "--method", "identity", "--map-method", "classical",
                                  "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert "classical map" in r.stdout and "const MAE" in r.stdout
    rows = json.loads((tmp_path / "s.json").read_text())
    maps, truths = [], []
    for row in rows[:-1]:
        blurry = np.asarray(Image.open(folder / "blur" / f"{row['name']}.png"))
        sharp = np.asarray(Image.open(folder / "sharp" / f"{row['name']}.png"))
        truth = read_radius_map(folder / "radius" / f"{row['name']}.tiff")
        pred = defocus_map(blurry.astype(np.float32) / 255)
        rho, rho_textured, mae = map_scores(pred, truth, sharp)
        assert (row["map_spearman"], row["map_spearman_textured"]) == pytest.approx((rho, rho_textured))
        assert row["map_mae"] == pytest.approx(mae)
        maps.append(pred)
        truths.append(truth)
    scale, constant = fit_set(maps, truths)
    for row, pred, truth in zip(rows, maps, truths):
        assert row["map_scale"] == pytest.approx(scale)
        assert row["map_mae_fit"] == pytest.approx(np.abs(scale * pred - truth).mean())
        assert row["map_mae_constant"] == pytest.approx(np.abs(constant - truth).mean())
    assert rows[-1]["map_mae_fit"] == pytest.approx(np.mean([row["map_mae_fit"] for row in rows[:-1]]))


def test_eval_network_map_fit_is_never_worse_than_the_map_as_it_is(tmp_path):
    from nrkdeblur.config import NRKConfig
    from nrkdeblur.model import NRKNet
    from nrkdeblur.weights import save_weights

    folder = rendered_set(tmp_path)
    weights = tmp_path / "tiny.safetensors"
    save_weights(NRKNet(NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum")), weights)
    r = CliRunner().invoke(main, ["eval", str(folder), "--weights", str(weights), "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    mean = json.loads((tmp_path / "s.json").read_text())[-1]
    assert mean["map_mae_fit"] <= mean["map_mae"] + 1e-9  # s = 1 is one of the scales tried
    assert mean["map_spearman_textured"] is not None and mean["map_mae_constant"] > 0


def test_pixel4_script_scores_both_maps_against_an_affine_truth(tmp_path):
    pytest.importorskip("skimage")
    import torch

    from test_cli import TINY

    import nrkdeblur
    from nrkdeblur.model import NRKNet
    from nrkdeblur.weights import save_weights
    from nrkdeblur.zhuo_sim import defocus_map

    torch.manual_seed(0)
    save_weights(NRKNet(TINY), tmp_path / "tiny.safetensors")
    (tmp_path / "pairs" / "blur").mkdir(parents=True)
    (tmp_path / "gt").mkdir()
    rng = np.random.default_rng(6)
    photo = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8).repeat(6, 0).repeat(6, 1)
    Image.fromarray(photo).save(tmp_path / "pairs" / "blur" / "001.png")
    gt = rng.integers(0, 256, (48, 54), dtype=np.uint8)
    Image.fromarray(gt).save(tmp_path / "gt" / "001_gt.png")
    script = ROOT / "scripts" / "pixel4-map-scores.py"
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "pairs"), str(tmp_path / "gt"),
                        "--weights", str(tmp_path / "tiny.safetensors"), "--json", str(tmp_path / "p.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    records = {rec["map"]: rec for rec in json.loads((tmp_path / "p.json").read_text())}
    pixels = photo.astype(np.float32) / 255
    maps = {"classical": defocus_map(pixels),
            "network": nrkdeblur.load(tmp_path / "tiny.safetensors", device="cpu").deblur(pixels, defocus_map=True)[1]}
    for method, pred in maps.items():
        expect = affine_scores(pred, gt / 255, gt > 0)
        got = records[method]
        assert (got["aiwe1"], got["aiwe2"], got["one_minus_abs_spearman"]) == pytest.approx(expect)
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "pairs"), str(tmp_path / "none")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no 001_gt.png" in r.stderr and "Traceback" not in r.stderr


def test_pixel4_script_checks_that_larger_truth_values_mean_more_blur(tmp_path):
    """--check-truth: the detail the blurry photo keeps per band of GT values, here 1.00 in
    the band where it equals the sharp photo and near 0 where it is strongly blurred."""
    from scipy.ndimage import gaussian_filter

    for d in ("pairs/blur", "pairs/sharp", "gt"):
        (tmp_path / d).mkdir(parents=True)
    sharp = np.random.default_rng(7).random((120, 160))
    blurry = sharp.copy()
    blurry[:, 80:] = gaussian_filter(sharp, 4.0)[:, 80:]
    gt = np.where(np.arange(160) < 80, 40, 200).astype(np.uint8)[None].repeat(120, 0)
    for name, a in (("pairs/blur", blurry), ("pairs/sharp", sharp)):
        Image.fromarray(np.round(np.repeat(a[..., None], 3, 2) * 255).astype(np.uint8)).save(tmp_path / name / "005.png")
    Image.fromarray(gt).save(tmp_path / "gt" / "005_gt.png")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "pixel4-map-scores.py"), str(tmp_path / "pairs"),
                        str(tmp_path / "gt"), "--check-truth"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bands = dict(item.split(":") for item in r.stdout.split(": ", 1)[1].split())
    assert list(bands) == ["32", "192"] and float(bands["32"]) == 1.0 and float(bands["192"]) < 0.1
