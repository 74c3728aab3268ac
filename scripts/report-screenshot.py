"""The README's picture of a batch report: the shipped example photo deblurred by the shipped
weights with --report, opened in headless Chromium (tests/devtools.py), one photo's view
captured as it opens, a 256-colour PNG.

    python scripts/report-screenshot.py -o docs/report.png     # writes its batch into out/
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import nrkdeblur  # noqa: E402
from devtools import Browser, find_browser  # noqa: E402

SECTION_BOX = """(() => { const s = document.querySelector('#photo-0').getBoundingClientRect();
  return [s.left, s.top, s.right, s.bottom]; })()"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--photo", type=Path, default=ROOT / "examples" / "kodim05_defocused.jpg")
    parser.add_argument("--batch", type=Path, default=ROOT / "out" / "report-example")
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        sys.exit("no Chromium-family browser found (Debian: apt-get install chromium)")
    page = args.batch / "report.html"
    summary = nrkdeblur.report(args.photo, args.batch / f"{args.photo.stem}_sharp.jpg", page, overwrite=True)
    if summary.failed:
        sys.exit(f"{summary.failed[0][0]}: {summary.failed[0][1]}")
    with Image.open(args.photo) as im:
        width = im.width + 48  # the page's side padding: the photo fills the view at 1:1
    with tempfile.TemporaryDirectory() as profile:
        b = Browser(browser, Path(profile), width=width, height=900)
        try:
            b.page("Page.navigate", url=page.absolute().as_uri())
            b.wait_for("document.readyState === 'complete'")
            b.evaluate("document.querySelector('#photo-0').scrollIntoView()")
            b.wait_for("[...document.querySelectorAll('#photo-0 img')].every(i => i.complete && i.naturalWidth > 0)")
            b.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            left, top, right, bottom = b.evaluate(SECTION_BOX)
            _, png = b.screenshot()
        finally:
            b.close()
    shot = Image.open(io.BytesIO(png)).convert("RGB").crop((int(left), int(top), int(right), int(bottom) + 8))
    small = shot.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    small.save(args.output, optimize=True)
    print(f"wrote {args.output}: {small.width} x {small.height} px, {args.output.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
