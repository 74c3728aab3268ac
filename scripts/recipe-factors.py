"""Render the first 12 Kodak24 validation photos once per group of renderer settings, each
group changed alone from the training recipe, to see which group costs a network its gain:

    python scripts/recipe-factors.py KODAK24_DIR OUT            # train, noise, blur
    python scripts/recipe-factors.py KODAK24_DIR OUT --parts    # and each lens / camera part
    nrkdeblur eval OUT/* --summary-only

`noise` and `blur` take the out-of-recipe set's values of their fields (noise and JPEG; blur,
apertures and scene layout). With --parts, each lens aberration and camera stage of
data/settings.py is also rendered alone with its share at 1 (every sample has it).
KODAK24_DIR holds the 24 Kodak PNGs the validation set is rendered from (kodim01.png ...).
"""

import dataclasses
import sys
from pathlib import Path

from nrkdeblur.data.datasets import write_frozen_set
from nrkdeblur.data.defocus import RECIPES

NOISE = ("p_noise", "shot_noise_range", "read_noise_range", "p_jpeg", "jpeg_quality_range")
BLUR = ("radius_power", "p_all_in_focus", "max_objects", "p_slanted_background", "p_slanted_object",
        "aperture_weights")
PARTS = ("p_spherical", "p_onion", "p_astigmatism", "p_coma", "p_field_curvature", "p_chromatic",
         "p_mosaic", "p_raw_noise", "p_tone_curve", "p_sharpen")


def variants(parts: bool) -> dict:
    train, other = RECIPES["training"], RECIPES["out-of-recipe"]
    out = {"train": train}
    out.update({name: dataclasses.replace(train, **{f: getattr(other, f) for f in fields})
                for name, fields in (("noise", NOISE), ("blur", BLUR))})
    if parts:
        out.update({share[2:].replace("_", "-"): dataclasses.replace(train, **{share: 1.0})
                    for share in PARTS})
    return out


def main(photos: Path, out: Path, parts: bool) -> None:
    paths = sorted(photos.glob("*.png"))[:12]
    for name, settings in variants(parts).items():
        write_frozen_set(paths, out / name, 2026, settings)  # the validation set's seed
        print(out / name, flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), "--parts" in sys.argv[3:])
