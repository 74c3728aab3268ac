"""Training loss of NRKNet (paper eq. 12-14).

    L = sum_t w_t ( ||Z_t - X_t||^2 + beta * ||F(Z_t) - F(X_t)||_1 )        (eq. 12, 13)
      + alpha * sum_t w_t' ||D_t(X_t) - Y_t||^2                               (eq. 14)

Z_t are the fused output (w = 1) and the per-scale Neumann sums from fine to coarse
(w = .75, .5, .25); F is the 2-D FFT (real and imaginary parts, unnormalised as in the
authors' code; we use the real FFT, whose mean over its half spectrum equals the full
spectrum's by Hermitian symmetry); the reblurring term compares the learned operator
applied to the sharp pyramid with the blurry pyramid, weighted like its scale's Neumann sum.
alpha = beta = 0.1. Norms are means over pixels (as torch's MSELoss/L1Loss).

The radius term (ours, weight `radius_weight`) ties the defocus map to the true blur: the
mean absolute difference, in pixels, between the network's map (NRKNet.defocus_map: the
RMS radius of its effective kernels, or its focus head's measured radius) and the RMS
radius of the PSF each pixel was rendered with, so that the map users look at measures
the blur.

`log_mse=True` (ours, for the CPU-trained weights) replaces every squared error by
10 log10(MSE_i) averaged over the images i of the batch, i.e. minus their mean PSNR.
Plain MSE lets heavily blurred images dominate: trained with it, the model lowered the
batch MSE while raising the error of nearly sharp images, and the mean PSNR fell below
the input's (measured: docs/training-notes.md, "The `cpu` preset").

The harm term (ours, weight `harm_weight`) punishes only where the output is locally worse
than the input: with e_Z and e_Y the squared errors of the output and of the blurry input
against the target, averaged over colours and smoothed by a Gaussian window of std
HARM_SIGMA px, it is the mean over pixels of

    max(0, 10 log10((e_Z + eps) / (e_Y + eps))),    eps = HARM_EPS

the dB by which the output is worse than the input around each pixel, 0 wherever it is
better. Where the output improves on the input it adds nothing, so the network keeps its
gain where it can invert the blur, and pays for invented texture where it cannot.

The roughness term (ours, weight `roughness_weight`) asks the coefficient maps gamma_t to
be smooth where the target is: over horizontal and vertical neighbours p, q at each scale,

    mean |gamma_t(p) - gamma_t(q)| exp(-(|X_t(p) - X_t(q)| / ROUGH_TAU)^2)

with X_t the grey sharp image at that scale, averaged over the scales. Where the photo is
smooth (skin, sky, soft backgrounds) a kernel that jumps from pixel to pixel turns smooth
shading into a network of hard lines (the crackle of docs/restraint.md); at edges of the
target the kernels may still change.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import NRKOutput

SCALE_WEIGHTS = (1.0, 0.75, 0.5, 0.25)
HARM_SIGMA = 4.0  # px: the window of "locally" in the harm term
HARM_EPS = (1.0 / 255) ** 2  # an 8-bit level squared: below it no error is seen as harm
ROUGH_TAU = 2.0 / 255  # a step of the target of about 2 levels between neighbours frees the kernels


class LossTerms(NamedTuple):
    total: Tensor  # what is minimised
    mse: Tensor  # weighted multi-scale MSE (eq. 12)
    fdr: Tensor  # weighted FFT-L1, frequency domain reconstruction (eq. 13)
    reblur: Tensor  # weighted reblurring MSE (eq. 14)
    radius: Tensor  # mean absolute error of the defocus map, px (ours; 0 when not asked)
    harm: Tensor  # mean local dB by which the output is worse than the input (ours; 0 when not asked)
    roughness: Tensor  # weighted mean step of the coefficient maps between neighbours (ours; 0 when not asked)


def fft_l1(a: Tensor, b: Tensor) -> Tensor:
    d = torch.fft.rfft2(a.float() - b.float())
    return d.real.abs().mean() + d.imag.abs().mean()


def log_mse_loss(a: Tensor, b: Tensor) -> Tensor:
    """10 log10 of each image's MSE, averaged over the batch: minus the mean PSNR (dB)."""
    per_image = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(per_image + 1e-10)).mean()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of [B, C, H, W], truncated at 3 sigma, edges replicated."""
    r = int(math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = (g / g.sum()).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), g.view(-1, 1, 1, 2 * r + 1), groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), g.view(-1, 1, 2 * r + 1, 1), groups=x.shape[1])


def local_harm(image: Tensor, blurry: Tensor, sharp: Tensor, sigma: float = HARM_SIGMA,
               eps: float = HARM_EPS) -> Tensor:
    """The harm term (module docstring): mean over pixels of the local dB by which `image` is
    worse than `blurry` against `sharp`, all [B, C, H, W]; no gradient reaches `blurry`."""
    e_out = gaussian_blur((image.float() - sharp.float()).pow(2).mean(1, keepdim=True), sigma)
    e_in = gaussian_blur((blurry.detach().float() - sharp.float()).pow(2).mean(1, keepdim=True), sigma)
    return F.relu(10 * torch.log10((e_out + eps) / (e_in + eps))).mean()


def coefficient_roughness(gammas: list[Tensor], sharps: list[Tensor], tau: float = ROUGH_TAU) -> Tensor:
    """The roughness term (module docstring): gammas [B, J, h_t, w_t] and the sharp pyramid
    [B, C, h_t, w_t], scale by scale in the same order."""
    terms = []
    for gamma, sharp in zip(gammas, sharps, strict=True):
        grey = sharp.float().mean(1, keepdim=True)
        steps = []
        for dim in (2, 3):
            dg = gamma.float().diff(dim=dim).abs().mean(1, keepdim=True)
            steps.append((dg * torch.exp(-(grey.diff(dim=dim) / tau) ** 2)).flatten(1))
        terms.append(torch.cat(steps, 1).mean())
    return torch.stack(terms).mean()


def nrk_loss(out: NRKOutput, sharp: Tensor, alpha: float = 0.1, beta: float = 0.1,
             weights: tuple[float, ...] = SCALE_WEIGHTS, log_mse: bool = False,
             radius: tuple[Tensor, Tensor] | None = None, radius_weight: float = 0.0,
             blurry: Tensor | None = None, harm_weight: float = 0.0, roughness_weight: float = 0.0) -> LossTerms:
    """Eq. 12-14 for a model output computed with the sharp target (training mode).

    radius: (predicted defocus map, true PSF RMS radius), both [B, 1, H, W] in pixels,
    for the radius term with weight radius_weight. blurry: the full-resolution input, for
    the harm term with weight harm_weight. The roughness term (weight roughness_weight) needs
    the model called with return_gamma."""
    if out.scale_outputs is None:
        raise ValueError("the model must be called with the sharp target to compute the loss")
    sq = log_mse_loss if log_mse else F.mse_loss
    preds = [out.image] + out.scale_outputs[::-1]  # fine to coarse
    targets = [sharp] + out.sharp[::-1]
    mse = sum(w * sq(z, x) for w, z, x in zip(weights, preds, targets))
    fdr = sum(w * fft_l1(z, x) for w, z, x in zip(weights, preds, targets)) if beta else torch.zeros((), device=sharp.device)
    reblur = sum(w * sq(d, y) for w, d, y in zip(weights[1:], out.reblurred[::-1], out.blurry[::-1]))
    zero = torch.zeros((), device=sharp.device)
    rad = (radius[0] - radius[1]).abs().mean() if radius is not None else zero
    if harm_weight and blurry is None:
        raise ValueError("the harm term needs the blurry input")
    harm = local_harm(out.image, blurry, sharp) if harm_weight else zero
    if roughness_weight and out.gammas is None:
        raise ValueError("the roughness term needs the coefficient maps (return_gamma=True)")
    rough = coefficient_roughness(out.gammas, out.sharp) if roughness_weight else zero
    total = mse + beta * fdr + alpha * reblur + radius_weight * rad + harm_weight * harm + roughness_weight * rough
    return LossTerms(total, mse, fdr, reblur, rad, harm, rough)


def psnr(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean PSNR in dB over the batch, images clipped to [0, data_range]."""
    mse = (a.clamp(0, data_range) - b.clamp(0, data_range)).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))).mean()
