"""Layered, occlusion-aware defocus in linear light: a signed circle-of-confusion (CoC) map
cut into depth layers, each blurred with its PSF and composited back to front with "over"
(Porter & Duff, "Compositing digital images", SIGGRAPH 1984) on premultiplied colour.

This is the layered approximation of depth-dependent blur (e.g. Barsky & Kosloff, "Algorithms
for rendering depth of field effects in computer graphics", 2008): blurring each layer's
colour and alpha and compositing in depth order lets a blurry foreground spill over a sharp
background while a sharp foreground keeps its hard edge.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from .lens import Aperture, Lens, PsfShape, aperture_psf, lens_psf, psf_rms_radius
from .settings import RenderSettings


def depth_layers(coc: np.ndarray, settings: RenderSettings) -> tuple[np.ndarray, np.ndarray]:
    """Quantise a signed CoC map into layers.

    Returns (labels, radii): labels[y, x] indexes the layer, layers are sorted
    front (most negative CoC) to back, and radii[j] is the signed mean CoC of
    layer j. Layers are evenly spaced in sign(c) * log(1 + |c| / r0) and one
    layer is centred on c = 0, so in-focus pixels get radius ~0 exactly.
    """
    t = np.sign(coc) * np.log1p(np.abs(coc) / settings.layer_r0)
    step = max(settings.min_layer_step, float(t.max() - t.min()) / max(settings.max_layers - 1, 1))
    bins = np.rint(t / step).astype(np.int64)
    bins -= bins.min()
    counts = np.bincount(bins.ravel())
    sums = np.bincount(bins.ravel(), weights=coc.ravel().astype(np.float64))
    used = np.flatnonzero(counts)
    relabel = np.zeros(counts.size, dtype=np.int64)
    relabel[used] = np.arange(used.size)
    return relabel[bins], (sums[used] / counts[used]).astype(np.float32)

def render_layers(
    linear: np.ndarray, coc: np.ndarray, aperture: Aperture, settings: RenderSettings, lens: Lens | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blur a linear-light HxWx3 image by the signed CoC map; returns (image, radius map,
    PSF RMS radius map).

    Each layer's premultiplied colour and alpha are blurred with its PSF and
    composited back to front with "over". Where a blurred layer lies in front,
    the layers behind it are first continued a little way behind it (see
    `_extend_behind`), so its soft edge has something to show through. The
    result is divided by the final alpha, which undoes any remaining darkening
    at holes. Pixels within a PSF radius of the image border are not exact
    (FFT wrap-around); callers keep a margin there.

    With a `lens` (lens.py), each colour channel has its own CoC (chromatic aberration) and
    its own alpha, and where the PSF's shape changes across the frame each layer is blurred
    with the PSFs of the four corners and blended bilinearly (`_LensBlur`). The maps are
    green's, and the RMS radius is that of the blended PSF: the blend's second moment is the
    weighted sum of the corners' ones.
    """
    h, w = coc.shape
    labels, radii = depth_layers(coc, settings)
    blurred_up_to = np.maximum.accumulate(np.abs(radii) >= 0.5)  # [j]: a layer 0..j is blurred
    planar = np.ascontiguousarray(linear.transpose(2, 0, 1))
    blur = _LensBlur(lens, aperture, settings, (h, w)) if lens is not None else None
    acc = np.zeros((4 if blur is None else blur.channels, h, w), dtype=np.float32)  # colour, alpha(s)
    rms = np.zeros((radii.size, 1 if blur is None else blur.weights.shape[0]), dtype=np.float32)
    for j in range(radii.size - 1, -1, -1):
        own = (labels == j).astype(np.float32)
        if j > 0 and blurred_up_to[j - 1]:
            colour, alpha = _extend_behind(planar, own, labels < j, j == radii.size - 1, settings)
        else:
            colour, alpha = planar * own, own
        if blur is None:
            psf = aperture_psf(abs(float(radii[j])), aperture, flip=radii[j] < 0, supersample=settings.psf_supersample)
            rms[j], n = psf_rms_radius(psf), psf.shape[0] // 2
        else:
            psfs = blur.psfs(float(radii[j]))
            rms[j] = blur.rms(psfs)
            n = max(p.shape[0] for row in psfs for p in row) // 2
        rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
        y0, y1 = max(rows[0] - n, 0), min(rows[-1] + 1 + n, h)
        x0, x1 = max(cols[0] - n, 0), min(cols[-1] + 1 + n, w)
        layer = np.concatenate([colour[:, y0:y1, x0:x1], alpha[None, y0:y1, x0:x1]], axis=0)
        wrap = (y1 - y0 == h, x1 - x0 == w)
        if blur is not None:
            layer = blur.apply(layer, psfs, (slice(y0, y1), slice(x0, x1)), wrap)
        elif n > 0:
            layer = _fft_blur(layer, psf, wrap_y=wrap[0], wrap_x=wrap[1])
        window = acc[:, y0:y1, x0:x1]
        window[:3] *= 1.0 - layer[3:]
        window[3:] *= 1.0 - layer[3:]
        window += layer
    image = acc[:3] / np.maximum(acc[3:], 1e-6)
    radius_map = np.abs(radii)[labels]
    radius_map[radius_map < 0.5] = 0.0  # those layers were rendered with a Dirac
    if blur is None:
        rms_map = rms[labels, 0]
    else:
        rms_map = np.sqrt(np.einsum("hwk,khw->hw", rms[labels] ** 2, blur.weights)).astype(np.float32)
    return np.clip(image.transpose(1, 2, 0), 0.0, 1.0), radius_map.astype(np.float32), rms_map


class _LensBlur:
    """Blurs layers through an aberrated lens: per-channel CoCs and, where the PSF's shape
    varies across the frame, the PSFs of the region's four corners blended bilinearly."""

    def __init__(self, lens: Lens, aperture: Aperture, settings: RenderSettings, shape: tuple[int, int]):
        h, w = shape
        self.lens, self.aperture, self.settings = lens, aperture, settings
        self.limit = settings.max_coc_radius  # what the render margin leaves room for
        self.channels = 6 if lens.chromatic else 4  # colour, then one alpha or one per colour
        if lens.varies:
            corners = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)]
            ty = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
            tx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
            self.weights = np.stack([(1 - ty) * (1 - tx), (1 - ty) * tx, ty * (1 - tx), ty * tx])  # (4, H, W)
        else:
            corners = [(h / 2, w / 2)]
            self.weights = np.ones((1, h, w), dtype=np.float32)
        self.shapes = [lens.shape_at(y, x) for y, x in corners]
        self.middle = lens.shape_at(h / 2, w / 2)
        self.spread = max(_shape_distance(s, self.middle) for s in self.shapes)

    def psfs(self, radius: float) -> list[list[np.ndarray]]:
        """[corner][channel] PSFs of a layer of signed CoC `radius` (one channel: all alike).
        Where no corner's PSF reaches a pixel farther than the middle's, one row: the middle's."""
        shifts = (self.lens.chromatic, 0.0, -self.lens.chromatic) if self.lens.chromatic else (0.0,)
        top = self.settings.max_coc_radius
        cocs = [float(np.clip(radius + s, -top, top)) for s in shifts]
        varied = self.spread * max(abs(c) for c in cocs) >= 1.0
        return [[lens_psf(c, self.aperture, shape, self.settings.psf_supersample, self.limit) for c in cocs]
                for shape in (self.shapes if varied else [self.middle])]

    def rms(self, psfs: list[list[np.ndarray]]) -> np.ndarray:
        """RMS radius of green's PSF at each corner."""
        rms = [psf_rms_radius(row[len(row) // 2]) for row in psfs]
        return np.array(rms if len(rms) > 1 else rms * self.weights.shape[0], dtype=np.float32)

    def apply(self, layer: np.ndarray, psfs: list[list[np.ndarray]], window: tuple[slice, slice],
              wrap: tuple[bool, bool]) -> np.ndarray:
        """4xhxw premultiplied colour + alpha -> blurred colour + alpha (4xhxw), or + one alpha
        per colour (6xhxw) with chromatic aberration."""
        _, h, w = layer.shape
        n = max(p.shape[0] for row in psfs for p in row) // 2
        sy = h if wrap[0] else sfft.next_fast_len(h + n, real=True)
        sx = w if wrap[1] else sfft.next_fast_len(w + n, real=True)
        spectrum = sfft.rfft2(layer, s=(sy, sx))
        out = np.zeros((self.channels, h, w), dtype=np.float32)
        for k, row in enumerate(psfs):
            weight = self.weights[k][window]
            for ch, psf in enumerate(row):
                part = spectrum if len(row) == 1 else spectrum[[ch, 3]]  # all channels, or one + alpha
                part = part * sfft.rfft2(_kernel_image(psf, sy, sx))
                blurred = sfft.irfft2(part, s=(sy, sx))[:, :h, :w]
                if len(psfs) > 1:
                    blurred *= weight
                if len(row) == 1:
                    out += blurred
                else:
                    out[ch] += blurred[0]
                    out[3 + ch] += blurred[1]
        np.clip(out[3:], 0.0, 1.0, out=out[3:])
        return np.maximum(out, 0.0, out=out)


def _shape_distance(a: PsfShape, b: PsfShape) -> float:
    """About how far (px per px of CoC) the light of two PSF shapes lands apart at most:
    astigmatism's stretch, coma's tail (about 3k long) and their turn between the two."""
    turn = abs(math.remainder(a.angle - b.angle, 2 * math.pi))
    return (abs(a.astigmatism - b.astigmatism) + 3 * abs(a.coma - b.coma)
            + max(a.astigmatism + 3 * a.coma, b.astigmatism + 3 * b.coma) * turn)


def _extend_behind(
    planar: np.ndarray, own: np.ndarray, hidden: np.ndarray, is_back: bool, settings: RenderSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied colour and alpha of a layer continued behind the nearer layers.

    Without this, a blurry foreground over a sharp background would show a
    hard outline: nothing of the background could show through the soft edge
    of the foreground. The continuation is a normalised box blur of the layer
    at half resolution. It covers the hidden pixels within about
    `max_coc_radius` px of the layer, or all of them for the back-most layer,
    which then makes the image opaque everywhere.
    """
    h, w = own.shape
    premult = planar * own
    low = _half(np.concatenate([premult, own[None]], axis=0))
    size = 2 * max(1, int(settings.max_coc_radius) // 4) + 1  # two passes reach ~max_coc_radius px
    for _ in range(2):
        low = ndimage.uniform_filter(low, size=(1, size, size), mode="constant")
    weight = low[3]
    mean = premult.reshape(3, -1).sum(axis=1) / max(float(own.sum()), 1.0)
    extension = np.where(weight > 1e-6, low[:3] / np.maximum(weight, 1e-6), mean[:, None, None])
    extension = _double(extension)[:, :h, :w]
    if is_back:
        cover = hidden.astype(np.float32)
    else:
        cover = hidden * np.clip(_double(weight[None])[0, :h, :w] / 0.02, 0.0, 1.0)
    return premult + extension * cover, own + cover


def _half(x: np.ndarray) -> np.ndarray:
    """2x2 mean-downsample of a CxHxW stack (odd sizes are edge-padded)."""
    _, h, w = x.shape
    if h % 2 or w % 2:
        x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge")
    return 0.25 * (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2])


def _double(x: np.ndarray) -> np.ndarray:
    """Nearest-neighbour 2x upsample of a CxHxW stack."""
    return x.repeat(2, axis=1).repeat(2, axis=2)


def _fft_blur(layer: np.ndarray, psf: np.ndarray, wrap_y: bool, wrap_x: bool) -> np.ndarray:
    """Convolve a CxHxW stack with a centred PSF by FFT.

    Along an axis that spans the whole image the convolution is circular (the
    wrap lands in the caller's margin); otherwise the window is zero-padded so
    the result inside it is the exact linear convolution.
    """
    _, h, w = layer.shape
    n = psf.shape[0] // 2
    sy = h if wrap_y else sfft.next_fast_len(h + n, real=True)
    sx = w if wrap_x else sfft.next_fast_len(w + n, real=True)
    spectrum = sfft.rfft2(layer, s=(sy, sx)) * sfft.rfft2(_kernel_image(psf, sy, sx))
    out = sfft.irfft2(spectrum, s=(sy, sx))[:, :h, :w]
    out[3] = np.clip(out[3], 0.0, 1.0)
    return np.maximum(out, 0.0, out=out)


def _kernel_image(psf: np.ndarray, sy: int, sx: int) -> np.ndarray:
    """The centred PSF placed on an sy x sx grid with its centre at (0, 0), wrapped."""
    n = psf.shape[0] // 2
    kernel = np.zeros((sy, sx), dtype=np.float32)
    offsets = np.arange(-n, n + 1)
    np.add.at(kernel, np.ix_(offsets % sy, offsets % sx), psf)
    return kernel
