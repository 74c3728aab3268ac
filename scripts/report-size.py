"""Bytes and seconds a batch report adds per photo: the previews and the record of one large
photo, made as process_one makes them (report_data.photo_record), without the network.

The photo is a sharp one repeated in a grid (pixel-level detail as in a real photo, at the
size asked for); its "output" is the same photo sharpened by an unsharp mask.

    python scripts/report-size.py ../shared/data/Urban100_subset/img_005.png --grid 4 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from nrkdeblur.batch import Job
from nrkdeblur.imageio import Photo
from nrkdeblur.levels import from_levels
from nrkdeblur.report_data import assets_folder, photo_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("--grid", type=int, nargs=2, default=(4, 3), metavar=("COLUMNS", "ROWS"))
    args = parser.parse_args()
    tile = Image.open(args.photo).convert("RGB")
    sharpened = tile.filter(ImageFilter.UnsharpMask(radius=2, percent=120, threshold=0))
    before, after = (np.tile(np.asarray(im), (args.grid[1], args.grid[0], 1)) for im in (tile, sharpened))
    H, W = before.shape[:2]
    radius = np.tile(np.linspace(0.5, 6.0, W, dtype=np.float32), (H, 1))
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "report.html"
        job = Job(Path(folder) / "in.png", Path(folder) / "out.png", Path("in.png"))
        start = time.perf_counter()
        record = photo_record(page, job, Photo(from_levels(before)), from_levels(after), radius)
        seconds = time.perf_counter() - start
        sizes = {p.name.split(".")[1]: p.stat().st_size for p in assets_folder(page).iterdir()}
    print(f"{W} x {H} px ({W * H / 1e6:.1f} MP): previews {sum(sizes.values()) / 1e3:.0f} kB in {seconds:.2f} s "
          f"({', '.join(f'{k} {v / 1e3:.0f} kB' for k, v in sorted(sizes.items()))}); detail {record['detail']}")


if __name__ == "__main__":
    main()
