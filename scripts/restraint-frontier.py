"""What `--protect R --protect-keep K` costs and buys on the frozen sets, for a grid of R and K,
with one pass of the network per image (docs/restraint.md, "--protect-keep").

    python scripts/restraint-frontier.py benchmarks/kodak24-defocus benchmarks/out-of-recipe \
        benchmarks/natural-dof benchmarks/kodak24-camera [--weights W]

Each image is deblurred once, whole (as `nrkdeblur eval` does at these sizes), keeping the
network's output and the raw defocus map that --protect reads; every (R, K) then blends
them as restraint.change_weight does, rounds to 8 bits and scores the PSNR gain over the
input. Per set: the mean gain and the worst image's. `nrkdeblur eval SETS --protect R
--protect-keep K` gives the same figures one setting at a time, running the network again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nrkdeblur.eval_sets import find_sets  # noqa: E402
from nrkdeblur.evaluate import psnr, to_uint8  # noqa: E402
from nrkdeblur.model import pad_to_multiple  # noqa: E402
from nrkdeblur.pipeline import open_default_weights  # noqa: E402
from nrkdeblur.restraint import protect_weight  # noqa: E402

LIMITS = (6.0, 8.0, 10.0, 12.0)  # R, px
KEEPS = (0.7, 0.5, 0.3, 0.0)  # K


@torch.no_grad()
def passes(model, pairs) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, torch.Tensor]]:
    """(name, blurry, sharp, network output (not yet clipped, as deblur blends it), raw map) per pair."""
    done = []
    for name, blurry, sharp, _ in pairs:
        x = torch.from_numpy(blurry.astype(np.float32) / 255).permute(2, 0, 1)[None]
        H, W = blurry.shape[:2]
        padded = pad_to_multiple(x, model.config.multiple)
        out = model(padded, return_gamma=True, measure=True)
        radius = model.defocus_map(out, padded.shape[-2:])  # the map --protect reads, whatever the heads
        done.append((name, blurry, sharp, out.image[0, :, :H, :W].permute(1, 2, 0).numpy(), radius[0, 0, :H, :W]))
    return done


def gains(done, limit: float | None, keep: float) -> tuple[float, float, str]:
    """(mean gain, worst gain, worst image) in dB for one setting; limit None: no --protect."""
    values = []
    for name, blurry, sharp, net, radius in done:
        x = blurry.astype(np.float32) / 255
        k = 1.0 if limit is None else protect_weight(radius, limit, keep).numpy()[..., None]
        out = to_uint8(x + k * (net - x))  # rounded as eval rounds the network's output
        values.append((psnr(out, sharp) - psnr(blurry, sharp), name))
    worst = min(values)
    return float(np.mean([v for v, _ in values])), worst[0], worst[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("--weights", type=Path, help="default: the shipped weights")
    args = parser.parse_args()
    model = open_default_weights(args.weights, torch.device("cpu")).eval()
    results = {name: passes(model, pairs) for name, pairs in find_sets(args.sets)}
    print("setting".ljust(34) + "".join(f"{name[:24]:>37s}" for name in results))
    for label, limit, keep in [("(none)", None, 0.0)] + [(f"--protect {r:g} --protect-keep {k:g}", r, k)
                                                          for r in LIMITS for k in KEEPS]:
        cells = [gains(done, limit, keep) for done in results.values()]
        print(f"{label:34s}" + "".join(f"{m:+12.3f}  worst {w:+.2f} {n[:10]:10s}" for m, w, n in cells), flush=True)


if __name__ == "__main__":
    main()
