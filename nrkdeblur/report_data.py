"""A batch's report: one static HTML page to judge the deblurring by eye, offline.

Per photo, a before/after view with a draggable split at 1:1 pixels and the defocus map
(NRKNet's defocus scale in input pixels; Quan, Wu, Ji, CVPR 2023; maps.py) as an overlay
with its colour bar; failed photos with their reasons; the batch's summary line.

How it is made: while a photo is deblurred (pipeline.process_one, on this machine or a Ray
worker), `photo_record` writes its previews (previews.py) into the folder beside the page,
PAGE_files/, and `save_record` then writes a small JSON record of it there. After the
batch, `write_report` gathers the records of every photo that has an output, this run's or
an earlier one's (a record that is missing or out of date is made again from the files),
and writes the page (report_html.py) atomically. The page refers to everything by relative
links, to the previews and to the batch's full-size files, and fetches nothing else.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePath
from typing import Protocol

import numpy as np
from PIL import Image

from .atomic import atomic_write
from .batch import Job
from .errors import ImageError
from .imageio import Photo, read_photo
from .previews import make_previews
from .report_html import Entry, assets_folder, relative_link, render_page
from .settings import flatten

RECORD_VERSION = 1
# WebP quality: 90 for full-resolution pictures, which is what 1:1 shows (on a Kodak photo
# the mean error of JPEG quality 85 at 4:4:4, in 15% fewer bytes), 80 for reduced previews
SHARP, REDUCED = 90, 80
# settings (pipeline.DeblurOptions) that say nothing about how a photo looks; every other one
# not at its default is shown beside the photo (strength, tile, weights ... and those added later)
HIDDEN_OPTIONS = frozenset({"recursive", "overwrite", "device", "backend", "debug", "engine", "ray_address",
                            "workers", "defocus_map_dir", "coefficients_dir", "report_page"})


class Batch(Protocol):
    """What the page needs of a finished batch (pipeline.Summary)."""

    done: int
    skipped: int
    failed: list[tuple[Path, str]]
    seconds: float
    megapixels: float
    finished: tuple[tuple[Job, str], ...]  # the jobs with an output: "done" or "skipped"


_ABSOLUTE = re.compile(r"(?:(?<=\s)|^)(?:/|[A-Za-z]:\\)[^\s]*")  # a POSIX or Windows absolute path in a text


def relative_text(text: str, page: Path) -> str:
    """text with the absolute paths in it (an error message's) made relative to the page."""
    return _ABSOLUTE.sub(lambda m: relative_link(Path(m.group(0)), page) or Path(m.group(0)).name, text)


def asset_key(page: Path, job: Job) -> str:
    """The name the previews of a job's output go by: the output's name, made safe for a
    URL, and a hash of its path relative to the page (unique in a batch, and the same for
    a Ray worker, whose paths are absolute, and in a later run from another folder)."""
    where = relative_link(job.output, page) or str(job.output.absolute())
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", job.output.stem)[:40]
    return f"{stem}-{hashlib.sha1(where.encode()).hexdigest()[:10]}"


def shown_options(options: object) -> dict[str, object]:
    """The settings of a settings dataclass (pipeline.DeblurOptions) that shape the photos
    and are not at their defaults, by name; paths by their name only (the page holds no
    absolute path)."""
    defaults = flatten(type(options)())
    shown = {}
    for name, value in flatten(options).items():
        if name in HIDDEN_OPTIONS or value == defaults[name]:
            continue
        if isinstance(value, PurePath):
            value = value.name
        shown[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return shown


def photo_record(page: Path, job: Job, photo: Photo, after: np.ndarray, defocus: np.ndarray | None,
                 linear: bool = False, options: dict | None = None) -> dict:
    """Write the previews of a deblurred photo (photo: the input; after: the output's float
    pixels, linear light with `linear`; defocus: its map or None) beside the page, and
    return its record, which save_record writes once the output is written. options: the
    settings to show beside it (shown_options), None where they are not known."""
    previews = make_previews(photo.pixels, after, photo.alpha, defocus, linear)
    folder, key = assets_folder(page), asset_key(page, job)
    pictures = {"before": previews.before, "after": previews.after, "before-1to1": previews.before_detail,
                "after-1to1": previews.after_detail, "defocus": previews.defocus}
    H, W = photo.pixels.shape[:2]
    files = {}
    for name, im in pictures.items():
        if im is not None:
            files[name] = f"{key}.{name}.webp"
            q = SHARP if name.endswith("1to1") or (name != "defocus" and im.size == (W, H)) else REDUCED
            atomic_write(folder / files[name], lambda f, im=im, q=q: im.save(f, format="WEBP", quality=q))
    return {"version": RECORD_VERSION, "width": W, "height": H, "bits": photo.bit_depth,
            "alpha": photo.alpha is not None, "seconds": None, "options": options,
            "files": files, "detail": previews.detail, "focus": previews.focus, "vmax": previews.vmax}


def save_record(page: Path, job: Job, record: dict, seconds: float | None) -> None:
    """Write a photo's record, with its time and the size and date of its output (a later
    report makes the record again if the output changed since)."""
    stat = job.output.stat()
    record = dict(record, seconds=None if seconds is None else round(seconds, 3),
                  output=[stat.st_size, stat.st_mtime_ns])
    path = assets_folder(page) / f"{asset_key(page, job)}.json"
    atomic_write(path, lambda f: f.write(json.dumps(record).encode()))


def load_record(page: Path, job: Job) -> dict | None:
    """A job's record if it is there, readable, and still describes the output; else None."""
    folder = assets_folder(page)
    try:
        record = json.loads((folder / f"{asset_key(page, job)}.json").read_text())
        stat = job.output.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        return None
    if record.get("output") != [stat.st_size, stat.st_mtime_ns]:
        return None
    if not all((folder / name).is_file() for name in record.get("files", {}).values()):
        return None
    return record


def record_from_files(page: Path, job: Job, defocus_map_dir: Path | None, linear: bool) -> dict:
    """Make a job's record from its input and output files, for an output written without
    a report (its time and options are not known): the defocus map is the one
    --defocus-map wrote into defocus_map_dir, if it is there."""
    before, after = read_photo(job.source), read_photo(job.output)
    record = photo_record(page, job, before, after.pixels, earlier_defocus(defocus_map_dir, job), linear)
    save_record(page, job, record, None)
    return record


def earlier_defocus(defocus_map_dir: Path | None, job: Job) -> np.ndarray | None:
    """The defocus map NAME_defocus.tiff in defocus_map_dir, or None."""
    if defocus_map_dir is None:
        return None
    stem = job.relative.with_suffix("")
    path = defocus_map_dir / stem.parent / f"{stem.name}_defocus.tiff"
    try:
        with Image.open(path) as im:
            return np.asarray(im, dtype=np.float32)
    except (OSError, ValueError):
        return None


def rate(megapixels: float, seconds: float) -> str:
    """Throughput with three significant digits ("1.23 MP/s", "0.0112 MP/s"); "" if none."""
    if megapixels <= 0 or seconds <= 0:
        return ""
    return f" ({f'{megapixels / seconds:#.3g}'.rstrip('.')} MP/s)"  # "#": keeps 0.000800's zeros


def summary_line(summary: Batch) -> str:
    """The batch's summary as the command line prints it."""
    return (f"{summary.done} done, {summary.skipped} skipped, {len(summary.failed)} failed "
            f"in {summary.seconds:.1f} s{rate(summary.megapixels, summary.seconds)}")


def gather(page: Path, summary: Batch, defocus_map_dir: Path | None, linear: bool) -> list[Entry]:
    """Every photo of the batch with an output, with its record (made from the files where
    it is missing or out of date); a photo whose record cannot be made says why."""
    entries = []
    for job, status in summary.finished:
        try:
            record = load_record(page, job) or record_from_files(page, job, defocus_map_dir, linear)
            entries.append(Entry(job, status, record))
        except (ImageError, ValueError, OSError, MemoryError) as e:
            reason = relative_text(str(e).removeprefix(f"{job.source}: "), page)
            entries.append(Entry(job, status, None, reason))
    return entries


def write_report(page: Path, summary: Batch, defocus_map_dir: Path | None = None, linear: bool = False) -> Path:
    """Write the page of a finished batch (pipeline.Summary) atomically and return it.
    defocus_map_dir and linear are the batch's: for photos deblurred without a report,
    whose records are made from their files."""
    entries = gather(page, summary, defocus_map_dir, linear)
    failed = [(relative_link(path, page) or path.name, relative_text(reason, page)) for path, reason in summary.failed]
    html = render_page(page, entries, failed, summary_line(summary))
    atomic_write(page, lambda f: f.write(html.encode("utf-8")))
    return page
