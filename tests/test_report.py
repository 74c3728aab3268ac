"""The batch report (--report, nrkdeblur.report) without a browser: what the page holds,
what it refers to, resume, tiling, and the previews' numbers."""

import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
from PIL import Image

import nrkdeblur
from nrkdeblur.imageio import Photo, read_photo, write_photo
from nrkdeblur.levels import to_levels
from nrkdeblur.maps import colorize, nice_max
from nrkdeblur.pipeline import DeblurOptions
from nrkdeblur.previews import block_means, make_previews
from nrkdeblur.report_data import shown_options
from nrkdeblur.settings import override
from nrkdeblur.srgb import linear_to_srgb
from test_cli import photo, run, weights  # noqa: F401 (weights: the tiny model's file, a fixture)
from test_imageio import make_dng


class Page(HTMLParser):
    """The photos' names (their sections' headings), the failures' text and every URL a
    page refers to."""

    def __init__(self, text: str):
        super().__init__()
        self.urls, self.names, self.failed = [], [], []
        self._section = self._into = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[k] for k in ("src", "data-src", "href") if k in attrs and not attrs[k].startswith("#")]
        if tag == "section":
            self._section = attrs.get("class")
        elif (tag, self._section) in (("h2", "photo"), ("li", "failed")):
            self._into = self.names if tag == "h2" else self.failed
            self._into.append("")

    def handle_data(self, data):
        if self._into is not None:
            self._into[-1] += data

    def handle_endtag(self, tag):
        if tag in ("h2", "li"):
            self._into = None
        elif tag == "section":
            self._section = None


def shoot(root: Path) -> Path:
    """Nested folders; 8-bit RGB, RGBA, grey and 16-bit photos; one corrupt file."""
    (root / "day 1").mkdir(parents=True)
    photo(root / "top.jpg", size=(40, 56))
    photo(root / "day 1" / "alpha#1.png", size=(36, 44), mode="RGBA", seed=1)
    photo(root / "day 1" / "grey.png", size=(30, 40), mode="L", seed=2)
    rng = np.random.default_rng(3)
    write_photo(root / "deep.png", Photo(rng.random((32, 48, 3), dtype=np.float32), bit_depth=16))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return root


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA" if "A" in im.mode else "RGB"), dtype=int)


def test_every_photo_and_failure_appears_every_reference_exists_nothing_absolute(tmp_path, weights):
    src = shoot(tmp_path / "shoot")
    page = tmp_path / "sharp" / "report.html"
    r = run(src, "-o", tmp_path / "sharp", "-r", "--weights", weights, "--report", page, "--strength", 0.5)
    assert r.exit_code == 1, r.output  # the corrupt file
    text = page.read_text()
    parsed = Page(text)
    assert parsed.names == ["day 1/alpha#1.png", "day 1/grey.png", "deep.png", "top.jpg"]
    reason = r.stderr.split(f"{src / 'broken.jpg'}: ")[-1].strip()  # as the command line lists it
    assert parsed.failed == [f"../shoot/broken.jpg: {reason}"] and "corrupt" in reason
    assert "4 done, 0 skipped, 1 failed in " in text and re.search(r"4 done.+? MP/s\)", r.stderr).group(0) in text
    assert text.count("strength 0.5") == 4
    for u in parsed.urls:
        assert not re.match(r"[a-z]+:|/", u), u  # relative: no scheme, no root
        assert (page.parent / unquote(u)).is_file(), u
    assert sum(u.startswith("report_files/") for u in parsed.urls) == 4 * 3  # before, after, map
    assert "day%201/alpha%231.png" in parsed.urls  # the full-size output, its name escaped
    assert str(tmp_path) not in text and not re.search(r"(https?|file|ftp|wss?):", text)


def smooth(h: int, w: int, channels: int) -> np.ndarray:
    """A smooth picture in [0, 1] (lossy WebP keeps it within a few levels)."""
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    return np.dstack([0.5 + 0.4 * np.sin(3 * xx + 2 * c) * np.cos(2 * yy + c) for c in range(channels)]).astype(np.float32)


def test_previews_are_8_bit_srgb_of_16_bit_and_raw_photos_with_alpha(tmp_path, weights):
    src = tmp_path / "shoot"
    src.mkdir()
    write_photo(src / "deep.png", Photo(smooth(48, 64, 3), bit_depth=16))
    alpha = to_levels(smooth(40, 56, 1)[..., 0], 8)
    write_photo(src / "alpha.png", Photo(smooth(40, 56, 3), alpha=alpha))
    (src / "shot.dng").write_bytes(make_dng(np.rint(smooth(40, 60, 1)[..., 0] * 3000 + 500)))
    page = tmp_path / "sharp" / "report.html"
    assert run(src, "-o", tmp_path / "sharp", "--weights", weights, "--report", page).exit_code == 0
    folder = page.parent / "report_files"
    for source, name in (("deep.png", "deep.png"), ("alpha.png", "alpha.png"), ("shot.dng", "shot.tiff")):
        (key,) = folder.glob(f"{Path(name).stem}-*.json")
        record = json.loads(key.read_text())
        for side, path in (("before", src / source), ("after", page.parent / name)):
            want = to_levels(read_photo(path).pixels, 8).astype(int)
            got = decoded(folder / record["files"][side])
            assert got.shape[:2] == want.shape[:2] == (record["height"], record["width"])
            assert np.abs(got[..., :3] - want).mean() < 3, (name, side)  # lossy WebP, quality 90
        if source == "alpha.png":
            assert record["alpha"] and np.abs(got[..., 3] - alpha).max() <= 2
        assert record["bits"] == (8 if name == "alpha.png" else 16) and record["seconds"] > 0


def test_a_re_run_includes_the_photos_done_before(tmp_path, weights):
    src = tmp_path / "shoot"
    src.mkdir()
    photo(src / "a.png", seed=1)
    photo(src / "b.png", seed=2)
    out, page = tmp_path / "sharp", tmp_path / "sharp" / "report.html"
    assert run(src, "-o", out, "--weights", weights, "--report", page).exit_code == 0
    first = {p.name: p.read_bytes() for p in (out / "report_files").glob("*.json")}
    photo(src / "c.png", seed=3)  # added, and deblurred once without a report
    assert run(src / "c.png", "-o", out / "c.png", "--weights", weights).exit_code == 0
    photo(src / "d.png", seed=4)  # added since
    r = run(src, "-o", out, "--weights", weights, "--report", page)
    assert r.exit_code == 0 and "1 done, 3 skipped" in r.stderr
    text = page.read_text()
    assert [n.split(" deblurred")[0] for n in Page(text).names] == ["a.png", "b.png", "c.png", "d.png"]
    assert text.count("deblurred by an earlier run") == 3 + 1  # three badges and the index's note
    assert text.count("time not recorded") == 1  # c.png, read back from its files
    for name, data in first.items():
        assert (out / "report_files" / name).read_bytes() == data  # kept, not made again
    for u in Page(text).urls:
        assert (page.parent / unquote(u)).is_file(), u


def test_tiled_photos_get_the_map_that_defocus_map_writes(tmp_path, weights):
    src = tmp_path / "big.png"
    write_photo(src, Photo(smooth(400, 520, 3)))
    page = tmp_path / "out" / "report.html"
    r = run(src, "-o", tmp_path / "out" / "big.png", "--weights", weights, "--tile", 384, "--tile-overlap", 64,
            "--defocus-map", tmp_path / "maps", "--report", page)
    assert r.exit_code == 0, r.output
    (record_file,) = (tmp_path / "out" / "report_files").glob("*.json")
    record = json.loads(record_file.read_text())
    radius = np.asarray(Image.open(tmp_path / "maps" / "big_defocus.tiff"))
    assert record["vmax"] == nice_max(radius) and record["options"] == {"weights": weights.name, "tile": 384, "overlap": 64}
    got = decoded(record_file.parent / record["files"]["defocus"])
    want = colorize(radius, record["vmax"]).astype(int)
    assert np.abs(block_means(got, 8) - block_means(want, 8)).mean() < 3  # lossy WebP, quality 80


def test_the_python_api_writes_the_same_page(tmp_path, weights):
    src = shoot(tmp_path / "shoot")
    summary = nrkdeblur.report(src, tmp_path / "sharp", tmp_path / "page.html", recursive=True, weights=weights)
    assert (summary.done, summary.skipped, len(summary.failed)) == (4, 0, 1)
    assert Page((tmp_path / "page.html").read_text()).names[-1] == "top.jpg"
    assert len(list((tmp_path / "page_files").glob("*.json"))) == 4


def test_the_view_opens_where_the_output_changed_most():
    rng = np.random.default_rng(0)
    before = rng.random((1500, 2000, 3), dtype=np.float32)
    after = before.copy()
    after[1100:1200, 300:420] += 0.3  # the largest change, near a corner
    after[200:260, 1500:1560] += 0.2
    p = make_previews(before, after)
    x, y, w, h = p.detail
    assert (w, h) == (1024, 768) and x <= 300 and 420 <= x + w and y <= 1100 and 1200 <= y + h
    assert abs(p.focus[0] - 360) <= 8 and abs(p.focus[1] - 1150) <= 8  # the middle of the change
    assert p.before.size == (1280, 960) and p.before_detail.size == (1024, 768)
    assert np.array_equal(np.asarray(p.before_detail), to_levels(before[y:y + h, x:x + w], 8))
    still = make_previews(before, before)
    assert still.focus == (1000, 750) and still.detail == (488, 366, 1024, 768)  # no change: the middle
    changed = before[:300, :400].copy()
    changed[250:290, 20:60] += 0.3
    small = make_previews(before[:300, :400], changed)
    assert small.detail is None and small.before.size == (400, 300)
    assert 20 <= small.focus[0] < 60 and 250 <= small.focus[1] < 290


def test_linear_pixels_are_previewed_in_srgb():
    linear = np.full((20, 30, 3), 0.2, np.float32)
    p = make_previews(linear, linear, linear=True)
    assert np.asarray(p.before)[0, 0, 0] == to_levels(linear_to_srgb(linear[:1, :1, 0]), 8)[0, 0] == 124


def test_options_shown_are_those_not_at_their_defaults_that_change_the_photo():
    @dataclasses.dataclass(frozen=True)
    class Grain:  # a section of options added later appears without a change here
        grain: float = 0.0
        grain_map: Path | None = None

    @dataclasses.dataclass(frozen=True)
    class Later(DeblurOptions):
        extra: Grain = Grain()

    options = override(Later(), strength=0.5, device="cpu", grain=0.25, grain_map=Path("/abs/maps/g.png"), quality=90,
                       protect=8.0, mask=Path("/abs/masks/m.png"))
    assert shown_options(options) == {"strength": 0.5, "quality": 90, "grain": 0.25, "grain_map": "g.png",
                                      "protect": 8.0, "mask": "m.png"}


def test_a_report_path_that_is_a_folder_is_a_usage_error(tmp_path, weights):
    (tmp_path / "folder").mkdir()
    r = run(photo(tmp_path / "a.png"), "-o", tmp_path / "o.png", "--weights", weights, "--report", tmp_path / "folder")
    assert r.exit_code == 2 and "--report" in r.output
