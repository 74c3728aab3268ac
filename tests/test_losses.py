"""Eq. 12-14: the loss terms on a model whose output is its input (identity start)."""

import math

import pytest
import torch
import torch.nn.functional as F

from nrkdeblur.config import NRKConfig
from nrkdeblur.losses import fft_l1, nrk_loss, psnr
from nrkdeblur.model import NRKNet, NRKOutput

TINY = NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum", head_batchnorm=False,
                 identity_start=True)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    y, x = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    return NRKNet(TINY)(y, x), y, x


def test_terms_follow_eq_12_to_14():
    """Every pyramid its own random tensors, so reading one in place of another changes the sum."""
    torch.manual_seed(0)
    sizes = [8, 16, 32]  # coarse to fine
    pyr = lambda: [torch.rand(2, 3, s, s) for s in sizes]  # noqa: E731
    out = NRKOutput(image=torch.rand(2, 3, 32, 32), gammas=None, scale_outputs=pyr(), reblurred=pyr(),
                    blurry=pyr(), sharp=pyr())
    x = torch.rand(2, 3, 32, 32)
    terms = nrk_loss(out, x, alpha=0.1, beta=0.1)
    w = [1, 0.75, 0.5, 0.25]  # fused output, then scales fine to coarse
    preds = [out.image] + out.scale_outputs[::-1]  # Z_t
    targets = [x] + out.sharp[::-1]  # X_t
    mse = sum(wt * F.mse_loss(z, t) for wt, z, t in zip(w, preds, targets))  # eq. 12
    fdr = sum(wt * fft_l1(z, t) for wt, z, t in zip(w, preds, targets))  # eq. 13
    reblur = sum(wt * F.mse_loss(d, y) for wt, d, y in zip(w[1:], out.reblurred[::-1], out.blurry[::-1]))  # eq. 14
    assert torch.allclose(terms.mse, mse) and torch.allclose(terms.fdr, fdr) and torch.allclose(terms.reblur, reblur)
    assert torch.allclose(terms.total, mse + 0.1 * fdr + 0.1 * reblur)
    # the input pyramid in place of the model's outputs would give another value
    wrong = sum(wt * F.mse_loss(z, t) for wt, z, t in zip(w, [out.image] + out.blurry[::-1], targets))
    assert not torch.allclose(terms.mse, wrong, rtol=1e-3)


def test_fft_term_is_the_l1_of_the_spectrum_difference():
    a, b = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    a[..., 0, 0] = 1.0  # a delta: flat spectrum of ones, real part 1, imaginary 0
    assert fft_l1(a, b).item() == pytest.approx(1.0)


def test_log_mse_is_minus_the_mean_psnr(batch):
    out, y, x = batch
    terms = nrk_loss(out, x, alpha=0.0, beta=0.0, weights=(1.0, 0.0, 0.0, 0.0), log_mse=True)
    assert terms.total.item() == pytest.approx(-psnr(y, x).item(), abs=1e-4)


def test_harm_term_counts_only_where_the_output_is_worse_than_the_input():
    """Output 10x the input's squared error on the right half, better on the left: the term is
    the right half's dB (catches a missing clamp at 0, swapped errors, or a window that lets
    the left half's gain pay for the right half's harm far from the seam)."""
    from nrkdeblur.losses import HARM_EPS, local_harm

    sharp = torch.full((1, 3, 32, 96), 0.5)
    blurry = sharp + 0.1
    out = sharp.clone()
    out[..., 48:] += 0.1 * 10**0.5
    harm = local_harm(out, blurry, sharp)
    per_pixel = 10 * math.log10((0.1 + HARM_EPS) / (0.01 + HARM_EPS))
    assert harm.item() == pytest.approx(per_pixel / 2, rel=0.05)  # the seam's window blurs a few columns
    right_only = local_harm(out[..., 64:], blurry[..., 64:], sharp[..., 64:])
    assert right_only.item() == pytest.approx(per_pixel, rel=1e-4)
    assert local_harm(sharp, blurry, sharp).item() == 0.0
    better = sharp + 0.05
    assert local_harm(better, blurry, sharp).item() == 0.0
    blurry.requires_grad_(True)
    out.requires_grad_(True)
    local_harm(out, blurry, sharp).backward()
    assert blurry.grad is None and out.grad[..., 70:].abs().min() > 0 and out.grad[..., :30].abs().max() == 0


def test_roughness_pays_for_kernel_steps_only_where_the_target_is_smooth():
    """A coefficient map with one vertical step of 0.3 (all J maps): over a flat target the
    term is the step over the number of neighbour pairs; with the target's own edge at that
    column it vanishes. Catches a weight computed from the wrong image or its wrong
    neighbours, a missing absolute value, or steps summed instead of averaged."""
    from nrkdeblur.losses import coefficient_roughness

    H, W, J = 8, 16, 4
    gamma = torch.zeros(1, J, H, W)
    gamma[..., 8:] = 0.3
    flat = torch.full((1, 3, H, W), 0.5)
    pairs = H * (W - 1) + (H - 1) * W
    assert coefficient_roughness([gamma], [flat]).item() == pytest.approx(0.3 * H / pairs, rel=1e-5)
    assert coefficient_roughness([-gamma], [flat]).item() == pytest.approx(0.3 * H / pairs, rel=1e-5)
    edge = flat.clone()
    edge[..., 8:] = 0.6  # 25 levels: far above ROUGH_TAU
    assert coefficient_roughness([gamma], [edge]).item() < 1e-12
    shifted = flat.clone()
    shifted[..., 9:] = 0.6  # the target's edge one column off the kernels' step
    assert coefficient_roughness([gamma], [shifted]).item() == pytest.approx(0.3 * H / pairs, rel=1e-5)
    # two scales: their mean
    assert coefficient_roughness([gamma, torch.zeros(1, J, 2 * H, 2 * W)],
                                 [flat, torch.full((1, 3, 2 * H, 2 * W), 0.5)]).item() == pytest.approx(0.15 * H / pairs, rel=1e-5)
