"""The defocus map as an estimator of its own (ours, not the paper's; config.map_width > 0).

The focus head (model.py) measures the blur as a side task of deciding how much of the
network's change to keep; its map ranks the true blur only moderately. The map head is
trained for the map alone, with direct supervision of the blur radius, on frozen
deblurring weights (scripts/train-map-head.py): it never changes the deblurred image.

It reads, at a quarter of the input's resolution (averages over 4 x 4 blocks, the coarser
scales over 2 x 2 blocks or as they are), what the rest of the network computed, and the
photo itself:
- the U-Net's decoder features f_t of every pyramid scale t and log(1 + q_t), q_t the
  effective kernels' mean squared radius in input px^2 (model.NRKNet.kernel_squares);
- log(1e-5 + e), e the mean over colours of (Z - Y)^2, how much eq. 10 changes the pixel;
- log(1 + r_F) and log(1 + r_K): the focus head's radius and the kernels' RMS radius;
- log(1e-6 + |grad Y|^2) of the photo's mean over colours (forward differences) and the
  photo's colours.
Each of these C inputs is normalised by the mean and standard deviation it had on the
training crops (buffers, stored with the weights). A small U-Net at that resolution
(3x3 convolutions and ReLU, widths w, 2w, 2w at 1/4, 1/8, 1/16, skips by concatenation,
replicated borders) gives two maps (mu, s), and

    radius = exp(mu) - 1 (px, >= 0)        upsampled bilinearly to the input's size
    spread = exp(s)                        the expected |log(1 + r) - mu|: large where the
                                           photo does not show the blur (flat sky, walls)

trained by the Laplace negative log-likelihood of the true radius r in log(1 + px):

    L = mean( |mu - log(1 + r)| exp(-s) + s )                          (s clamped to [-6, 3])

Its receptive field is wide (the 1/16 level sees about 200 px of the photo), so a map can
reach into flat regions from the edges around them; inference.deblur still refines it with
the photo as guide (map_refine.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

SPREAD_CLAMP = (-6.0, 3.0)  # the range of s


def map_input_channels(width: int, num_scales: int) -> int:
    """C: features and log(1 + q_t) per scale, change, two radii, gradient energy, colours."""
    return num_scales * (width + 1) + 1 + 2 + 1 + 3


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, padding_mode="replicate"), nn.ReLU(inplace=True))


class MapHead(nn.Module):
    """A U-Net at a quarter of the input's resolution: inputs (module docstring) -> (mu, s)."""

    def __init__(self, width: int, num_scales: int, channels: int):
        super().__init__()
        w, cin = channels, map_input_channels(width, num_scales)
        self.register_buffer("mean", torch.zeros(1, cin, 1, 1))
        self.register_buffer("std", torch.ones(1, cin, 1, 1))
        self.inp = nn.Conv2d(cin, w, 1)
        self.e0 = nn.Sequential(_block(w, w), _block(w, w))
        self.d1 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU(inplace=True), _block(2 * w, 2 * w))
        self.d2 = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, 2, 1), nn.ReLU(inplace=True), _block(2 * w, 2 * w),
                                _block(2 * w, 2 * w))
        self.u1 = nn.Sequential(_block(4 * w, 2 * w))
        self.u0 = nn.Sequential(_block(3 * w, w), _block(w, w))
        self.out = nn.Conv2d(w, 2, 3, padding=1, padding_mode="replicate")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs [B, C, h, w] (map_inputs, not yet normalised) -> (mu, s), each [B, 1, h, w]."""
        a = self.e0(F.relu(self.inp((x - self.mean) / self.std)))
        b = self.d1(a)
        c = self.d2(b)
        b = self.u1(torch.cat([b, F.interpolate(c, size=b.shape[-2:], mode="bilinear")], 1))
        a = self.u0(torch.cat([a, F.interpolate(b, size=a.shape[-2:], mode="bilinear")], 1))
        mu, s = self.out(a).split(1, dim=1)
        return mu, s.clamp(*SPREAD_CLAMP)

    def measure(self, x: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """(radius px, spread) [B, 1, H, W] at the input's (padded) size from inputs x."""
        mu, s = self.forward(x)
        up = lambda z: F.interpolate(z, size=size, mode="bilinear", align_corners=False)  # noqa: E731
        # exp(mu) - 1, not expm1, which ONNX has no operator for; radii of 0.01 px and up
        # keep their float32 precision
        return (torch.exp(up(mu)) - 1).clamp_min(0), torch.exp(up(s))


def map_inputs(feats: list[Tensor], squares: list[Tensor], change: Tensor, focus_radius: Tensor,
               kernel_radius: Tensor, blurry: Tensor) -> Tensor:
    """The map head's inputs [B, C, H/4, W/4] from one forward pass (module docstring):
    feats f_t and squares q_t coarse to fine, change Z - Y, the focus head's radius and r_K,
    each [B, *, H, W], and the padded input Y; H and W are multiples of 4."""
    S = len(feats)
    parts = []
    for t in range(S):
        pool = max(1, 4 // 2 ** (S - 1 - t))  # scale t is 1/2^(S-1-t) of the input
        q = torch.log1p(squares[t])
        parts += [F.avg_pool2d(feats[t], pool) if pool > 1 else feats[t],
                  F.avg_pool2d(q, pool) if pool > 1 else q]
    parts.append(F.avg_pool2d(change.square().mean(1, keepdim=True).add(1e-5).log(), 4))
    parts.append(F.avg_pool2d(torch.log1p(focus_radius), 4))
    parts.append(F.avg_pool2d(torch.log1p(kernel_radius), 4))
    grey = blurry.mean(1, keepdim=True)
    # forward differences, 0 in the last column and row: each pixel's right and lower
    # neighbour from a replicated border (no negative slice ends, which ONNX export would
    # fix to the traced size)
    gx = F.pad(grey, (0, 1, 0, 0), mode="replicate")[..., :, 1:] - grey
    gy = F.pad(grey, (0, 0, 0, 1), mode="replicate")[..., 1:, :] - grey
    parts.append(F.avg_pool2d(torch.log(gx.square() + gy.square() + 1e-6), 4))
    parts.append(F.avg_pool2d(blurry, 4))
    return torch.cat(parts, dim=1)  # every part is H/4 x W/4


def laplace_loss(mu: Tensor, s: Tensor, radius: Tensor) -> Tensor:
    """The negative log-likelihood above for the true radius [B, 1, h, w] (px), at mu's size."""
    return ((mu - torch.log1p(radius)).abs() * torch.exp(-s) + s).mean()
