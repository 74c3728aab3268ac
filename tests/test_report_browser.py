"""The batch report in a real browser: headless Chromium loads the page from disk, the split
is dragged and the pixels under it change from the input to the output, 1:1 is one photo
pixel per screen pixel, the defocus map goes on and off. Skipped where no Chromium-family
browser is installed (Debian: apt-get install chromium)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from devtools import Browser, find_browser
from nrkdeblur.batch import Job
from nrkdeblur.imageio import read_photo
from nrkdeblur.maps import colorize
from nrkdeblur.pipeline import Summary
from nrkdeblur.report_data import photo_record, save_record, write_report

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium-family browser installed")

LOW, HIGH = 70, 190  # the input: a one-pixel grey checkerboard, which only 1:1 shows as such
CHANGED = (40, 90, 220)  # the output: this colour in BOX, the input elsewhere
BOX = (1000, 700, 1560, 1150)  # x0, y0, x1, y1, away from the photo's centre
RADIUS = 2.0  # the defocus map, everywhere: the top of its colour bar


def write_batch(folder: Path) -> Path:
    """A 1600 x 1200 photo (previews, a 1:1 crop, a map) and a small one without a map,
    recorded as process_one records them, and the page."""
    folder.mkdir()
    yy, xx = np.mgrid[:1200, :1600]
    before = np.repeat(np.where((xx + yy) % 2, HIGH, LOW).astype(np.uint8)[..., None], 3, axis=2)
    after = before.copy()
    x0, y0, x1, y1 = BOX
    after[y0:y1, x0:x1] = CHANGED
    small = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    page = folder / "report.html"
    jobs = []
    for name, a, b, radius in (("checker", before, after, np.full((1200, 1600), RADIUS, np.float32)),
                               ("small", small, 255 - small, None)):
        job = Job(folder / f"{name}.png", folder / "out" / f"{name}.png", Path(f"{name}.png"))
        job.output.parent.mkdir(exist_ok=True)
        Image.fromarray(a).save(job.source)
        Image.fromarray(b).save(job.output)
        record = photo_record(page, job, read_photo(job.source), read_photo(job.output).pixels, radius,
                              options={"strength": 0.9})
        save_record(page, job, record, 1.25)
        jobs.append((job, "done"))
    summary = Summary(2, 0, [(folder / "broken.jpg", "not an image file")], 2.5, 2.0, tuple(jobs))
    return write_report(page, summary)


def near(pixel: np.ndarray, colour, tolerance: int = 12) -> bool:
    return bool(np.abs(pixel.astype(int) - np.asarray(colour)).max() <= tolerance)


def one_to_one(row: np.ndarray) -> bool:
    """Every pixel of a row differs from its neighbour as the checkerboard's do (by 120 less
    WebP's loss): it is drawn one photo pixel per screen pixel. Enlarged, some neighbours
    are equal; reduced, they average out."""
    return bool((np.abs(np.diff(row.astype(int), axis=0)).max(axis=1) > 80).all())


def contrast(row: np.ndarray) -> float:
    """Mean difference of neighbouring pixels along a row."""
    return float(np.abs(np.diff(row.astype(int), axis=0)).mean())


@pytest.fixture
def browser(tmp_path):
    b = Browser(BROWSER, tmp_path / "profile", width=1000, height=900)
    yield b
    b.close()


def test_split_drag_one_to_one_and_heatmap_in_chromium(tmp_path, browser):
    page = write_batch(tmp_path / "batch")
    b = browser
    b.page("Page.navigate", url=page.as_uri())
    b.wait_for("document.readyState === 'complete'")
    b.evaluate("document.querySelector('#photo-0 .viewer').scrollIntoView({block: 'center'})")
    b.wait_for("[...document.querySelectorAll('#photo-0 img')].every(i => i.complete && i.naturalWidth > 0)")
    frame = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
    b.evaluate(frame)
    left, top, width, height = b.evaluate(
        "(() => { const r = document.querySelector('#photo-0 .viewer').getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height]; })()")
    cx, cy = round(left + width / 2), round(top + height / 2)

    shot, _ = b.screenshot()
    # it opens at 1:1 on the changed box (the photo's centre shows only the checkerboard)
    assert near(shot[cy, cx + 40], CHANGED), shot[cy, cx + 40]
    assert one_to_one(shot[cy, cx - 60:cx - 20])  # left of the split: the input, pixel for pixel

    b.drag((cx, cy), (cx + 120, cy))  # the split's knob, 120 px to the right
    b.evaluate(frame)
    shot, _ = b.screenshot()
    assert one_to_one(shot[cy, cx + 20:cx + 60])  # now left of the split: the input
    assert near(shot[cy, cx + 160], CHANGED)  # still right of it: the output

    box = b.evaluate("(() => { const r = document.querySelector('#photo-0 .heat-toggle input')"
                     ".getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    b.mouse("mousePressed", *box, held=True)
    b.mouse("mouseReleased", *box)
    b.evaluate(frame)
    shot, png = b.screenshot()
    heat = colorize(np.array([RADIUS]), RADIUS)[0].astype(float)
    assert near(shot[cy, cx + 160], 0.6 * heat + 0.4 * np.array(CHANGED))  # the map at 60% over the output
    (tmp_path / "report.png").write_bytes(png)
    print(f"screenshot: {tmp_path / 'report.png'}")

    b.evaluate("document.querySelector('#photo-0 button[data-zoom=\"fit\"]').click()")
    b.evaluate(frame)
    shot, _ = b.screenshot()
    assert contrast(shot[cy - 100, cx - 60:cx - 20]) < 30  # fitted: the checkerboard averages out

    assert b.errors() == []
    requested = b.requested()
    assert len(requested) >= 6 and all(url.startswith("file://") for url in requested), requested
