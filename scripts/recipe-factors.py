"""Render the first 12 Kodak24 validation photos three times, with the training recipe and
with the out-of-recipe set's settings in one group of fields at a time (noise and JPEG;
blur, apertures and scene layout), to see which group costs a network its gain:

    python scripts/recipe-factors.py KODAK24_DIR OUT
    nrkdeblur eval OUT/train OUT/noise OUT/blur --summary-only

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


def main(photos: Path, out: Path) -> None:
    train, other = RECIPES["training"], RECIPES["out-of-recipe"]
    variants = {name: dataclasses.replace(train, **{f: getattr(other, f) for f in fields})
                for name, fields in (("noise", NOISE), ("blur", BLUR))}
    paths = sorted(photos.glob("*.png"))[:12]
    for name, settings in {"train": train, **variants}.items():
        write_frozen_set(paths, out / name, 2026, settings)  # the validation set's seed
        print(out / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
