"""Synthetic defocus: turn one sharp photo into a (blurry, sharp) training pair.

The renderer fakes what a camera with a shallow depth of field does:

1. a random scene layout gives every pixel an inverse depth ("disparity"): a
   background that is flat or a tilted plane, plus a few foreground objects;
2. a random focal plane turns disparity into a signed circle-of-confusion
   (CoC) radius; for a thin lens the radius grows linearly with
   |1/d - 1/d_focus|, so it is linear in disparity;
3. the CoC is cut into a handful of depth layers; each layer is blurred with
   an aperture-shaped PSF (disk, polygon, bright rim, soft edge, cat-eye) in
   linear light and the layers are composited back to front with "over", so
   blurry foreground spills over the background but a sharp foreground keeps
   its hard edge;
4. the blurry image gets camera noise, 8-bit quantisation and JPEG.

The sharp target is the clean input photo, or, for a share of the samples
(`p_soft_source`), the photo with its background already softened, as a photo
taken with a shallow depth of field is: the network then learns to leave blur
that belongs to the target alone instead of inventing edges in it. For another share
(`p_highlights`) the photo's brightest light is stretched past white before the blur and
clipped after it, as a camera clips out-of-focus lamps into flat bright discs; for a
share (`p_high_iso`) the noise and JPEG are a high-ISO phone's. Besides the
CoC radius, each pair carries the RMS radius of the PSF every pixel was
rendered with, the quantity the network's defocus map estimates. Everything random comes from the
`numpy.random.Generator` passed in, so a pair is a pure function of the seed.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw
from scipy import fft as sfft
from scipy import ndimage

from ..levels import to_levels
from ..srgb import linear_to_srgb, srgb_to_linear

APERTURE_KINDS = ("disk", "polygon", "rim", "soft", "cateye")


@dataclass(frozen=True)
class RenderSettings:
    """Knobs of the synthetic defocus renderer (defaults are the training recipe)."""

    # Largest CoC radius in px. Each sample draws its own maximum up to this,
    # so the net sees the strong blur (>= 19 px) of real shallow-DoF photos.
    max_coc_radius: float = 20.0
    # Smallest per-sample maximum radius for a blurred sample: below ~1 px the
    # pair is nearly identical and teaches little.
    min_coc_radius: float = 1.0
    # max radius = min + (max - min) * u**power, u ~ U(0, 1). power > 1 puts
    # most samples at moderate blur, as in real data (DPDD has many small radii).
    radius_power: float = 1.7
    # Chance of an all-in-focus sample (every radius < 0.5 px) so the network
    # learns to leave sharp images alone.
    p_all_in_focus: float = 0.05
    # Chance that the focal plane sits on a visible surface, so part of the
    # crop is in focus; otherwise focus is anywhere (possibly all blurred).
    p_focus_on_scene: float = 0.85
    # Up to this many foreground objects (0..N drawn uniformly).
    max_objects: int = 4
    # Chance that the background is a tilted plane rather than at one depth.
    p_slanted_background: float = 0.5
    # Chance that a foreground object is itself tilted.
    p_slanted_object: float = 0.3
    # At most this many depth layers (each costs one FFT blur); 12 keeps the
    # radius steps between neighbouring layers small at < 40 ms per sample.
    max_layers: int = 12
    # Layers are spaced evenly in t = log(1 + r / layer_r0): fine steps near
    # focus, where 0 vs 1 px matters, coarser steps at large radii.
    layer_r0: float = 1.0
    # Smallest layer spacing in t; stops us from spending layers on tiny
    # radius differences when the sample has little depth range.
    min_layer_step: float = 0.2
    # Relative odds of the aperture shapes in APERTURE_KINDS order: plain
    # disk, 5-9 blade polygon, bright rim (soap bubble), soft edge, cat-eye.
    aperture_weights: tuple[float, ...] = (0.45, 0.25, 0.12, 0.12, 0.06)
    # PSFs are rendered on a grid this many times finer, then box-filtered
    # (anti-aliasing of the aperture edge).
    psf_supersample: int = 4
    # Chance of camera noise on the blurry image.
    p_noise: float = 0.8
    # Poisson part: variance = shot * linear_value, shot drawn log-uniformly.
    shot_noise_range: tuple[float, float] = (1e-4, 3e-3)
    # Gaussian read noise std in linear light, drawn log-uniformly.
    read_noise_range: tuple[float, float] = (5e-4, 5e-3)
    # Round the blurry image to 8 bits, like every real photo.
    quantize: bool = True
    # Chance of JPEG compression of the blurry image (phone / web photos).
    p_jpeg: float = 0.7
    # JPEG quality drawn uniformly from this integer range (inclusive).
    jpeg_quality_range: tuple[int, int] = (60, 98)
    # Chance that the sharp target's background (the back surface) is itself soft, as in
    # a photo with natural shallow depth of field: a Gaussian of std drawn uniformly from
    # soft_source_sigma (px) softens it before the defocus is rendered on top. 0 draws no
    # random numbers, so older recipes render exactly as before.
    p_soft_source: float = 0.0
    soft_source_sigma: tuple[float, float] = (1.0, 5.0)
    # Chance that the scene's highlights were brighter than the sensor's white, as lamps,
    # specular glints and sunlit sky are: linear values above highlight_knee are stretched
    # by a gain drawn log-uniformly from highlight_gain before the blur, and both images clip
    # at white after it, so out-of-focus highlights become bright clipped discs (real
    # bokeh) while the sharp target clips where an in-focus exposure would. 0 draws no
    # random numbers, so older recipes render exactly as before.
    p_highlights: float = 0.0
    highlight_knee: float = 0.7
    highlight_gain: tuple[float, float] = (2.0, 30.0)
    # Chance of a small sensor at high ISO behind a strong JPEG, as in a phone photo taken
    # in dim light and shared on the web: noise and JPEG are then always on, drawn from the
    # ranges below instead of the ones above. 0 draws no random numbers, so older recipes
    # render exactly as before.
    p_high_iso: float = 0.0
    high_iso_shot_noise_range: tuple[float, float] = (1e-3, 2e-2)
    high_iso_read_noise_range: tuple[float, float] = (2e-3, 2e-2)
    high_iso_jpeg_quality_range: tuple[int, int] = (30, 85)

    def high_iso(self) -> "RenderSettings":
        """These settings with the high-ISO camera's noise and JPEG always on."""
        return replace(self, p_noise=1.0, shot_noise_range=self.high_iso_shot_noise_range,
                       read_noise_range=self.high_iso_read_noise_range, p_jpeg=1.0,
                       jpeg_quality_range=self.high_iso_jpeg_quality_range)

    @property
    def margin(self) -> int:
        """Context (px) kept around the output so no PSF reaches past the render region."""
        return int(math.ceil(self.max_coc_radius)) + 2


# Named renderer settings. "training" is the recipe the shipped weights were trained and
# validated with (Kodak24). "out-of-recipe" renders frozen evaluation sets with settings no
# training run uses: other aperture mixes (more rims, soft edges and cat-eyes), strong blur
# as often as mild, heavier sensor noise, always JPEG at lower qualities, more objects and
# more tilted surfaces.
RECIPES: dict[str, RenderSettings] = {
    "training": RenderSettings(),
    "out-of-recipe": RenderSettings(
        radius_power=1.0,
        p_all_in_focus=0.0,
        max_objects=7,
        p_slanted_background=0.8,
        p_slanted_object=0.6,
        aperture_weights=(0.15, 0.2, 0.25, 0.25, 0.15),
        p_noise=1.0,
        shot_noise_range=(1e-3, 1e-2),
        read_noise_range=(2e-3, 1e-2),
        p_jpeg=1.0,
        jpeg_quality_range=(35, 75),
    ),
}


class RenderedPair(NamedTuple):
    """One training pair. Images are HxWx3 float32 sRGB in [0, 1]."""

    blurry: np.ndarray
    sharp: np.ndarray
    coc: np.ndarray  # HxW float32: blur radius (px) each pixel was rendered with
    kernel_rms: np.ndarray  # HxW float32: RMS radius (px) of the PSF each pixel was rendered with


class Aperture(NamedTuple):
    """Shape of the lens opening; hashable so PSFs can be cached."""

    kind: str = "disk"  # one of APERTURE_KINDS
    blades: int = 0  # polygon: number of blades
    angle: float = 0.0  # polygon rotation / cat-eye direction, radians
    strength: float = 0.0  # rim brightness, edge softness or cat-eye offset


# ----------------------------------------------------------------------------
# point spread functions


def aperture_psf(
    radius: float, aperture: Aperture = Aperture(), flip: bool = False, supersample: int = 4
) -> np.ndarray:
    """Normalised (2n+1)x(2n+1) PSF for a CoC of `radius` px, n = ceil(radius).

    The radius is rounded to 0.25 px so PSFs can be cached; radius < 0.5 gives
    a 1x1 Dirac. `flip` rotates the PSF by 180 degrees, which is what the
    aperture image looks like for points in front of the focal plane.
    The returned array is read-only (it is shared through a cache).
    """
    if radius < 0.5:
        return _DIRAC
    psf = _cached_psf(round(radius * 4) / 4, aperture, supersample)
    return psf[::-1, ::-1] if flip else psf


_DIRAC = np.ones((1, 1), dtype=np.float32)
_DIRAC.flags.writeable = False


def psf_rms_radius(psf: np.ndarray) -> float:
    """sqrt(sum_{u,v} (u^2 + v^2) psf(u, v)) of a centred, normalised PSF, in pixels: the
    same moment as rkr.rms_radius takes of the network's kernels. A uniform disk of radius
    R has R / sqrt(2)."""
    n = psf.shape[0] // 2
    r = np.arange(-n, n + 1, dtype=np.float64)
    return float(np.sqrt((psf * (r[:, None] ** 2 + r[None, :] ** 2)).sum()))


@lru_cache(maxsize=4096)
def _cached_psf(radius: float, aperture: Aperture, supersample: int) -> np.ndarray:
    """Render the PSF on a supersampled grid and box-filter it down."""
    n = int(math.ceil(radius))
    size = 2 * n + 1
    offsets = (np.arange(size * supersample) + 0.5) / supersample - (n + 0.5)
    y, x = np.meshgrid(offsets, offsets, indexing="ij")
    weight = _aperture_weight(x / radius, y / radius, aperture)
    psf = weight.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    psf = (psf / psf.sum()).astype(np.float32)
    psf.flags.writeable = False
    return psf


def _aperture_weight(x: np.ndarray, y: np.ndarray, aperture: Aperture) -> np.ndarray:
    """Light passed at unit-radius coordinates (x, y) by the aperture."""
    rho = np.hypot(x, y)
    inside = rho <= 1.0
    if aperture.kind == "disk":
        return inside.astype(np.float64)
    if aperture.kind == "polygon":
        # inside a regular polygon with circumradius 1: under the apothem for every edge normal
        half = math.pi / aperture.blades
        normals = aperture.angle + half * (2 * np.arange(aperture.blades) + 1)
        proj = x[..., None] * np.cos(normals) + y[..., None] * np.sin(normals)
        return (proj.max(axis=-1) <= math.cos(half)).astype(np.float64)
    if aperture.kind == "rim":
        # over-corrected spherical aberration: bright ring ("soap bubble" bokeh)
        return inside * (1.0 + aperture.strength * rho**4)
    if aperture.kind == "soft":
        # under-corrected: bright centre fading to a soft edge
        return np.clip((1.0 - rho) / aperture.strength, 0.0, 1.0)
    if aperture.kind == "cateye":
        # vignetted aperture: overlap of two unit disks shifted by +-offset/2
        dx = 0.5 * aperture.strength * math.cos(aperture.angle)
        dy = 0.5 * aperture.strength * math.sin(aperture.angle)
        a = np.hypot(x - dx, y - dy) <= 1.0
        b = np.hypot(x + dx, y + dy) <= 1.0
        return (a & b).astype(np.float64)
    raise ValueError(f"unknown aperture kind {aperture.kind!r}")


def random_aperture(rng: np.random.Generator, settings: RenderSettings) -> Aperture:
    """Draw one lens per sample; continuous parameters are quantised for the PSF cache."""
    weights = np.asarray(settings.aperture_weights, dtype=np.float64)
    kind = APERTURE_KINDS[rng.choice(len(APERTURE_KINDS), p=weights / weights.sum())]
    if kind == "polygon":
        blades = int(rng.integers(5, 10))
        angle = int(rng.integers(0, 24)) * (2 * math.pi / blades) / 24
        return Aperture(kind, blades=blades, angle=angle)
    if kind == "rim":
        return Aperture(kind, strength=0.25 * int(rng.integers(2, 9)))  # 0.5 .. 2.0
    if kind == "soft":
        return Aperture(kind, strength=0.1 * int(rng.integers(2, 9)))  # 0.2 .. 0.8
    if kind == "cateye":
        angle = int(rng.integers(0, 36)) * math.pi / 18
        return Aperture(kind, angle=angle, strength=0.1 * int(rng.integers(3, 10)))  # 0.3 .. 0.9
    return Aperture("disk")


# ----------------------------------------------------------------------------
# scene layout


def random_disparity(
    shape: tuple[int, int], visible: tuple[slice, slice], rng: np.random.Generator, settings: RenderSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Random inverse depth (larger = nearer) of a background plus foreground objects.

    Returns (disparity, surface): float32 disparity and an int map saying which
    surface each pixel shows (0 = background, k = k-th object). A tilted 3D
    plane has inverse depth affine in pixel coordinates, so slanted surfaces
    are drawn as affine disparity ramps (their CoC then varies linearly).
    Objects are z-buffered: the nearest one wins.
    """
    disparity = _background(shape, visible, rng, settings)
    surface = np.zeros(shape, dtype=np.int32)
    for k in range(1, int(rng.integers(0, settings.max_objects + 1)) + 1):
        mask = _random_shape(shape, visible, rng)
        if not mask.any():
            continue
        front = float(disparity[mask].max()) + rng.uniform(0.05, 0.8)
        depth = np.full(shape, front, dtype=np.float32)
        if rng.random() < settings.p_slanted_object:
            depth = np.maximum(front + _ramp(shape, visible, rng, 0.3), front - 0.04)
        shown = mask & (depth > disparity)
        disparity = np.where(shown, depth, disparity)
        surface[shown] = k
    return disparity.astype(np.float32), surface


def _background(
    shape: tuple[int, int], visible: tuple[slice, slice], rng: np.random.Generator, settings: RenderSettings
) -> np.ndarray:
    """Flat or tilted background; disparity 0 (infinity) where a tilted plane passes the horizon."""
    level = rng.uniform(0.0, 0.5)
    if rng.random() >= settings.p_slanted_background:
        return np.full(shape, level, dtype=np.float32)
    return np.maximum(level + _ramp(shape, visible, rng, 1.0), 0.0).astype(np.float32)


def _ramp(
    shape: tuple[int, int], visible: tuple[slice, slice], rng: np.random.Generator, amplitude: float
) -> np.ndarray:
    """Affine ramp through 0 at the visible centre; changes by up to `amplitude` across the crop."""
    ys, xs = visible
    size = max(ys.stop - ys.start, xs.stop - xs.start)
    cy, cx = (ys.start + ys.stop) / 2, (xs.start + xs.stop) / 2
    angle = rng.uniform(0, 2 * math.pi)
    slope = rng.uniform(0.1, 1.0) * amplitude / size
    y = (np.arange(shape[0], dtype=np.float32) - cy)[:, None]
    x = (np.arange(shape[1], dtype=np.float32) - cx)[None, :]
    return slope * (x * math.cos(angle) + y * math.sin(angle))


def _random_shape(shape: tuple[int, int], visible: tuple[slice, slice], rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of an ellipse, polygon, smooth blob or half-plane near the visible area."""
    h, w = shape
    ys, xs = visible
    cy, cx = rng.uniform(ys.start, ys.stop), rng.uniform(xs.start, xs.stop)
    kind = int(rng.integers(0, 4))
    if kind == 3:  # half-plane: a foreground edge crossing the frame (wall, table, branch)
        angle = rng.uniform(0, 2 * math.pi)
        y = np.arange(h, dtype=np.float32)[:, None] - cy
        x = np.arange(w, dtype=np.float32)[None, :] - cx
        return x * math.cos(angle) + y * math.sin(angle) > 0
    r0 = min(ys.stop - ys.start, xs.stop - xs.start) * rng.uniform(0.08, 0.5)
    if kind == 0:  # ellipse
        theta = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        px, py = r0 * np.cos(theta), r0 * rng.uniform(0.25, 1.0) * np.sin(theta)
    elif kind == 1:  # star-shaped polygon with 3..8 corners
        count = int(rng.integers(3, 9))
        theta = np.sort(rng.uniform(0, 2 * math.pi, count))
        radius = r0 * rng.uniform(0.5, 1.0, count)
        px, py = radius * np.cos(theta), radius * np.sin(theta)
    else:  # smooth blob: radius is a short random Fourier series of the angle
        theta = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        radius = np.ones_like(theta)
        for k in range(1, 5):
            radius += rng.uniform(0, 0.3) / k * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
        px, py = r0 * radius * np.cos(theta), r0 * radius * np.sin(theta)
    rot = rng.uniform(0, 2 * math.pi)
    qx = cx + px * math.cos(rot) - py * math.sin(rot)
    qy = cy + px * math.sin(rot) + py * math.cos(rot)
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon(list(zip(qx.tolist(), qy.tolist())), fill=1)
    return np.asarray(canvas, dtype=bool)


def random_coc(
    disparity: np.ndarray,
    surface: np.ndarray,
    visible: tuple[slice, slice],
    rng: np.random.Generator,
    settings: RenderSettings,
) -> np.ndarray:
    """Signed CoC radius (px) per pixel: > 0 behind the focal plane, < 0 in front.

    Thin lens: radius = K * |disparity - disparity_focus|; K is set so the
    largest radius inside the visible area equals a randomly drawn maximum.
    The focal plane is usually put on a random visible surface (background or
    an object, each equally likely), so part of the crop is sharp.
    """
    if rng.random() < settings.p_all_in_focus:
        max_radius = rng.uniform(0.0, 0.45)
    else:
        u = rng.random() ** settings.radius_power
        max_radius = settings.min_coc_radius + (settings.max_coc_radius - settings.min_coc_radius) * u
    seen, seen_surface = disparity[visible], surface[visible]
    lo, hi = float(seen.min()), float(seen.max())
    flat = hi - lo < 1e-6  # focusing on a flat scene would make it all sharp
    if rng.random() < settings.p_focus_on_scene and not flat:
        ids = np.unique(seen_surface)
        on = seen[seen_surface == ids[int(rng.integers(0, ids.size))]]
        focus = float(on[int(rng.integers(0, on.size))])
    else:
        spread = 0.3 * (hi - lo) + 0.05
        focus = rng.uniform(lo - spread, hi + spread) if not flat else lo + rng.choice([-1, 1]) * spread
    offset = focus - disparity
    largest = float(np.abs(offset[visible]).max())
    scale = max_radius / largest if largest > 1e-6 else 0.0
    return np.clip(offset * scale, -max_radius, max_radius).astype(np.float32)


# ----------------------------------------------------------------------------
# layered rendering


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
    linear: np.ndarray, coc: np.ndarray, aperture: Aperture, settings: RenderSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Blur a linear-light HxWx3 image by the signed CoC map; returns (image, radius map,
    PSF RMS radius map).

    Each layer's premultiplied colour and alpha are blurred with its PSF and
    composited back to front with "over". Where a blurred layer lies in front,
    the layers behind it are first continued a little way behind it (see
    `_extend_behind`), so its soft edge has something to show through. The
    result is divided by the final alpha, which undoes any remaining darkening
    at holes. Pixels within a PSF radius of the image border are not exact
    (FFT wrap-around); callers keep a margin there.
    """
    h, w = coc.shape
    labels, radii = depth_layers(coc, settings)
    blurred_up_to = np.maximum.accumulate(np.abs(radii) >= 0.5)  # [j]: a layer 0..j is blurred
    planar = np.ascontiguousarray(linear.transpose(2, 0, 1))
    acc = np.zeros((4, h, w), dtype=np.float32)
    rms = np.zeros(radii.size, dtype=np.float32)
    for j in range(radii.size - 1, -1, -1):
        own = (labels == j).astype(np.float32)
        if j > 0 and blurred_up_to[j - 1]:
            colour, alpha = _extend_behind(planar, own, labels < j, j == radii.size - 1, settings)
        else:
            colour, alpha = planar * own, own
        psf = aperture_psf(abs(float(radii[j])), aperture, flip=radii[j] < 0, supersample=settings.psf_supersample)
        rms[j] = psf_rms_radius(psf)
        n = psf.shape[0] // 2
        rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
        y0, y1 = max(rows[0] - n, 0), min(rows[-1] + 1 + n, h)
        x0, x1 = max(cols[0] - n, 0), min(cols[-1] + 1 + n, w)
        layer = np.concatenate([colour[:, y0:y1, x0:x1], alpha[None, y0:y1, x0:x1]], axis=0)
        if n > 0:
            layer = _fft_blur(layer, psf, wrap_y=(y1 - y0 == h), wrap_x=(x1 - x0 == w))
        window = acc[:, y0:y1, x0:x1]
        window *= 1.0 - layer[3:4]
        window += layer
    image = acc[:3] / np.maximum(acc[3:4], 1e-6)
    radius_map = np.abs(radii)[labels]
    radius_map[radius_map < 0.5] = 0.0  # those layers were rendered with a Dirac
    return np.clip(image.transpose(1, 2, 0), 0.0, 1.0), radius_map.astype(np.float32), rms[labels]


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
    kernel = np.zeros((sy, sx), dtype=np.float32)
    offsets = np.arange(-n, n + 1)
    np.add.at(kernel, np.ix_(offsets % sy, offsets % sx), psf)
    spectrum = sfft.rfft2(layer, s=(sy, sx)) * sfft.rfft2(kernel)
    out = sfft.irfft2(spectrum, s=(sy, sx))[:, :h, :w]
    out[3] = np.clip(out[3], 0.0, 1.0)
    return np.maximum(out, 0.0, out=out)


# ----------------------------------------------------------------------------
# camera


def add_camera_noise(linear: np.ndarray, rng: np.random.Generator, settings: RenderSettings) -> np.ndarray:
    """Poisson-Gaussian noise in linear light (variance = shot * x + read**2), random level."""
    if rng.random() >= settings.p_noise:
        return linear
    shot = _log_uniform(rng, settings.shot_noise_range)
    read = _log_uniform(rng, settings.read_noise_range)
    std = np.sqrt(shot * np.maximum(linear, 0.0) + read * read)
    return linear + std * rng.standard_normal(linear.shape, dtype=np.float32)


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A number drawn uniformly in log space between the two bounds."""
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return math.exp(rng.uniform(lo, hi))


def encode_8bit(srgb: np.ndarray, rng: np.random.Generator, settings: RenderSettings) -> np.ndarray:
    """8-bit rounding and, at random, a JPEG round trip (in memory)."""
    if rng.random() < settings.p_jpeg:
        lo, hi = settings.jpeg_quality_range
        quality = int(rng.integers(lo, hi + 1))
        image = Image.fromarray(to_levels(srgb))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0
    if settings.quantize:
        return to_levels(srgb).astype(np.float32) / 255.0
    return np.clip(srgb, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------
# main entry point


def render_pair(
    sharp: np.ndarray,
    rng: np.random.Generator,
    settings: RenderSettings = RenderSettings(),
    border: int = 0,
) -> RenderedPair:
    """Render a synthetic defocus pair from a sharp HxWx3 float sRGB image in [0, 1].

    `border` px on each side of `sharp` are context only: the outputs are the
    centre (H - 2*border) x (W - 2*border). Missing context up to
    `settings.margin` (and up to an FFT-friendly size) is made by reflection,
    so with the default border=0 the output has the input's size.
    """
    sharp = _check_image(sharp)
    out_h, out_w = sharp.shape[0] - 2 * border, sharp.shape[1] - 2 * border
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"border {border} leaves no output for an image of shape {sharp.shape}")
    region, top, left = _context_region(sharp, border, settings.margin)
    visible = (slice(top, top + out_h), slice(left, left + out_w))
    disparity, surface = random_disparity(region.shape[:2], visible, rng, settings)
    coc = random_coc(disparity, surface, visible, rng, settings)
    aperture = random_aperture(rng, settings)
    if settings.p_soft_source > 0 and rng.random() < settings.p_soft_source:
        region = soften_background(region, surface, rng.uniform(*settings.soft_source_sigma))
    scene = srgb_to_linear(region)
    if settings.p_highlights > 0 and rng.random() < settings.p_highlights:
        scene = stretch_highlights(scene, settings.highlight_knee, _log_uniform(rng, settings.highlight_gain))
        region = linear_to_srgb(np.minimum(scene, 1.0)).astype(np.float32)  # the in-focus exposure
    blurred, radius_map, rms_map = render_layers(scene, coc, aperture, settings)  # clips at white
    camera = settings.high_iso() if settings.p_high_iso > 0 and rng.random() < settings.p_high_iso else settings
    noisy = add_camera_noise(blurred[visible], rng, camera)
    blurry = encode_8bit(linear_to_srgb(noisy), rng, camera)
    target = np.ascontiguousarray(region[visible])
    return RenderedPair(blurry, target, np.ascontiguousarray(radius_map[visible]),
                        np.ascontiguousarray(rms_map[visible]))


def stretch_highlights(linear: np.ndarray, knee: float, gain: float) -> np.ndarray:
    """Scene light from a photo's linear values: unchanged below `knee`, stretched by
    `gain` above it (continuous at the knee), so a white that the photo clipped becomes
    light up to knee + gain * (1 - knee) times the sensor's white."""
    return np.where(linear > knee, knee + gain * (linear - knee), linear).astype(np.float32)


def soften_background(image: np.ndarray, surface: np.ndarray, sigma: float) -> np.ndarray:
    """The sRGB image with its back surface (surface == 0) softened by a Gaussian of std
    `sigma` px in linear light, feathered over about sigma px into the objects in front:
    a source photo that already has a shallow depth of field."""
    linear = srgb_to_linear(image)
    soft = ndimage.gaussian_filter(linear, sigma=(sigma, sigma, 0), mode="reflect")
    weight = ndimage.gaussian_filter((surface == 0).astype(np.float32), sigma=0.5 * sigma, mode="reflect")
    return linear_to_srgb(linear + weight[..., None] * (soft - linear)).astype(np.float32)


def _check_image(image: np.ndarray) -> np.ndarray:
    """Validate an HxWx3 image and return it as float32."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    return np.asarray(image, dtype=np.float32)


def _context_region(image: np.ndarray, border: int, margin: int) -> tuple[np.ndarray, int, int]:
    """Cut or reflect-pad `image` to the render region; returns (region, top, left) of the output in it.

    The region has at least `margin` px of context on each side and a size
    that scipy's FFT handles fast.
    """
    pads = []
    for axis in (0, 1):
        out = image.shape[axis] - 2 * border
        total = sfft.next_fast_len(out + 2 * margin, real=True)
        before = (total - out) // 2
        pads.append((before, total - out - before))
    (top, bottom), (left, right) = pads
    # take what real context there is, reflect for the rest
    cut = image[
        max(border - top, 0) : image.shape[0] - max(border - bottom, 0),
        max(border - left, 0) : image.shape[1] - max(border - right, 0),
    ]
    extra = [(max(top - border, 0), max(bottom - border, 0)), (max(left - border, 0), max(right - border, 0)), (0, 0)]
    return np.pad(cut, extra, mode="reflect"), top, left
