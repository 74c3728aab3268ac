"""Settings of the synthetic defocus renderer (data/defocus.py, data/lens.py, data/camera.py)
and the named recipes built from them.

Every share knob (`p_...`) added after 2026-12-01 defaults to 0.0, and a share of 0.0 draws no
random numbers: a recipe that does not name a knob renders exactly as it did before the knob
existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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

    # ---- lens aberrations (lens.py). Each share is the chance that a sample's lens has the
    # aberration; its size is drawn uniformly from the range after it.
    # Spherical aberration: the pupil's rim focuses nearer or farther than its centre, so the
    # blur has a bright rim on one side of the focal plane and a bright centre on the other.
    # The size is the rim's extra blur as a fraction of the CoC (either sign drawn); below 1/3
    # so rays from neighbouring pupil zones never cross (no caustic folds).
    p_spherical: float = 0.0
    spherical_range: tuple[float, float] = (0.08, 0.3)
    # Onion rings (aspherical elements): concentric ripples of this relative amplitude across
    # the bokeh, with a ring count drawn from onion_rings (inclusive); 0.35 keeps them a texture.
    p_onion: float = 0.0
    onion_amplitude: tuple[float, float] = (0.1, 0.35)
    onion_rings: tuple[int, int] = (3, 8)
    # Astigmatism: at the frame's corner the blur is stretched along the radius by this
    # fraction behind the focal plane and squeezed in front of it (the ellipse turns by 90
    # degrees through focus); it grows with the square of the distance from the frame's centre.
    p_astigmatism: float = 0.0
    astigmatism_range: tuple[float, float] = (0.15, 0.5)
    # Coma: at the frame's corner a comet tail pointing away from the centre, of this size as a
    # fraction of the CoC; it grows linearly with the distance from the frame's centre.
    p_coma: float = 0.0
    coma_range: tuple[float, float] = (0.05, 0.2)
    # Field curvature: the focal surface bends, adding this fraction of the sample's largest
    # radius (either sign) to the CoC at the frame's corner, in proportion to distance squared.
    p_field_curvature: float = 0.0
    field_curvature_range: tuple[float, float] = (0.1, 0.4)
    # Longitudinal chromatic aberration: red focuses this fraction of the sample's largest
    # radius behind green (or in front, either sign drawn) and blue as far on the other side,
    # so each channel has its own CoC. The radius maps stay green's.
    p_chromatic: float = 0.0
    chromatic_range: tuple[float, float] = (0.02, 0.08)
    # The crop is a window of a larger frame whose half-diagonal is this many times the crop's
    # (drawn uniformly), placed anywhere the frame covers it: aberrations that grow toward the
    # corners reach every strength across crops.
    frame_scale: tuple[float, float] = (1.0, 3.0)
    # ---- the camera after the blur (camera.py). Each share is the chance that a sample's
    # camera does this; 0.0 draws no random numbers.
    # Bayer RGGB mosaic and bilinear demosaic of the blurred linear image (zipper, false colour).
    p_mosaic: float = 0.0
    # Sensor noise as a phone makes it: in raw, on the mosaic, before demosaicking (so it ends
    # up spatially correlated), at an ISO drawn from raw_isos; replaces p_noise's noise for that
    # sample. Shot variance raw_shot_noise * value and read std raw_read_noise at ISO 100, both
    # growing in proportion to the ISO (analogue gain): at ISO 3200 about the high-ISO ranges.
    p_raw_noise: float = 0.0
    raw_isos: tuple[int, ...] = (100, 200, 400, 800, 1600, 3200)
    raw_shot_noise: float = 1.5e-4
    raw_read_noise: float = 5e-4
    # A contrast S-curve on top of the sRGB curve, of a strength drawn from tone_strength
    # (< 1 keeps it monotonic). It is applied to the sharp target too: the target is what a
    # perfect deblur of this camera's output would give.
    p_tone_curve: float = 0.0
    tone_strength: tuple[float, float] = (0.2, 0.8)
    # The camera's own sharpening: an unsharp mask (halos at edges) of a gain and a Gaussian
    # std (px) drawn from these ranges, on the blurry image only.
    p_sharpen: float = 0.0
    sharpen_amount: tuple[float, float] = (0.3, 1.5)
    sharpen_sigma: tuple[float, float] = (0.7, 2.0)

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
    # "camera": the training recipe with lens aberrations and a phone's camera pipeline, each
    # on for about half the samples (onion rings, a trait of some lenses only, for a quarter).
    "camera": RenderSettings(
        p_spherical=0.5, p_onion=0.25, p_astigmatism=0.5, p_coma=0.5, p_field_curvature=0.5,
        p_chromatic=0.5, p_mosaic=0.5, p_raw_noise=0.5, p_tone_curve=0.5, p_sharpen=0.5,
    ),
}
