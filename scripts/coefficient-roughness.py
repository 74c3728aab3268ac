"""How rough are a network's coefficient maps on a photo? The roughness term of the loss
(losses.coefficient_roughness) with the photo itself as the guide to where it is smooth, over
the whole photo and, with --box, the finest scale's maps over one region (the crackle of
docs/training-notes.md lives there). Optionally a side-by-side crop of each output.

    python scripts/coefficient-roughness.py PHOTO --weights A.safetensors B.safetensors \
        --box 30,270,140,130 --panel crops.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nrkdeblur.losses import coefficient_roughness  # noqa: E402
from nrkdeblur.model import pad_to_multiple, pyramid  # noqa: E402
from nrkdeblur.weights import load_model  # noqa: E402


@torch.no_grad()
def measure(weights: Path, photo: torch.Tensor, box: tuple[int, int, int, int] | None):
    """(roughness over the photo, roughness of the finest maps over the box or None, output)."""
    model = load_model(weights).eval()
    x = pad_to_multiple(photo, model.config.multiple)
    out = model(x, return_gamma=True)
    guides = [y[..., : g.shape[-2], : g.shape[-1]] for g, y in zip(out.gammas, pyramid(x, len(out.gammas)))]
    whole = coefficient_roughness(out.gammas, guides).item()
    region = None
    if box is not None:
        bx, by, bw, bh = box
        region = coefficient_roughness([out.gammas[-1][..., by: by + bh, bx: bx + bw]],
                                       [photo[..., by: by + bh, bx: bx + bw]]).item()
    return whole, region, out.image[0].clamp(0, 1).permute(1, 2, 0).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("--weights", type=Path, nargs="+", required=True)
    parser.add_argument("--box", help="x,y,width,height of a region, in pixels")
    parser.add_argument("--panel", type=Path, help="PNG: the box of each output side by side, twice the size")
    args = parser.parse_args()
    box = tuple(int(v) for v in args.box.split(",")) if args.box else None
    if args.panel and box is None:
        parser.error("--panel needs --box")
    pixels = np.asarray(Image.open(args.photo).convert("RGB"), dtype=np.float32) / 255
    photo = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    crops = []
    for weights in args.weights:
        whole, region, image = measure(weights, photo, box)
        print(f"{weights}: photo {whole:.5f}" + (f"  box {region:.5f}" if region is not None else ""))
        if box is not None:
            bx, by, bw, bh = box
            crops.append(image[by: by + bh, bx: bx + bw])
    if args.panel:
        panel = (np.concatenate(crops, axis=1) * 255).round().astype(np.uint8)
        Image.fromarray(panel).resize((panel.shape[1] * 2, panel.shape[0] * 2), Image.NEAREST).save(args.panel)


if __name__ == "__main__":
    main()
