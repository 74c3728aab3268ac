"""How large the defocus map reads, per photo: its 25th, 50th, 75th and 90th percentiles in
px; on a frozen set of `nrkdeblur render` (blur/ and radius/), apart for the pixels rendered
in focus (true radius below 0.5 px) and for the rest.

    python scripts/map-percentiles.py FOLDER [WEIGHTS]

FOLDER holds blur/ (photos) and, optionally, radius/NAME.tiff; WEIGHTS: a .safetensors file
(default: the shipped weights). Used to compare the blur the map sees in a set's in-focus
parts with the blur of real defocused photos (docs/training-notes.md).
"""

import sys
from pathlib import Path

import numpy as np

import nrkdeblur
from nrkdeblur.data import read_radius_map
from nrkdeblur.imageio import ImageError, list_images, read_photo
from nrkdeblur.weights import WeightsError

QUANTILES = (25, 50, 75, 90)


def percentiles(values: np.ndarray) -> str:
    if values.size == 0:
        return "-"
    return " ".join(f"{v:.1f}" for v in np.percentile(values, QUANTILES))


def main(folder: Path, weights: str | None) -> None:
    photos = list_images(folder / "blur", raw=False)
    if not photos:
        sys.exit(f"{folder / 'blur'}: no photos")
    deblurrer = nrkdeblur.load(weights, device="cpu")
    print(f"percentiles {'/'.join(map(str, QUANTILES))} of the map, px")
    for path in photos:
        _, radius = deblurrer.deblur(read_photo(path).pixels, defocus_map=True)
        truth_path = folder / "radius" / f"{path.stem}.tiff"
        if not truth_path.is_file():
            print(f"{path.stem}: {percentiles(radius)}")
            continue
        in_focus = read_radius_map(truth_path) < 0.5
        print(f"{path.stem}: in focus ({100 * in_focus.mean():.0f} %) {percentiles(radius[in_focus])}"
              f" | defocused {percentiles(radius[~in_focus])}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    try:
        main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) == 3 else None)
    except (ImageError, WeightsError, ValueError, OSError) as e:
        sys.exit(str(e))
