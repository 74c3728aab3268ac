"""Point spread functions of a defocused lens: aperture shapes and lens aberrations.

A point off the focal plane images as a copy of the aperture, a circle of confusion (CoC)
of radius |c| px, turned by 180 degrees in front of the focal plane (c < 0). Real lenses add
aberrations to that picture; here they are traced with geometric optics (Seidel's third-order
ray aberrations, e.g. Born & Wolf, Principles of Optics, 5.3): a grid of pupil points p
(|p| <= 1) lands in the image at

    e(p) = (c + s |c| |p|^2) p                        defocus + spherical aberration
         + a |c| (p . e_r) e_r                        astigmatism
         + k |c| ((3 p_r^2 + p_t^2) e_r + 2 p_r p_t e_t)   coma

with e_r the direction from the frame's centre, and the PSF is the histogram of where the
points land, weighted by the aperture (and onion-ring ripples). The sign of c is what makes
spherical aberration put a bright rim on one side of the focal plane and a bright centre on
the other, and turns astigmatism's ellipse by 90 degrees through focus. Every aberration
scales with |c|, so in-focus points stay sharp: the target is the in-focus photo. Coma's
shift of the centroid (distortion, not blur) is removed. Field-dependent terms (a, k) grow
with the distance from the frame's centre (as its square and linearly, as Seidel's terms do);
data/layers.py blends the PSFs of the region's corners across it for them.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .settings import APERTURE_KINDS, RenderSettings


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
# lens aberrations


class PsfShape(NamedTuple):
    """Aberrations of one PSF, quantised so PSFs can be cached; all 0 is the bare aperture."""

    spherical: float = 0.0  # rim's extra blur, fraction of the CoC (sign: which side is bright)
    onion: float = 0.0  # relative amplitude of the onion rings
    rings: int = 0  # onion rings across the pupil
    astigmatism: float = 0.0  # radial stretch here, fraction of the CoC
    coma: float = 0.0  # comet size here, fraction of the CoC
    angle: float = 0.0  # direction away from the frame's centre, radians


class Lens(NamedTuple):
    """One sample's lens: its aperture and aberrations, and where the crop sits in its frame."""

    aperture: Aperture
    spherical: float = 0.0
    onion: float = 0.0
    rings: int = 0
    astigmatism: float = 0.0  # at the frame's corner
    coma: float = 0.0  # at the frame's corner
    curvature: float = 0.0  # CoC (px) added at the frame's corner
    chromatic: float = 0.0  # red's CoC shift (px); blue's is minus it, green's 0
    centre: tuple[float, float] = (0.0, 0.0)  # the frame's centre (y, x) in render-region px
    half_diagonal: float = 1.0  # px

    @property
    def varies(self) -> bool:
        """Whether the PSF's shape changes across the frame."""
        return self.astigmatism != 0 or self.coma != 0

    def field(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Distance from the frame's centre, 1 at its corners (arrays broadcast)."""
        return np.hypot(y - self.centre[0], x - self.centre[1]) / self.half_diagonal

    def shape_at(self, y: float, x: float) -> PsfShape:
        """The (quantised) aberrations of the PSF at render-region pixel (y, x)."""
        h = float(self.field(np.float64(y), np.float64(x)))
        angle = math.atan2(y - self.centre[0], x - self.centre[1]) if self.varies else 0.0
        return PsfShape(
            spherical=round(self.spherical / 0.02) * 0.02,
            onion=round(self.onion / 0.05) * 0.05,
            rings=self.rings,
            astigmatism=round(self.astigmatism * h * h / 0.025) * 0.025,
            coma=round(self.coma * h / 0.01) * 0.01,
            angle=round(angle / (math.pi / 18)) * (math.pi / 18),
        )


def lens_psf(coc: float, aperture: Aperture, shape: PsfShape, supersample: int, limit: float) -> np.ndarray:
    """Normalised (2n+1)x(2n+1) PSF for a signed CoC `coc` px (< 0: in front of the focal
    plane) through a lens with aberrations `shape`, reaching at most `limit` px.

    The CoC is rounded to 0.25 px; |coc| < 0.5 gives a Dirac and a bare aperture the PSF of
    aperture_psf. The returned array is read-only (it is shared through a cache).
    """
    if abs(coc) < 0.5:
        return _DIRAC
    c = round(coc * 4) / 4
    if shape == PsfShape():
        return aperture_psf(abs(c), aperture, flip=c < 0, supersample=supersample)
    return _traced_psf(c, aperture, shape, supersample, limit)


@lru_cache(maxsize=8192)
def _traced_psf(c: float, aperture: Aperture, shape: PsfShape, supersample: int, limit: float) -> np.ndarray:
    """Trace a pupil grid (`supersample` landing points per px of defocus) and histogram it."""
    r = abs(c)
    px, py, rho2, weight = _pupil(max(8, int(math.ceil(supersample * r))), aperture, shape.onion, shape.rings)
    along = c + shape.spherical * r * rho2
    ex, ey = along * px, along * py
    cos, sin = math.cos(shape.angle), math.sin(shape.angle)
    pr, pt = px * cos + py * sin, py * cos - px * sin
    radial = r * (shape.astigmatism * pr + shape.coma * (3 * pr * pr + pt * pt))
    tangential = r * shape.coma * 2 * pr * pt
    ex += radial * cos - tangential * sin
    ey += radial * sin + tangential * cos
    ex -= np.average(ex, weights=weight)
    ey -= np.average(ey, weights=weight)
    reach = float(np.sqrt((ex * ex + ey * ey).max()))
    if reach > limit:  # strong aberrations near the largest CoC: shrunk to fit the render margin
        ex, ey, reach = ex * (limit / reach), ey * (limit / reach), limit
    n = int(math.ceil(reach))
    size = 2 * n + 1
    bins = (np.rint(ey).astype(np.int64) + n) * size + np.rint(ex).astype(np.int64) + n
    psf = np.bincount(bins, weights=weight, minlength=size * size).reshape(size, size)
    psf = (psf / psf.sum()).astype(np.float32)
    psf.flags.writeable = False
    return psf


@lru_cache(maxsize=256)
def _pupil(m: int, aperture: Aperture, onion: float, rings: int) -> tuple[np.ndarray, ...]:
    """(x, y, x^2 + y^2, light) of the pupil points that pass light, on a grid of m points per
    unit of pupil radius; onion rings ripple the light with `rings` periods across the radius."""
    u = (np.arange(2 * m) + 0.5) / m - 1.0
    py, px = np.meshgrid(u, u, indexing="ij")
    weight = _aperture_weight(px, py, aperture)
    rho2 = px * px + py * py
    if onion:
        weight = weight * (1.0 + onion * np.cos(2 * math.pi * rings * np.sqrt(rho2)))
    keep = weight > 0
    return px[keep], py[keep], rho2[keep], weight[keep]


def random_lens(
    rng: np.random.Generator, settings: RenderSettings, aperture: Aperture, largest: float,
    visible: tuple[slice, slice],
) -> Lens | None:
    """Draw a sample's aberrations (None: none drawn, the bare aperture). `largest` is the
    sample's largest CoC (px): the CoC shifts of field curvature and colour scale with it.
    A share of 0 draws nothing."""
    def drawn(p: float) -> bool:
        return p > 0 and rng.random() < p

    def signed(bounds: tuple[float, float]) -> float:
        return rng.uniform(*bounds) * (1.0 if rng.random() < 0.5 else -1.0)

    spherical = signed(settings.spherical_range) if drawn(settings.p_spherical) else 0.0
    onion, rings = 0.0, 0
    if drawn(settings.p_onion):
        onion, rings = rng.uniform(*settings.onion_amplitude), int(rng.integers(settings.onion_rings[0],
                                                                                  settings.onion_rings[1] + 1))
    astigmatism = rng.uniform(*settings.astigmatism_range) if drawn(settings.p_astigmatism) else 0.0
    coma = rng.uniform(*settings.coma_range) if drawn(settings.p_coma) else 0.0
    curvature = signed(settings.field_curvature_range) * largest if drawn(settings.p_field_curvature) else 0.0
    chromatic = signed(settings.chromatic_range) * largest if drawn(settings.p_chromatic) else 0.0
    lens = Lens(aperture, spherical, onion, rings, astigmatism, coma, curvature, chromatic)
    if lens == Lens(aperture):
        return None
    if lens.varies or curvature:
        return lens._replace(**_random_frame(rng, settings, visible))
    return lens


def _random_frame(rng: np.random.Generator, settings: RenderSettings, visible: tuple[slice, slice]) -> dict:
    """A frame `frame_scale` times the crop, placed anywhere that covers the crop."""
    ys, xs = visible
    h, w = ys.stop - ys.start, xs.stop - xs.start
    scale = rng.uniform(*settings.frame_scale)
    oy, ox = rng.uniform(0, (scale - 1) * h), rng.uniform(0, (scale - 1) * w)  # crop's place in it
    centre = (ys.start - oy + 0.5 * scale * h, xs.start - ox + 0.5 * scale * w)
    return {"centre": centre, "half_diagonal": 0.5 * scale * math.hypot(h, w)}


def curved_coc(coc: np.ndarray, lens: Lens, limit: float) -> np.ndarray:
    """The signed CoC map with field curvature: + curvature * (distance from the centre)^2."""
    if not lens.curvature:
        return coc
    y, x = np.mgrid[0 : coc.shape[0], 0 : coc.shape[1]]
    bent = coc + lens.curvature * lens.field(y, x) ** 2
    return np.clip(bent, -limit, limit).astype(np.float32)
