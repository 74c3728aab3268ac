"""The recursive operator against an explicit per-pixel-kernel reference (eq. 2-5)."""

import pytest
import torch

import torch.nn.functional as F

from nrkdeblur.rkr import RecursiveKernels, explicit_blur, reflect_pad1, rms_radius


@pytest.mark.parametrize("J", [1, 2, 5, 9])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_recursive_operator_equals_per_pixel_kernels(J, per_channel, symmetric):
    torch.manual_seed(J)
    rkr = RecursiveKernels(J, 3, per_channel=per_channel, symmetric=symmetric).double()
    with torch.no_grad():
        rkr.taps.normal_(0, 1.5)
    x = torch.rand(2, 3, 48, 40, dtype=torch.float64)
    gamma = torch.randn(2, J, 48, 40, dtype=torch.float64)
    with torch.no_grad():
        fast = rkr(x, gamma)
        ref = explicit_blur(x, gamma, rkr.atoms_per_channel(), rows=7)
    b = J  # the recursive operator reflects at the border; compare where both see only x
    assert (fast - ref)[..., b:-b, b:-b].abs().max() < 1e-5


def test_float32_matches_reference_at_J20():
    torch.manual_seed(0)
    rkr = RecursiveKernels(20, 3)
    x = torch.rand(1, 3, 64, 64)
    gamma = torch.softmax(torch.randn(1, 20, 64, 64), dim=1)
    with torch.no_grad():
        err = (rkr(x, gamma) - explicit_blur(x, gamma, rkr.atoms_per_channel()))[..., 20:-20, 20:-20]
    assert err.abs().max() < 1e-5


def test_atoms_are_normalised_with_growing_support():
    torch.manual_seed(1)
    J = 8
    rkr = RecursiveKernels(J, 3, per_channel=True, symmetric=False)
    A = rkr.atoms_per_channel().detach()  # (3, J, S, S)
    S = 2 * J - 1
    assert A.shape == (3, J, S, S)
    assert (A >= 0).all()
    assert torch.allclose(A.sum(dim=(-1, -2)), torch.ones(3, J), atol=1e-6)
    c = J - 1
    for j in range(J):  # support of A_{j+1} is (2j+1)^2, centred
        nz = A[:, j].abs().sum(0) > 0
        rows, cols = nz.any(1).nonzero().flatten(), nz.any(0).nonzero().flatten()
        assert rows.min() == c - j and rows.max() == c + j
        assert cols.min() == c - j and cols.max() == c + j
    assert rkr.atoms().shape == (J, S, S)


def test_recursion_uses_2_J_minus_1_one_dimensional_convolutions(monkeypatch):
    import nrkdeblur.rkr as rkr_module

    calls = []
    real = rkr_module.conv3

    def counting(x, taps, dim):
        calls.append((dim, tuple(taps.shape)))
        return real(x, taps, dim)

    monkeypatch.setattr(rkr_module, "conv3", counting)
    J = 7
    rkr = RecursiveKernels(J, 3)
    with torch.no_grad():
        rkr(torch.rand(1, 3, 16, 16), torch.rand(1, J, 16, 16))
    assert sorted(calls) == sorted([(-1, (3, 3))] * (J - 1) + [(-2, (3, 3))] * (J - 1))


def test_rms_radius_grows_when_weight_moves_to_larger_atoms():
    torch.manual_seed(2)
    J = 10
    rkr = RecursiveKernels(J, 3)
    m2 = rkr.second_moments().detach()
    assert m2[0] == 0 and (m2[1:] > m2[:-1]).all()
    radii = []
    for k in range(J):  # all weight on atom k, and mixtures sliding outward
        g = torch.zeros(1, J, 1, 1)
        g[0, k] = 1.0
        radii.append(rms_radius(g, m2).item())
        if k + 1 < J:
            g[0, k], g[0, k + 1] = 0.5, 0.5
            radii.append(rms_radius(g, m2).item())
    assert all(b > a for a, b in zip(radii, radii[1:]))
    assert radii[0] == 0.0
    # a kernel with no positive mass gets radius 0, not NaN; mixed signs stay within the atoms
    assert rms_radius(-torch.ones(1, J, 2, 2), m2).eq(0).all()
    g = torch.zeros(1, J, 1, 1)
    g[0, 0], g[0, J - 1] = -1.0, 1.001
    assert rms_radius(g, m2).item() <= m2.max().sqrt().item() + 1e-6
    # a Gaussian-like atom's RMS radius matches its measured second moment
    A = rkr.atoms()[J - 1]
    r = torch.arange(-(J - 1), J, dtype=A.dtype)
    direct = ((r[:, None] ** 2 + r[None] ** 2) * A).sum().sqrt()
    g = torch.zeros(1, J, 1, 1)
    g[0, J - 1] = 2.0
    assert abs(rms_radius(g, m2).item() - direct.item()) < 1e-4


def test_truncated_neumann_series_converges_to_inverse():
    """For a fixed blur D with spectral radius of (I - D) below 1, sum_n (I-D)^n y -> D^-1 y."""
    torch.manual_seed(3)
    J = 4
    rkr = RecursiveKernels(J, 1).double()
    H = W = 32
    gamma = torch.zeros(1, J, H, W, dtype=torch.float64)
    gamma[:, 0] = 0.7  # mostly identity: ||I - D|| <= 0.3
    gamma[:, 1:] = 0.1
    D = lambda v: rkr(v, gamma)  # noqa: E731
    x = torch.rand(1, 1, H, W, dtype=torch.float64)
    with torch.no_grad():
        y = D(x)
        term, total, errors = y, y.clone(), []
        for _ in range(12):
            errors.append((total - x).abs().max().item())
            term = term - D(term)
            total = total + term
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-5 < errors[0]


def test_reflect_padding_is_the_same_in_both_memory_layouts():
    x = torch.rand(2, 5, 9, 7)
    want = F.pad(x, (1, 1, 1, 1), mode="reflect")
    got = reflect_pad1(x.contiguous(memory_format=torch.channels_last))
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, want)
    assert torch.equal(reflect_pad1(x), want)


@pytest.mark.parametrize("per_channel", [False, True])
def test_gradients_of_the_in_place_operator_match_finite_differences(per_channel):
    torch.manual_seed(1)
    rkr = RecursiveKernels(4, 3, per_channel=per_channel, symmetric=False).double()
    x = torch.rand(1, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    gamma = torch.randn(1, 4, 9, 8, dtype=torch.float64, requires_grad=True)
    taps = rkr.taps.detach().clone().requires_grad_()
    blur = lambda x, g, t: torch.func.functional_call(rkr, {"taps": t}, (x, g))  # noqa: E731
    assert torch.autograd.gradcheck(blur, (x, gamma, taps))
