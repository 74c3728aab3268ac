"""Recursive kernel representation (RKR) and the blur operator D (paper eq. 1-5).

A defocus kernel at a pixel is a mix of J atoms, K = sum_j gamma_j A_j (eq. 2). The atoms
are recursive and separable:

    A_1 = Dirac,   A_j = A_{j-1} * (a_j a_j^T),   a_j = softmax(t_j), 3 taps    (eq. 4)

(t_j = [u, v, u] with 2 free values when the taps are symmetric, else 3 free values)

so A_j has support (2j-1) x (2j-1), is non-negative and sums to 1. The blur operator

    D(x) = sum_j gamma_j .* (x * A_j)                                           (eq. 3)

is computed recursively (eq. 5): x * A_j = (x * A_{j-1}) * a_j * a_j^T, i.e. one 3-tap
convolution along x and one along y per atom, 2(J-1) in all, O(6NJ) instead of the
O(N S^2) of per-pixel kernels of size S = 2J-1. Boundary rule: every 3-tap step
reflect-pads its input by one pixel (as the authors' code does), so x * A_j near the border
equals the image reflected once per step.

The coefficients gamma have shape [B, J, H, W] and are shared by the colour channels. The
atoms may be shared by the channels (paper) or have one set of taps per channel (the
authors' code: 21 x 3 kernels). With `mix` (the authors' 1x1 convolution with bias over the
J*C stack), D(x) = mix(stack) instead of the plain sum of eq. 3.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def reflect_pad1(x: Tensor) -> Tensor:
    """Reflect-pad the last two dims by one pixel, keeping x's memory layout.

    Same numbers as F.pad(x, (1, 1, 1, 1), mode="reflect"), which is fast for contiguous
    (NCHW) tensors but ~16x slower for channels-last ones (measured); those are filled
    here with one interior copy and four edge copies instead.
    """
    if x.is_contiguous():
        return F.pad(x, (1, 1, 1, 1), mode="reflect")
    *lead, H, W = x.shape
    out = torch.empty(*lead, H + 2, W + 2, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    out[..., 1:-1, 1:-1] = x
    out[..., 0, 1:-1] = x[..., 1, :]
    out[..., -1, 1:-1] = x[..., -2, :]
    out[..., :, 0] = out[..., :, 2]
    out[..., :, -1] = out[..., :, -3]
    return out


def conv3(x: Tensor, taps: Tensor, dim: int) -> Tensor:
    """A 3-tap 1-D convolution along `dim` (-1: width, -2: height) of an input already
    padded by one pixel along it; taps [C, 3] per channel, symmetric or not. Written as a
    weighted sum of three shifted views, accumulated in place into one new tensor: on CPU
    ~3x faster than out-of-place sums and ~6x faster than a depthwise conv2d (measured),
    with the same numbers to float rounding."""
    n = x.shape[dim]
    k = taps.view(1, -1, 3, 1, 1)  # (1, C, 3, 1, 1)
    # taps[0] meets the pixel after: convolution, not correlation
    out = x.narrow(dim, 2, n - 2) * k[:, :, 0]
    out.addcmul_(x.narrow(dim, 1, n - 2), k[:, :, 1])
    return out.addcmul_(x.narrow(dim, 0, n - 2), k[:, :, 2])


def blur_step(x: Tensor, taps: Tensor) -> Tensor:
    """One recursion step with reflect padding (eq. 5): x * (a a^T), separably.

    x: [B, C, H, W]; taps: [C, 3], one normalised 3-tap kernel a per channel.

    Exported to ONNX, the step is one depthwise 3x3 convolution with the outer product
    a a^T instead: the same numbers, and in ONNX Runtime the operator D takes 0.25 s
    instead of 0.61 s at 1280 x 720 (one thread, measured), where torch runs the shifted
    sums faster (conv3).
    """
    if torch.onnx.is_in_onnx_export():
        outer = (taps[:, :, None] * taps[:, None, :]).flip(-1, -2)  # correlation kernel of a a^T
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), outer[:, None], groups=x.shape[1])
    return conv3(conv3(reflect_pad1(x), taps, -1), taps, -2)


class RecursiveKernels(nn.Module):
    """The J recursive atoms: learnable 3-tap kernels a_2..a_J and the operator D.

    Args:
        num_atoms: J, counting the Dirac A_1.
        channels: colour channels of the images the operator is applied to.
        per_channel: one set of taps per colour channel instead of one shared set.
        symmetric: taps are softmax([t0, t1, t0]) (2 free values) instead of 3 free values.
    """

    def __init__(self, num_atoms: int, channels: int = 3, per_channel: bool = False, symmetric: bool = True):
        super().__init__()
        self.num_atoms = num_atoms
        self.channels = channels
        self.symmetric = symmetric
        n_free = 2 if symmetric else 3
        groups = channels if per_channel else 1
        # raw logits of the taps; softmax makes them positive and l1-normalised (eq. 4)
        self.taps = nn.Parameter(torch.rand(num_atoms - 1, groups, n_free))  # (J-1, Ca, 2|3)

    def kernels(self) -> Tensor:
        """The normalised 1-D kernels a_2..a_J, shape [J-1, Ca, 3]."""
        t = self.taps
        if self.symmetric:  # [t0, t1] -> [t0, t1, t0]: t1 is the centre tap
            t = torch.cat([t, t[..., :1]], dim=-1)
        return F.softmax(t, dim=-1)

    def forward(self, x: Tensor, gamma: Tensor, mix: nn.Conv2d | None = None) -> Tensor:
        """D(x) = sum_j gamma_j .* (x * A_j), computed recursively (eq. 3-5).

        x: [B, C, H, W]; gamma: [B, J, H, W] -> [B, C, H, W]. Only the running blur
        x * A_j and the running sum are alive at a time, never a J-stack of images.
        mix: the authors' 1x1 convolution over the atom-major, colour-minor stack.
        """
        B, C, H, W = x.shape
        assert gamma.shape[1] == self.num_atoms, (gamma.shape, self.num_atoms)
        # fixed sizes, not -1 or x.shape: the ONNX export then knows the kernels' shape
        ks = self.kernels().expand(self.num_atoms - 1, self.channels, 3)
        if mix is not None:
            w = mix.weight.view(mix.out_channels, self.num_atoms, C)  # (C_out, J, C)
        blurred = x
        out = None
        # split once: slicing gamma per atom would cost a full-size zero-fill per slice in backward
        for j, g in enumerate(gamma.split(1, dim=1)):
            if j > 0:
                blurred = blur_step(blurred, ks[j - 1])
            if mix is not None:
                term = F.conv2d(g * blurred, w[:, j, :, None, None])
                out = term if out is None else out.add_(term)
            else:  # accumulate in place: one full-size buffer for the whole sum
                out = g * blurred if out is None else out.addcmul_(g, blurred)
        if mix is not None and mix.bias is not None:
            out = out + mix.bias.view(1, -1, 1, 1)
        return out

    def atoms_per_channel(self) -> Tensor:
        """All atoms materialised, centred in S x S with S = 2J-1: shape [Ca, J, S, S]."""
        J = self.num_atoms
        S = 2 * J - 1
        ks = self.kernels().transpose(0, 1)  # (Ca, J-1, 3)
        Ca = ks.shape[0]
        atom = torch.zeros(Ca, 1, S, S, dtype=ks.dtype, device=ks.device)
        atom[:, :, J - 1, J - 1] = 1.0
        atoms = [atom]
        for j in range(1, J):
            k2d = ks[:, j - 1, :, None] * ks[:, j - 1, None, :]  # (Ca, 3, 3) = a a^T
            # true (zero-padded) convolution: the support grows by one pixel on each side
            atom = F.conv2d(atom.transpose(0, 1), k2d.flip(-1, -2)[:, None], padding=1, groups=Ca).transpose(0, 1)
            atoms.append(atom)
        return torch.cat(atoms, dim=1)

    def atoms(self) -> Tensor:
        """All atoms as [J, S, S] (centred); averaged over colour channels when per-channel."""
        return self.atoms_per_channel().mean(dim=0)

    def second_moments(self) -> Tensor:
        """m2_j = sum_{u,v} (u^2 + v^2) A_j(u, v), in pixels^2, shape [J]."""
        A = self.atoms()
        J = self.num_atoms
        r = torch.arange(-(J - 1), J, dtype=A.dtype, device=A.device)
        d2 = r[:, None] ** 2 + r[None, :] ** 2
        return (A * d2).sum(dim=(-1, -2))


def mean_square_radius(gamma: Tensor, m2: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-pixel mean squared radius of the effective kernel K = sum_j gamma_j A_j, px^2.

    sum_j gamma_j m2_j / sum_j gamma_j; 0 where the kernel's mass or second moment is not
    positive, and at most the largest atom's (the bound for a non-negative mixture;
    coefficients of mixed sign can otherwise divide by a tiny mass).
    gamma: [B, J, H, W], m2: [J] -> [B, 1, H, W].
    """
    mass = gamma.sum(dim=1, keepdim=True)
    moment = (gamma * m2.view(1, -1, 1, 1)).sum(dim=1, keepdim=True)
    ratio = torch.where(mass > eps, moment / mass.clamp_min(eps), torch.zeros_like(mass))
    return ratio.clamp_min(0).clamp_max(m2.max())  # two steps: torch.export takes no (int, Tensor) clamp


def rms_radius(gamma: Tensor, m2: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-pixel RMS radius of the effective kernel, in pixels: sqrt(mean_square_radius)."""
    return mean_square_radius(gamma, m2, eps).sqrt()


def explicit_blur(x: Tensor, gamma: Tensor, atoms: Tensor, rows: int = 16) -> Tensor:
    """Reference D(x): builds each pixel's kernel K_{h,w} = sum_j gamma_j[h,w] A_j and applies
    it directly, O(N S^2) (the per-pixel-kernel operator the paper's eq. 5 avoids).

    x: [B, C, H, W]; gamma: [B, J, H, W]; atoms: [Ca, J, S, S] from atoms_per_channel().
    Zero padding: equals the recursive operator away from the border (J-1 pixels). Works
    in bands of `rows` rows so memory stays bounded on large images. For tests and bench.
    """
    B, C, H, W = x.shape
    Ca, J, S, _ = atoms.shape
    r = S // 2
    A = atoms.expand(C, J, S, S).flip(-1, -2).reshape(C, J, S * S)  # convolution: flipped
    xp = F.pad(x, (r, r, r, r))
    out = x.new_empty(B, C, H, W)
    for y0 in range(0, H, rows):
        y1 = min(H, y0 + rows)
        patches = F.unfold(xp[:, :, y0 : y1 + 2 * r], S).view(B, C, S * S, (y1 - y0) * W)
        g = gamma[:, :, y0:y1].reshape(B, J, -1)  # (B, J, P)
        K = torch.einsum("bjp,cjs->bcsp", g, A)  # per-pixel kernels (B, C, S*S, P)
        out[:, :, y0:y1] = (patches * K).sum(dim=2).view(B, C, y1 - y0, W)
    return out
