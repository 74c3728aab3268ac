"""Training data: a synthetic defocus renderer and torch datasets (synthetic, DPDD, LFDOF)."""

from .datasets import (
    PairFolder,
    SyntheticDefocus,
    dpdd,
    lfdof,
    match_pairs,
    read_image,
    read_radius_map,
    sharp_photos,
    write_frozen_set,
)
from .defocus import RECIPES, Aperture, RenderedPair, RenderSettings, aperture_psf, render_pair

__all__ = [
    "RECIPES",
    "Aperture",
    "PairFolder",
    "RenderSettings",
    "RenderedPair",
    "SyntheticDefocus",
    "aperture_psf",
    "dpdd",
    "lfdof",
    "match_pairs",
    "read_image",
    "read_radius_map",
    "render_pair",
    "sharp_photos",
    "write_frozen_set",
]
