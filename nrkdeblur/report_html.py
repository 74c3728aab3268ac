"""The HTML of a batch report (report_data.py): plain records in, one self-contained page out.

The page carries its style and script inline (viewer/report.css, viewer/report.js) and
refers to images by relative links only; it works from the file system, with no server.
Each photo's viewer is static HTML: the script only loads its images when the photo comes
near the screen and moves them (pan, zoom, split, the defocus map overlay). The defocus
map is NRKNet's defocus scale in input pixels (Quan, Wu, Ji, CVPR 2023; maps.py).
"""

from __future__ import annotations

import html
import os
from importlib import resources
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import numpy as np

from .batch import Job
from .maps import colorize
from .version import __version__


class Entry(NamedTuple):
    """A photo of the page: its job, "done" (this run) or "skipped" (an earlier run's
    output), and its record (report_data.photo_record), or why there is none."""

    job: Job
    status: str
    record: dict | None
    problem: str | None = None


def assets_folder(page: Path) -> Path:
    """The folder beside the page that holds its previews: report.html -> report_files/."""
    return page.with_name(page.stem + "_files")


def relative_link(path: Path, page: Path) -> str | None:
    """path as seen from the page's folder, with forward slashes; None where there is no
    relative path (another drive on Windows)."""
    try:
        return Path(os.path.relpath(path.absolute(), page.absolute().parent)).as_posix()
    except ValueError:
        return None


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def url(link: str) -> str:
    """A relative path as an attribute value: percent-encoded, so that '#', '?' and spaces
    in file names stay part of the path."""
    return esc(quote(link, safe="/"))


def colour_bar(vmax: float) -> str:
    """The defocus map's colour bar, 0 to vmax px, in the colours of maps.colorize."""
    stops = ", ".join(f"rgb({r},{g},{b})" for r, g, b in colorize(np.linspace(0.0, 1.0, 9), 1.0))
    labels = "".join(f"<span>{v:g}</span>" for v in (0, vmax / 2, vmax))
    return (f'<span class="colourbar" title="defocus: the blur\'s RMS radius, px">'
            f'<span class="ramp" style="background:linear-gradient(to right, {stops})"></span>'
            f'<span class="ticks">{labels}</span><span class="unit">px</span></span>')


def describe_options(options: dict | None) -> str:
    if options is None:
        return "options not recorded (deblurred without --report)"
    return ", ".join(k.replace("_", " ") if v is True else f"{k.replace('_', ' ')} {v}" for k, v in options.items())


def meta_line(entry: Entry, page: Path) -> str:
    """Size, time, options and links of one photo."""
    r = entry.record or {}
    parts = []
    if "width" in r:
        parts.append(f"{r['width']} &times; {r['height']} px, {r['bits']}-bit{', alpha' if r['alpha'] else ''}")
    if r.get("seconds") is not None:
        parts.append(f"{r['seconds']:.1f} s")
    elif entry.record is not None:
        parts.append("time not recorded")
    if entry.record is not None:
        shown = describe_options(r.get("options"))
        if shown:
            parts.append(esc(shown))
    for label, path in (("full-size output", entry.job.output), ("input", entry.job.source)):
        link = relative_link(path, page)
        if link is not None:
            parts.append(f'<a href="{url(link)}">{label}</a>')
    return " &middot; ".join(parts)


def stage(name: str, record: dict, prefix: str, layers: tuple[str, ...]) -> str:
    """One pane's images in the photo's pixel coordinates (the script moves the stage)."""
    files = record["files"]
    imgs = []
    for layer in layers:
        if layer not in files:
            continue
        style = ""
        if layer.endswith("1to1"):
            x, y, w, h = record["detail"]
            style = f' style="left:{x}px;top:{y}px;width:{w}px;height:{h}px"'
        kind = "detail" if layer.endswith("1to1") else "heat" if layer == "defocus" else "fit"
        imgs.append(f'<img class="{kind}" alt="" data-src="{url(prefix + files[layer])}"{style}>')
        if layer.endswith("1to1"):  # where the full-resolution crop ends
            imgs.append(f'<div class="frame"{style}></div>')
    size = f'width:{record["width"]}px;height:{record["height"]}px'
    return f'<div class="pane {name}"><div class="stage" style="{size}">{"".join(imgs)}</div></div>'


def viewer(record: dict, prefix: str) -> str:
    fx, fy = record["focus"]
    panes = (stage("before", record, prefix, ("before", "before-1to1"))
             + stage("after", record, prefix, ("after", "after-1to1")))
    if "defocus" in record["files"]:
        panes += stage("overlay", record, prefix, ("defocus",))
    alpha = " alpha" if record["alpha"] else ""
    height = f'style="height:min(72vh, 760px, max(240px, {record["height"]}px))"'  # no taller than the photo
    return (f'<div class="viewer{alpha}" tabindex="0" {height} data-w="{record["width"]}" '
            f'data-h="{record["height"]}" data-fx="{fx}" data-fy="{fy}">{panes}'
            '<div class="split" title="drag to compare"><span class="knob"></span></div>'
            '<span class="tag left">before</span><span class="tag right">after</span></div>')


def tools(record: dict) -> str:
    buttons = ('<button type="button" data-zoom="fit">Fit</button><button type="button" data-zoom="1">1:1</button>'
               '<button type="button" data-zoom="2">2x</button>'
               '<button type="button" data-zoom="focus" title="back to where the output changed most">'
               'Most changed</button>')
    if "defocus" in record["files"]:
        buttons += ('<label class="heat-toggle"><input type="checkbox"> defocus map</label>'
                    + colour_bar(record["vmax"]))
    return f'<div class="tools">{buttons}</div>'


def photo_section(index: int, entry: Entry, page: Path) -> str:
    name = esc(entry.job.relative.as_posix())
    badge = '' if entry.status == "done" else ' <span class="badge">deblurred by an earlier run</span>'
    head = f'<h2><a href="#photo-{index}">{name}</a>{badge}</h2><p class="meta">{meta_line(entry, page)}</p>'
    if entry.record is None:
        return f'<section class="photo" id="photo-{index}">{head}<p class="problem">no preview: {esc(entry.problem)}</p></section>'
    prefix = assets_folder(page).name + "/"
    return (f'<section class="photo" id="photo-{index}">{head}{viewer(entry.record, prefix)}'
            f'{tools(entry.record)}</section>')


def failures(failed: list[tuple[str, str]]) -> str:
    if not failed:
        return ""
    items = "".join(f'<li><code>{esc(path)}</code>: {esc(reason)}</li>' for path, reason in failed)
    return f'<section class="failed"><h2>{len(failed)} failed</h2><ul>{items}</ul></section>'


def index(entries: list[Entry]) -> str:
    earlier = sum(e.status != "done" for e in entries)
    note = f" ({earlier} deblurred by an earlier run: their outputs existed and were skipped)" if earlier else ""
    items = "".join(f'<li><a href="#photo-{i}">{esc(e.job.relative.as_posix())}</a></li>' for i, e in enumerate(entries))
    return f'<details class="index"><summary>{len(entries)} photos{note}</summary><ol>{items}</ol></details>'


def asset_text(name: str) -> str:
    return resources.files("nrkdeblur").joinpath("viewer", name).read_text(encoding="utf-8")


def render_page(page: Path, entries: list[Entry], failed: list[tuple[str, str]], summary: str) -> str:
    """The whole page: summary, failures, an index, then one section per photo."""
    sections = "\n".join(photo_section(i, e, page) for i, e in enumerate(entries))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nrkdeblur: {len(entries)} photos</title>
<style>
{asset_text("report.css")}</style>
</head>
<body>
<header>
<h1>nrkdeblur report</h1>
<p class="summary">{esc(summary)}</p>
<p class="hint">Drag the white line to compare before and after; drag the photo to move it.
Each view opens at 1:1 where the output changed most. Fit, 1:1 and 2x zoom (double-click
toggles Fit and 1:1); the arrow keys move the line. Of a large photo the page holds a
full-resolution crop, inside the dashed frame; outside it, 1:1 and 2x enlarge a smaller
preview: the full-size output is a link away.</p>
</header>
{failures(failed)}
{index(entries)}
<main>
{sections}
</main>
<footer>nrkdeblur {esc(__version__)}</footer>
<script>
{asset_text("report.js")}</script>
</body>
</html>
"""
