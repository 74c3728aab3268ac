"""The defocus maps on real photos whose true defocus is known only up to an affine
transform: the Pixel-4 dual-pixel scenes of Xin et al., ICCV 2021 (eval-only data). Scores
the network's map and the classical one (zhuo_sim.py) with AIWE(1), AIWE(2) and
1 - |Spearman| over the pixels whose ground truth is above 0 (docs/map-scores.md).

    python scripts/pixel4-map-scores.py PAIRS_DIR GT_DIR [--weights W] [--json OUT]
    python scripts/pixel4-map-scores.py PAIRS_DIR GT_DIR --check-truth

PAIRS_DIR/blur/NNN.png: the blurry photos, made from the dual-pixel views by
make_pixel4_pairs.py (use --srgb, as a camera delivers them; its crop matches GT_DIR).
GT_DIR/NNN_gt.png (or NNN.png): the upstream `gt_defocus_map/` folder, 8-bit, larger
values more blur, 0 where the truth is unknown. The truth is scored in units of 1/255.
--check-truth prints, instead, how much detail the blurry photo keeps (PAIRS_DIR/sharp/ is
the reference) per band of ground-truth values: it falls as the value rises if larger
values mean more blur, and would fall then rise again around a signed truth's offset.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import nrkdeblur
from nrkdeblur.evaluate import affine_scores
from nrkdeblur.imageio import ImageError, list_images, read_photo
from nrkdeblur.weights import WeightsError
from nrkdeblur.zhuo_sim import defocus_map

SCORES = ("aiwe1", "aiwe2", "one_minus_abs_spearman")


def ground_truth(gt_dir: Path, stem: str) -> np.ndarray:
    for name in (f"{stem}_gt.png", f"{stem}.png"):
        if (gt_dir / name).is_file():
            with Image.open(gt_dir / name) as image:
                return np.asarray(image.convert("L"), dtype=np.float64) / 255
    raise ValueError(f"{gt_dir}: no {stem}_gt.png or {stem}.png")


def score_all(pairs_dir: Path, gt_dir: Path, weights: str | None) -> list[dict]:
    """One record per photo and map method: its name, the method and SCORES."""
    photos = list_images(pairs_dir / "blur", raw=False)
    if not photos:
        raise ValueError(f"{pairs_dir / 'blur'}: no photos")
    deblurrer = nrkdeblur.load(weights, device="cpu")
    records = []
    for path in photos:
        pixels = read_photo(path).pixels
        truth = ground_truth(gt_dir, path.stem)
        maps = {"network": deblurrer.deblur(pixels, defocus_map=True)[1], "classical": defocus_map(pixels)}
        for method, estimate in maps.items():
            values = affine_scores(estimate, truth, truth > 0)
            records.append({"name": path.stem, "map": method, **dict(zip(SCORES, values))})
    return records


def detail_by_truth(blurry: np.ndarray, sharp: np.ndarray, truth: np.ndarray) -> list[tuple[int, float]]:
    """(lowest GT level of the band, median ratio of the blurry to the sharp photo's gradient
    energy) per band of 32 GT levels above 0 holding at least 2000 of the sharp photo's
    most detailed 40 % of pixels (energy: Gaussian derivatives of sigma 1 px, squared,
    smoothed by sigma 4 px, on the photos' first channel)."""
    from scipy.ndimage import gaussian_filter, gaussian_gradient_magnitude

    energy_b, energy_s = (gaussian_filter(gaussian_gradient_magnitude(x[..., 0], 1.0) ** 2, 4.0)
                          for x in (blurry, sharp))
    detailed = energy_s > np.percentile(energy_s, 60)
    levels = np.round(truth * 255)
    bands = []
    for lo in range(0, 256, 32):
        band = detailed & (levels >= max(lo, 1)) & (levels < lo + 32)
        if band.sum() >= 2000:
            bands.append((lo, float(np.median(energy_b[band] / energy_s[band]))))
    return bands


def check_truth(pairs_dir: Path, gt_dir: Path) -> None:
    for path in list_images(pairs_dir / "blur", raw=False):
        sharp = read_photo(pairs_dir / "sharp" / path.name).pixels
        bands = detail_by_truth(read_photo(path).pixels, sharp, ground_truth(gt_dir, path.stem))
        print(f"{path.stem}: " + " ".join(f"{lo}:{ratio:.2f}" for lo, ratio in bands))


def print_table(records: list[dict]) -> None:
    print(f"{'scene':8} {'map':10} {'AIWE(1)':>8} {'AIWE(2)':>8} {'1-|rho|':>8}")
    for method in ("network", "classical"):
        rows = [r for r in records if r["map"] == method]
        for r in rows + [{"name": "mean", **{k: np.mean([x[k] for x in rows]) for k in SCORES}}]:
            print(f"{r['name']:8} {method:10} " + " ".join(f"{r[k]:8.4f}" for k in SCORES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs_dir", type=Path)
    parser.add_argument("gt_dir", type=Path)
    parser.add_argument("--weights", help="a .safetensors file (default: the shipped weights)")
    parser.add_argument("--json", type=Path, help="also write the records as JSON")
    parser.add_argument("--check-truth", action="store_true", help="only print the detail kept per GT band")
    args = parser.parse_args()
    try:
        if args.check_truth:
            return check_truth(args.pairs_dir, args.gt_dir)
        records = score_all(args.pairs_dir, args.gt_dir, args.weights)
    except (ImageError, WeightsError, ValueError, OSError) as e:
        sys.exit(str(e))
    print_table(records)
    if args.json is not None:
        args.json.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
