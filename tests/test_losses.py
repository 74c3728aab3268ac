"""Eq. 12-14: the loss terms on a model whose output is its input (identity start)."""

import pytest
import torch
import torch.nn.functional as F

from nrkdeblur.config import NRKConfig
from nrkdeblur.losses import fft_l1, nrk_loss, psnr
from nrkdeblur.model import NRKNet

TINY = NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum", head_batchnorm=False,
                 identity_start=True)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    y, x = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    return NRKNet(TINY)(y, x), y, x


def test_terms_follow_eq_12_to_14(batch):
    out, y, x = batch  # identity: Z_t = Y_t and D_t(X_t) = X_t
    terms = nrk_loss(out, x, alpha=0.1, beta=0.1)
    pairs = [(y, x)] + list(zip(out.blurry[::-1], out.sharp[::-1]))
    mse = sum(w * F.mse_loss(a, b) for w, (a, b) in zip([1, 0.75, 0.5, 0.25], pairs))
    fdr = sum(w * fft_l1(a, b) for w, (a, b) in zip([1, 0.75, 0.5, 0.25], pairs))
    reblur = sum(w * F.mse_loss(b, a) for w, (a, b) in zip([0.75, 0.5, 0.25], pairs[1:]))
    assert torch.allclose(terms.mse, mse) and torch.allclose(terms.fdr, fdr) and torch.allclose(terms.reblur, reblur)
    assert torch.allclose(terms.total, mse + 0.1 * fdr + 0.1 * reblur)


def test_fft_term_is_the_l1_of_the_spectrum_difference():
    a, b = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    a[..., 0, 0] = 1.0  # a delta: flat spectrum of ones, real part 1, imaginary 0
    assert fft_l1(a, b).item() == pytest.approx(1.0)


def test_log_mse_is_minus_the_mean_psnr(batch):
    out, y, x = batch
    terms = nrk_loss(out, x, alpha=0.0, beta=0.0, weights=(1.0, 0.0, 0.0, 0.0), log_mse=True)
    assert terms.total.item() == pytest.approx(-psnr(y, x).item(), abs=1e-4)
