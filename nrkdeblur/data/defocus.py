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
4. the blurry image goes through a camera: noise, 8-bit quantisation and JPEG (camera.py).

Lenses with aberrations (lens.py: spherical, onion rings, astigmatism, coma, field curvature,
chromatic) and a phone's pipeline (camera.py: mosaic, raw noise at an ISO, tone curve,
sharpening) come on for the shares the settings (settings.py) ask for; with every share at 0
the renderer draws no random number for them and renders as before.

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

import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw
from scipy import fft as sfft
from scipy import ndimage

from ..srgb import linear_to_srgb, srgb_to_linear
from .camera import log_uniform, add_camera_noise, develop, encode_8bit, random_look, tone_curve
from .layers import depth_layers, render_layers
from .lens import Aperture, aperture_psf, curved_coc, psf_rms_radius, random_aperture, random_lens
from .settings import APERTURE_KINDS, RECIPES, RenderSettings

__all__ = ["APERTURE_KINDS", "RECIPES", "Aperture", "RenderSettings", "RenderedPair", "add_camera_noise",
           "aperture_psf", "depth_layers", "encode_8bit", "psf_rms_radius", "random_aperture", "render_layers",
           "render_pair"]


class RenderedPair(NamedTuple):
    """One training pair. Images are HxWx3 float32 sRGB in [0, 1]."""

    blurry: np.ndarray
    sharp: np.ndarray
    coc: np.ndarray  # HxW float32: blur radius (px) each pixel was rendered with
    kernel_rms: np.ndarray  # HxW float32: RMS radius (px) of the PSF each pixel was rendered with


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
        scene = stretch_highlights(scene, settings.highlight_knee, log_uniform(rng, settings.highlight_gain))
        region = linear_to_srgb(np.minimum(scene, 1.0)).astype(np.float32)  # the in-focus exposure
    lens = random_lens(rng, settings, aperture, float(np.abs(coc[visible]).max()), visible)
    if lens is not None:
        coc = curved_coc(coc, lens, settings.max_coc_radius)
    blurred, radius_map, rms_map = render_layers(scene, coc, aperture, settings, lens)  # clips at white
    camera = settings.high_iso() if settings.p_high_iso > 0 and rng.random() < settings.p_high_iso else settings
    look = random_look(rng, settings)
    blurry = encode_8bit(develop(blurred[visible], rng, look, camera), rng, camera)
    target = np.ascontiguousarray(region[visible])
    if look.tone:  # the target is what a perfect deblur of this camera's output gives
        target = tone_curve(target, look.tone)
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
