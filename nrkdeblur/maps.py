"""Defocus maps people look at: a heatmap with a colour bar, and a contact sheet of atoms.

The defocus scale of a pixel is NRKNet.defocus_map, in input pixels: the blur's RMS radius
as the map head (or, without one, the focus head) measures it, or, for weights without
either, the RMS radius of the effective kernel K = sum_j gamma_j A_j combined over the
pyramid scales. Here it only becomes pictures. Pure numpy and Pillow: arrays in, images out.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .levels import to_levels

# anchors of a dark-to-bright perceptual ramp (black, indigo, crimson, orange, pale yellow)
_ANCHORS = np.array([
    [0.00, 0.00, 0.02],
    [0.20, 0.05, 0.42],
    [0.65, 0.12, 0.38],
    [0.95, 0.45, 0.10],
    [0.99, 0.98, 0.70],
])


def colorize(values: np.ndarray, vmax: float) -> np.ndarray:
    """HxW values in [0, vmax] -> HxWx3 uint8 colours along the ramp."""
    t = np.clip(values / max(vmax, 1e-6), 0, 1) * (len(_ANCHORS) - 1)
    i = np.minimum(t.astype(np.int64), len(_ANCHORS) - 2)
    f = (t - i)[..., None]
    rgb = _ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f
    return to_levels(rgb)


def nice_max(values: np.ndarray) -> float:
    """A round upper end for the colour bar: the 99.5th percentile, rounded up."""
    top = float(np.percentile(values, 99.5)) if values.size else 1.0
    for step in (1, 2, 5, 10, 20, 50):
        if top <= step * 5:
            return max(step, float(np.ceil(top / step) * step))
    return float(np.ceil(top / 100) * 100)


def heatmap(radius: np.ndarray, vmax: float | None = None) -> Image.Image:
    """The defocus heatmap with a vertical colour bar labelled in pixels on its right."""
    vmax = nice_max(radius) if vmax is None else vmax
    H, W = radius.shape
    bar_w = max(12, W // 40)
    font = ImageFont.load_default(size=max(10, min(H, W) // 30))
    labels = [f"{vmax * (1 - k / 4):g} px" for k in range(5)]
    label_w = int(max(font.getlength(t) for t in labels)) + 8
    canvas = Image.new("RGB", (W + bar_w + label_w + 12, H), (255, 255, 255))
    canvas.paste(Image.fromarray(colorize(radius, vmax)), (0, 0))
    margin = max(8, H // 20)
    ramp = np.linspace(vmax, 0, max(H - 2 * margin, 2))[:, None].repeat(bar_w, axis=1)
    canvas.paste(Image.fromarray(colorize(ramp, vmax)), (W + 6, margin))
    draw = ImageDraw.Draw(canvas)
    for k, text in enumerate(labels):
        y = margin + (H - 2 * margin - 1) * k / 4
        draw.line([(W + 6 + bar_w, y), (W + 9 + bar_w, y)], fill=(0, 0, 0))
        draw.text((W + 11 + bar_w, y), text, fill=(0, 0, 0), font=font, anchor="lm")
    return canvas


def atom_sheet(atoms: np.ndarray, cell: int = 64) -> Image.Image:
    """Contact sheet of atoms [J, S, S], each scaled to its own maximum, nearest-upsampled."""
    J, S, _ = atoms.shape
    cols = int(np.ceil(np.sqrt(J)))
    rows = int(np.ceil(J / cols))
    sheet = Image.new("RGB", (cols * (cell + 4) + 4, rows * (cell + 4) + 4), (255, 255, 255))
    for j, a in enumerate(atoms):
        tile = Image.fromarray(colorize(a, float(a.max()))).resize((cell, cell), Image.NEAREST)
        sheet.paste(tile, (4 + (j % cols) * (cell + 4), 4 + (j // cols) * (cell + 4)))
    return sheet
