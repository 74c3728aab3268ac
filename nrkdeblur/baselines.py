"""Classical deblurring, for comparison only: unsharp masking and Richardson-Lucy.

Both come from scikit-image (an optional dependency: `pip install scikit-image`), with a
disk point-spread function for Richardson-Lucy. Their parameters were chosen on the
synthetic Kodak24 validation set (benchmarks/kodak24-defocus), never on the eval-only
real pairs: see weights/README.md.
"""

from __future__ import annotations

import numpy as np

from .errors import NrkdeblurError
from .data.defocus import aperture_psf

UNSHARP_RADIUS, UNSHARP_AMOUNT = 1.0, 0.3  # best of radius {1,2,4} x amount {.3,.6,1}
RL_RADIUS, RL_ITERATIONS = 1.0, 2  # best of radius {1,1.5,2.5,4} x iterations {1,2,3,10}


def _skimage():
    try:
        import skimage.filters
        import skimage.restoration
    except ImportError:
        raise NrkdeblurError("the classical baselines need scikit-image: pip install scikit-image") from None
    return skimage


def unsharp(pixels: np.ndarray, radius: float = UNSHARP_RADIUS, amount: float = UNSHARP_AMOUNT) -> np.ndarray:
    """HxWxC float [0, 1] -> sharpened, clipped to [0, 1]."""
    # float64, channel_axis=2 (not -1), preserve_range: scikit-image 0.26 gives wrong
    # results otherwise (float32 overflows; channel_axis=-1 mis-scales)
    sharp = _skimage().filters.unsharp_mask(pixels.astype(np.float64), radius=radius, amount=amount,
                                            channel_axis=2, preserve_range=True)
    return np.clip(sharp, 0, 1).astype(np.float32)


def richardson_lucy(pixels: np.ndarray, radius: float = RL_RADIUS, iterations: int = RL_ITERATIONS) -> np.ndarray:
    """HxWxC float [0, 1] -> Richardson-Lucy deconvolution with a disk PSF, per channel."""
    sk = _skimage()
    psf = aperture_psf(radius).astype(np.float64)  # the renderer's anti-aliased disk
    out = [sk.restoration.richardson_lucy(pixels[..., c].astype(np.float64), psf, num_iter=iterations, clip=True)
           for c in range(pixels.shape[2])]
    return np.clip(np.stack(out, axis=-1), 0, 1).astype(np.float32)
