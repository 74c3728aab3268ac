"""Evaluation: metrics match scikit-image, the eval command, baselines; convert, render, bench."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from nrkdeblur import bench
from nrkdeblur.cli import main
from nrkdeblur.evaluate import psnr, ssim
from nrkdeblur.model import count_parameters

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def test_ssim_and_psnr_match_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-25, 25, a.shape), 0, 255).astype(np.uint8)
    assert abs(ssim(a, b) - metrics.structural_similarity(a, b, channel_axis=-1, data_range=255)) < 1e-6
    assert abs(psnr(a, b) - metrics.peak_signal_noise_ratio(a, b, data_range=255)) < 1e-6
    assert abs(ssim(a[..., 0], b[..., 0]) - metrics.structural_similarity(a[..., 0], b[..., 0], data_range=255)) < 1e-6


def pairs(root: Path, n: int = 3) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    for d in ("blur", "sharp", "pred"):
        (root / d).mkdir(parents=True)
    for i in range(n):
        sharp = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        blur = np.clip(sharp.astype(int) + rng.integers(-40, 40, sharp.shape), 0, 255).astype(np.uint8)
        Image.fromarray(sharp).save(root / "sharp" / f"im{i}.png")
        Image.fromarray(blur).save(root / "blur" / f"im{i}.png")
        Image.fromarray(sharp).save(root / "pred" / f"im{i}.png")  # a perfect "prediction"
    return root / "blur", root / "sharp"


def test_eval_command_prints_a_table_and_writes_csv_and_json(tmp_path):
    blur, sharp = pairs(tmp_path)
    r = CliRunner().invoke(main, ["eval", str(blur), str(sharp), "--method", "identity",
                                  "--csv", str(tmp_path / "s.csv"), "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert "mean" in r.stdout and "im2" in r.stdout
    rows = json.loads((tmp_path / "s.json").read_text())
    assert [row["name"] for row in rows] == ["im0", "im1", "im2", "mean"]
    assert all(row["psnr_in"] == row["psnr_out"] for row in rows)  # identity
    assert (tmp_path / "s.csv").read_text().splitlines()[0].startswith("name,psnr_in,ssim_in")


def test_eval_reads_existing_predictions(tmp_path):
    blur, sharp = pairs(tmp_path)
    r = CliRunner().invoke(main, ["eval", str(blur), str(sharp), "--pred", str(tmp_path / "pred"),
                                  "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    mean = json.loads((tmp_path / "s.json").read_text())[-1]
    assert mean["psnr_out"] == float("inf") and mean["ssim_out"] == pytest.approx(1.0)
    r = CliRunner().invoke(main, ["eval", str(blur), str(sharp), "--pred", str(tmp_path / "pred"), "--linear"])
    assert r.exit_code == 2 and "--pred scores finished outputs" in r.output  # the flag would be ignored


def test_eval_without_matching_names_is_one_clear_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "x.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b" / "y.png")
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "a"), str(tmp_path / "b"), "--method", "identity"])
    assert r.exit_code == 1 and "have no partner" in r.output and "Traceback" not in r.output


def disk_blurred_pairs(root: Path) -> tuple[Path, Path]:
    """One blocky photo and its blur by the renderer's disk of radius 1.5 px."""
    from scipy.ndimage import convolve

    from nrkdeblur.data.defocus import aperture_psf

    sharp = np.random.default_rng(1).random((12, 14, 3)).repeat(5, 0).repeat(5, 1)
    psf = aperture_psf(1.5)
    blur = np.stack([convolve(sharp[..., c], psf, mode="reflect") for c in range(3)], axis=-1)
    for name, a in (("blur", blur), ("sharp", sharp)):
        (root / name).mkdir()
        Image.fromarray(np.round(a * 255).astype(np.uint8)).save(root / name / "p.png")
    return root / "blur", root / "sharp"


@pytest.mark.parametrize("method", ["unsharp", "richardson-lucy"])
def test_classical_baselines_sharpen_a_disk_blur(tmp_path, method):
    pytest.importorskip("skimage")
    blur, sharp = disk_blurred_pairs(tmp_path)
    r = CliRunner().invoke(main, ["eval", str(blur), str(sharp), "--method", method, "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    row = json.loads((tmp_path / "s.json").read_text())[0]
    assert row["psnr_in"] == pytest.approx(19.83, abs=0.01)  # the blur, scored against the sharp photo
    assert row["psnr_out"] > row["psnr_in"] + 0.2 and row["ssim_out"] > row["ssim_in"]  # measured +0.48, +0.29 dB
    r = CliRunner().invoke(main, ["eval", str(blur), str(sharp), "--method", method, "--linear",
                                  "--json", str(tmp_path / "l.json")])
    assert r.exit_code == 0, r.output
    linear = json.loads((tmp_path / "l.json").read_text())[0]
    assert linear["psnr_in"] == row["psnr_in"] and linear["psnr_out"] != row["psnr_out"]


def test_eval_runs_the_network_by_default(tmp_path):
    from test_cli import TINY

    from nrkdeblur.evaluate import to_uint8
    from nrkdeblur.inference import deblur
    from nrkdeblur.model import NRKNet
    from nrkdeblur.weights import load_model, save_weights

    torch.manual_seed(0)
    save_weights(NRKNet(TINY), tmp_path / "tiny.safetensors")
    blur, sharp = pairs(tmp_path, n=2)
    r = CliRunner().invoke(main, ["eval", str(blur), str(sharp), "--weights", str(tmp_path / "tiny.safetensors"),
                                  "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert "nrknet" in r.stdout  # the table's title names the method
    rows = json.loads((tmp_path / "s.json").read_text())
    model = load_model(tmp_path / "tiny.safetensors")
    for row in rows[:2]:
        b = np.asarray(Image.open(blur / f"{row['name']}.png"))
        s = np.asarray(Image.open(sharp / f"{row['name']}.png"))
        out = to_uint8(deblur(model, b.astype(np.float32) / 255).image)
        assert row["psnr_out"] == pytest.approx(psnr(out, s), abs=1e-9)
        assert row["ssim_out"] == pytest.approx(ssim(out, s), abs=1e-9)
        assert row["psnr_out"] != row["psnr_in"]


def test_render_command_writes_a_reproducible_frozen_set(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(src / "p.png")
    for out in ("v1", "v2"):
        r = CliRunner().invoke(main, ["render", str(src), "-o", str(tmp_path / out), "--seed", "7"])
        assert r.exit_code == 0, r.output
    a = np.asarray(Image.open(tmp_path / "v1" / "blur" / "p.png"))
    assert a.shape == (64, 80, 3)
    assert np.array_equal(a, np.asarray(Image.open(tmp_path / "v2" / "blur" / "p.png")))


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="needs ../shared/reference (the authors' checkpoint format)")
def test_convert_command_reproduces_the_authors_output(tmp_path):
    out = tmp_path / "paper.safetensors"
    r = CliRunner().invoke(main, ["convert", str(REFERENCE / "NRKNet_official_format_random.pth"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    from nrkdeblur.weights import load_model

    io = torch.load(REFERENCE / "official_io.pt", weights_only=True)
    with torch.no_grad():
        assert (load_model(out)(io["input"]).image - io["output"]).abs().max() < 1e-4


def test_convert_command_refuses_a_bad_file(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"not a checkpoint")
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "x.pth"), "-o", str(tmp_path / "o.safetensors")])
    assert r.exit_code == 1 and "cannot read as a PyTorch checkpoint" in r.output
    assert not (tmp_path / "o.safetensors").exists()


def test_bench_measures_the_operator_ratio_and_counts_macs():
    op = bench.rkr_vs_explicit(J=6, side=64)
    assert op["S"] == 11 and op["ratio"] > 1
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert bench.count_macs(conv, torch.rand(1, 3, 10, 12)) == 8 * 3 * 9 * 10 * 12
    up = torch.nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1, bias=False)
    assert bench.count_macs(up, torch.rand(1, 4, 5, 6)) == 4 * 2 * 16 * 5 * 6


def test_bench_throughput_tiling_check_and_plot(tmp_path):
    """The bench's pieces on small inputs: the product path vs a plain call, tiled vs
    whole with the shipped weights, and a plot with a bar per measured figure."""
    from nrkdeblur.weights import default_weights, load_model

    t = bench.throughput("cpu", height=64, width=96, weights=str(default_weights()))
    assert t["seconds"] > 0 and t["plain_nchw_seconds"] > 0 and t["gmacs"] > 0
    shipped = load_model(default_weights())  # the row names what was measured
    assert (t["width"], t["parameters"]) == (shipped.config.width, count_parameters(shipped))
    assert bench.tiled_vs_whole(str(default_weights()), side=384, tile=256) < 1.0  # levels
    results = {"machine": bench.machine(), "rkr": {"ratio": 100.0, "S": 39}, "throughput": [t],
               "memory": [{"megapixels": mp, "peak_rss_mb": 100.0 * mp, "seconds": mp} for mp in (2, 12, 24)]}
    img = bench.plot(results)
    bars = np.asarray(img)[:, 250:255]
    orange = np.all(bars == (230, 120, 40), axis=-1).any(axis=1)
    assert img.mode == "RGB" and orange.sum() > 3 * 10  # three memory bars drawn


def test_bench_fresh_processes_run_the_product_path(tmp_path):
    """The memory and command-line figures come from child processes that run today's
    inference and CLI: a child left on an older signature fails here, not in a 15-minute run."""
    m = bench.tiled_peak_memory(0.05)
    assert m["megapixels"] == pytest.approx(0.05, rel=0.02) and m["tile"] is None and m["peak_rss_mb"] > 50
    assert m["allocator"] in ("mimalloc", "system")
    photo = tmp_path / "p.jpg"
    assert bench.synthetic_photo(photo, 0.05) == (193, 257)
    r = bench.command_line(photo)
    assert r["model"] == "default" and r["seconds"] > 0 and r["peak_rss_mb"] > 50
    assert (tmp_path / "out-torch-default.jpg").stat().st_size > 0


def test_map_scores_rank_correlation_and_error_in_pixels():
    from nrkdeblur.evaluate import map_scores

    true = np.repeat(np.arange(8, dtype=np.float32)[None], 5, axis=0)
    assert map_scores(true, true) == (1.0, None, 0.0)  # no sharp image: no textured pixels
    rho, _, mae = map_scores(0.5 * true**2, true)  # monotone: same ranks, wrong scale
    assert rho == pytest.approx(1.0) and mae == pytest.approx(np.abs(0.5 * true**2 - true).mean())
    rho, _, _ = map_scores(true[:, ::-1].copy(), true)
    assert rho == pytest.approx(-1.0)
    assert map_scores(true, np.zeros_like(true))[0] is None  # constant truth: no correlation
    assert map_scores(np.ones_like(true), true)[0] == 0.0  # a flat map ranks nothing


def test_eval_scores_sets_worst_image_and_defocus_map(tmp_path):
    """A set folder with radius/ gets the map scored, each score recomputed here from the
    network's map and the true radius; the summary names the worst image, not the best."""
    from scipy.stats import spearmanr

    from nrkdeblur.config import NRKConfig
    from nrkdeblur.data import RenderSettings, read_radius_map, write_frozen_set
    from nrkdeblur.inference import deblur
    from nrkdeblur.model import NRKNet
    from nrkdeblur.weights import load_model, save_weights

    rng = np.random.default_rng(2)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(src / f"s{i}.png")
    write_frozen_set(sorted(src.glob("*.png")), tmp_path / "set", seed=3, settings=RenderSettings(max_coc_radius=4))
    weights = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    save_weights(NRKNet(NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum")), weights)
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "set"), "--weights", str(weights), "--json",
                                  str(tmp_path / "s.json"), "--summary-only"])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "s.json").read_text())
    assert [row["set"] for row in rows] == ["set"] * 4 and rows[-1]["name"] == "mean"
    model = load_model(weights)
    for row in rows[:-1]:
        blurry = np.asarray(Image.open(tmp_path / "set" / "blur" / f"{row['name']}.png"), dtype=np.float32) / 255
        pred = deblur(model, blurry, defocus_map=True).defocus_map.astype(np.float64).ravel()
        true = read_radius_map(tmp_path / "set" / "radius" / f"{row['name']}.tiff").astype(np.float64).ravel()
        if np.ptp(true) == 0:  # one image is in focus everywhere: nothing to rank
            assert row["map_spearman"] is None
        else:
            assert row["map_spearman"] == pytest.approx(spearmanr(pred, true).statistic, abs=1e-6)
        assert row["map_mae"] == pytest.approx(np.abs(pred - true).mean(), abs=1e-6)
    ranked = [row["map_spearman"] for row in rows[:-1] if row["map_spearman"] is not None]
    assert len(ranked) == 2 and rows[-1]["map_spearman"] == pytest.approx(np.mean(ranked))
    gains = sorted((row["psnr_out"] - row["psnr_in"], row["name"]) for row in rows[:-1])
    assert gains[0][0] < gains[-1][0] - 0.01  # a worst and a best to tell apart
    summary = r.stdout.split("Per set")[1]  # --summary-only: no per-image table names them
    assert gains[0][1] in summary and f"{gains[0][0]:+.2f}" in summary and gains[-1][1] not in summary
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "set"), str(tmp_path / "set"), str(tmp_path / "src")])
    assert r.exit_code == 2 and "evaluation sets" in r.output  # neither sets nor one pair


def test_eval_strength_blends_input_and_output_as_deblurring_does(tmp_path):
    from test_inference import PLAIN, acting

    from nrkdeblur.evaluate import to_uint8
    from nrkdeblur.inference import deblur
    from nrkdeblur.weights import save_weights

    model = acting(PLAIN)
    save_weights(model, tmp_path / "w.safetensors")
    blur, sharp = pairs(tmp_path, n=2)
    scores = {}
    for strength in ("0", "0.5"):
        r = CliRunner().invoke(main, ["eval", str(blur), str(sharp), "--weights", str(tmp_path / "w.safetensors"),
                                      "--strength", strength, "--json", str(tmp_path / "s.json")])
        assert r.exit_code == 0, r.output
        scores[strength] = json.loads((tmp_path / "s.json").read_text())
    for none, half in zip(scores["0"][:2], scores["0.5"][:2]):
        assert none["psnr_out"] == none["psnr_in"]  # strength 0: the input itself
        b = np.asarray(Image.open(blur / f"{half['name']}.png")).astype(np.float32) / 255
        s = np.asarray(Image.open(sharp / f"{half['name']}.png"))
        full = deblur(model, b).image
        assert psnr(to_uint8(full), s) - psnr(to_uint8(b), s) < -0.5  # the network's change is large here
        assert half["psnr_out"] == pytest.approx(psnr(to_uint8((b + full) / 2), s), abs=0.01)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("name", ["kodak24-defocus", "kodak24-camera", "out-of-recipe", "natural-dof"])
def test_every_frozen_set_loads_with_its_true_radius_and_is_scored(tmp_path, name):
    from nrkdeblur.eval_sets import find_sets

    folder = BENCHMARKS / name
    ((set_name, pairs),) = find_sets([folder])
    assert set_name == name and len(pairs) >= 10
    for key, blurry, sharp, radius in pairs:
        assert blurry.shape == sharp.shape and radius is not None and radius.shape == blurry.shape[:2]
        assert 0 <= radius.min() and radius.max() < 20
    listed = [line for line in (folder / "sources.txt").read_text().splitlines() if not line.startswith("#")]
    assert sorted(Path(line).stem for line in listed) == sorted(key for key, *_ in pairs)
    r = CliRunner().invoke(main, ["eval", str(folder), "--method", "identity", "--summary-only"])
    assert r.exit_code == 0, r.output
    assert name in r.stdout and "+0.00" in r.stdout


def test_no_frozen_set_shares_a_source_photo_with_another():
    """Except the kodak24-* sets: renders of the same 24 validation photos by other recipes."""
    seen = {}
    for listing in sorted(BENCHMARKS.glob("*/sources.txt")):
        group = "kodak24" if listing.parent.name.startswith("kodak24-") else listing.parent.name
        for line in listing.read_text().splitlines():
            if line and not line.startswith("#"):
                assert seen.get(line, group) == group, f"{line} is in {seen.get(line)} and {listing.parent.name}"
                seen[line] = group
    assert len(set(seen.values())) >= 3


def test_map_percentiles_script_splits_a_frozen_set_by_its_true_radius(tmp_path):
    """scripts/map-percentiles.py prints the map's percentiles over the pixels rendered in
    focus and over the rest, as the map computed here gives them."""
    import subprocess
    import sys

    from test_cli import TINY

    import nrkdeblur
    from nrkdeblur.data.datasets import write_radius_map
    from nrkdeblur.model import NRKNet
    from nrkdeblur.weights import save_weights

    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_weights(NRKNet(TINY), weights)
    (tmp_path / "set" / "blur").mkdir(parents=True)
    (tmp_path / "set" / "radius").mkdir()
    photo = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "set" / "blur" / "a.png")
    truth = np.zeros((40, 56), np.float32)
    truth[:, 14:] = 3.0  # a quarter in focus
    write_radius_map(tmp_path / "set" / "radius" / "a.tiff", truth)
    script = Path(__file__).resolve().parents[1] / "scripts" / "map-percentiles.py"
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "set"), str(weights)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _, radius = nrkdeblur.load(weights, device="cpu").deblur(photo.astype(np.float32) / 255, defocus_map=True)
    expect = [" ".join(f"{v:.1f}" for v in np.percentile(part, (25, 50, 75, 90)))
              for part in (radius[:, :14], radius[:, 14:])]
    assert f"a: in focus (25 %) {expect[0]} | defocused {expect[1]}" in r.stdout
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "none")], capture_output=True, text=True)
    assert r.returncode == 1 and "no photos" in r.stderr and "Traceback" not in r.stderr


def test_strong_blur_psnr_counts_only_pixels_above_8_px_and_pools_a_set(tmp_path):
    """Rows score the input and output over the pixels whose true radius exceeds 8 px only
    (catches a mask that takes all pixels, or >= instead of >); the set's figure pools their
    squared errors (catches a mean of per-image PSNRs), checked through the command with the
    identity method, whose output is its input."""
    from nrkdeblur.data.datasets import write_radius_map
    from nrkdeblur.evaluate import STRONG_BLUR, psnr

    rng = np.random.default_rng(5)
    for d in ("blur", "sharp", "radius"):
        (tmp_path / "set" / d).mkdir(parents=True)
    expected_in, counts, mse = {}, [], []
    for i, (noise, cols) in enumerate([(4, 20), (30, 8)]):
        sharp = rng.integers(40, 200, (16, 32, 3)).astype(np.uint8)
        blurry = sharp.copy()
        blurry[:, :cols] = np.clip(sharp[:, :cols] + rng.normal(0, noise, (16, cols, 3)), 0, 255).astype(np.uint8)
        blurry[:, cols:] = sharp[:, cols:] ^ 1  # one level off where the blur is not strong
        radius = np.zeros((16, 32), np.float32)
        radius[:, :cols] = STRONG_BLUR + 0.5
        radius[:, cols] = STRONG_BLUR  # at 8 px exactly: not strong
        Image.fromarray(blurry).save(tmp_path / "set" / "blur" / f"i{i}.png")
        Image.fromarray(sharp).save(tmp_path / "set" / "sharp" / f"i{i}.png")
        write_radius_map(tmp_path / "set" / "radius" / f"i{i}.tiff", radius)
        expected_in[f"i{i}"] = psnr(blurry[:, :cols], sharp[:, :cols])
        counts.append(16 * cols)
        mse.append(((blurry[:, :cols].astype(float) - sharp[:, :cols]) ** 2).mean())
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "set"), "--method", "identity", "--json",
                                  str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "s.json").read_text())
    for row in rows[:-1]:
        assert row["strong_psnr_in"] == pytest.approx(expected_in[row["name"]], abs=1e-9)
        assert row["strong_psnr_out"] == row["strong_psnr_in"] and row["strong_pixels"] == counts[int(row["name"][1])]
    from nrkdeblur.evaluate import evaluate, summarize
    from nrkdeblur.eval_sets import find_sets
    (name, pairs), = find_sets([tmp_path / "set"])
    summary = summarize(name, evaluate(pairs, lambda n, b: (b, None)))
    pooled = 10 * np.log10(255.0**2 * sum(counts) / sum(n * m for n, m in zip(counts, mse)))
    assert summary.strong_psnr_in == pytest.approx(pooled, abs=1e-9)
    assert summary.strong_share == pytest.approx(np.mean([c / (16 * 32) for c in counts]))
    assert "r>8 gain" in r.output and "+0.00" in r.output.split("Per set")[1]
