"""How high can a map's Spearman figures go on a set? Scores the true radius maps themselves,
degraded in two known ways, as `nrkdeblur eval` scores a map (docs/map-scores.md):

- `quarter`: the truth averaged over 4 x 4 blocks and upsampled bilinearly, the resolution
  the map head predicts at;
- `error P%`: the truth times exp(P/100 * n), n a smooth random field (white noise smoothed
  by a Gaussian of sigma 8 px, then scaled to standard deviation 1; numpy seed 0 per image):
  a map right everywhere up to a slowly varying relative error of about P %.

    python scripts/map-score-ceiling.py benchmarks/kodak24-defocus benchmarks/out-of-recipe

The truths are piecewise constant, with large regions at one radius, so pixels of equal
truth share one rank; a map that varies inside such a region ranks those pixels apart, and
the correlation falls although every value is close to the truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nrkdeblur.eval_sets import find_sets  # noqa: E402
from nrkdeblur.evaluate import spearman, textured  # noqa: E402
from nrkdeblur.map_refine import block_means, upsample  # noqa: E402

ERRORS = (2, 5, 10, 20)  # percent


def degraded(truth: np.ndarray) -> dict[str, np.ndarray]:
    """The truth degraded each way named in the module docstring."""
    maps = {"quarter": upsample(block_means(truth, 4), 4, truth.shape)}
    rng = np.random.default_rng(0)
    field = gaussian_filter(rng.normal(size=truth.shape), 8.0)
    field /= field.std()
    for p in ERRORS:
        maps[f"error {p}%"] = truth * np.exp(p / 100 * field)
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", type=Path)
    args = parser.parse_args()
    print(f"{'set':18s} {'map':10s} {'rho all':>8s} {'rho tex':>8s}")
    for name, pairs in find_sets(args.sets):
        scores: dict[str, tuple[list[float], list[float]]] = {}
        for _, _, sharp, truth in pairs:
            if truth is None:
                continue
            truth = truth.astype(np.float64)
            mask = textured(sharp)
            for label, m in degraded(truth).items():
                every, textured_only = scores.setdefault(label, ([], []))
                for values, rho in ((every, spearman(m, truth)), (textured_only, spearman(m[mask], truth[mask]))):
                    if rho is not None:  # constant truths are skipped, as eval skips them
                        values.append(rho)
        for label, (every, textured_only) in scores.items():
            print(f"{name:18s} {label:10s} {np.mean(every):8.3f} {np.mean(textured_only):8.3f}")


if __name__ == "__main__":
    main()
