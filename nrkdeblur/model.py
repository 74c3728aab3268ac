"""NRKNet: a U-Net predicts RKR coefficients, a truncated Neumann series inverts the blur.

Paper section 3.3 and eq. 10-11. For a blurry image Y and its pyramid Y_1 (full), Y_2
(half), Y_3 (quarter), one U-Net shared by all scales and a ConvLSTM carried from coarse to
fine give coefficients gamma_t, hence blur operators D_t (rkr.py), and

    Z = Y + (I - D_1) Y + up2((I - D_2)^2 Y_2) + up4((I - D_3)^3 Y_3)          (eq. 10)

Smallest parts first: ResBlock, UNet, CoefficientHead (the authors' "APU"), NRKNet.

Where the authors' code (csZcWu/NRKNet) differs from the paper, the `paper` preset follows
the code so that their checkpoints load (weights.py converts them):
- 22 coefficient maps: the identity plus 21 recursive atoms (paper: J = 20);
- per-colour-channel symmetric 3-tap kernels [a, b, a] (paper: one a_j for all channels);
- D(x) is a 1x1 convolution *with bias* over the 66-channel stack gamma_j (x * A_j)[c]
  (paper: the plain sum of eq. 3);
- the coefficient head has a 3x3 conv + BatchNorm + ReLU branch r and a ConvLSTM branch y
  at half resolution, gamma = y * r + y (paper: "ConvLSTM units");
- the pyramid is nearest-neighbour downsampling (F.interpolate, scale 0.5), the terms and
  the LSTM state are upsampled bilinearly.
Our own addition, `identity_start` (config.py), is off for `paper`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .config import NRKConfig
from .rkr import RecursiveKernels, mean_square_radius, reflect_pad1


class ReflectConv3x3(nn.Conv2d):
    """A 3x3 convolution on the input reflect-padded by one pixel (nn.Conv2d's
    padding_mode="reflect", same parameters), with a padding that stays fast when
    inference runs in channels-last layout (rkr.reflect_pad1)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, bias: bool = False):
        super().__init__(cin, cout, 3, stride=stride, padding=0, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(reflect_pad1(x), self.weight, self.bias, self.stride)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return ReflectConv3x3(cin, cout, stride)


class ResBlock(nn.Module):
    """x + conv(relu(conv(x))), 3x3 convolutions without bias.

    In-place ReLU and sums here and below, wherever autograd needs none of the overwritten
    values: on CPU a fresh full-size buffer costs more than the operation itself (a page
    fault per 4 KiB on first touch; README, "Speed and memory")."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = conv3x3(ch, ch)
        self.conv2 = conv3x3(ch, ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(x), inplace=True)).add_(x)


def stage(ch: int, num_res: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(ch) for _ in range(num_res)])


class UNet(nn.Module):
    """3 encoder stages, a residual bottleneck, 3 decoder stages; skips by addition."""

    def __init__(self, in_ch: int, width: int, num_res: int):
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        self.inp = conv3x3(in_ch, w1)
        self.enc1, self.enc2, self.enc3 = stage(w1, num_res), stage(w2, num_res), stage(w3, num_res)
        self.down1, self.down2 = conv3x3(w1, w2, stride=2), conv3x3(w2, w3, stride=2)
        self.mid_conv, self.mid = conv3x3(w3, w3), stage(w3, num_res)
        self.dec3, self.dec2, self.dec1 = stage(w3, num_res), stage(w2, num_res), stage(w1, num_res)
        self.up2 = nn.ConvTranspose2d(w3, w2, 4, stride=2, padding=1, bias=False)
        self.up1 = nn.ConvTranspose2d(w2, w1, 4, stride=2, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(F.relu(self.inp(x), inplace=True))  # (B, w, H, W)
        e2 = self.enc2(F.relu(self.down1(e1), inplace=True))  # (B, 2w, H/2, W/2)
        e3 = self.enc3(F.relu(self.down2(e2), inplace=True))  # (B, 4w, H/4, W/4)
        z = self.mid(F.relu(self.mid_conv(e3), inplace=True))
        z = F.relu(self.up2(self.dec3(z.add_(e3))), inplace=True)  # (B, 2w, H/2, W/2)
        z = F.relu(self.up1(self.dec2(z + e2)), inplace=True)  # (B, w, H, W); ReLU's backward needs z
        return self.dec1(z + e1)


class ConvLSTMCell(nn.Module):
    """A ConvLSTM cell; gates (input, forget, output, candidate) from one convolution."""

    def __init__(self, cin: int, hidden: int, kernel: int):
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(cin + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        i, f, o, g = self.conv(torch.cat([x, h], dim=1)).split(self.hidden, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class CoefficientHead(nn.Module):
    """Decoder features -> coefficients gamma [B, J, H, W] (the authors' "APU").

    y = up2(ConvLSTM(avgpool2(features), state)), r = relu(bn(conv3x3(features))) (or a
    biased conv without bn),
    gamma = y * r + y (+ e_1 when the config asks for an identity start).
    """

    def __init__(self, width: int, num_atoms: int, lstm_kernel: int, batchnorm: bool, identity_start: bool):
        super().__init__()
        self.conv = ReflectConv3x3(width, num_atoms, bias=not batchnorm)
        self.bn = nn.BatchNorm2d(num_atoms) if batchnorm else nn.Identity()
        self.lstm = ConvLSTMCell(width, num_atoms, lstm_kernel)
        offset = torch.zeros(1, num_atoms, 1, 1)
        if identity_start:
            offset[:, 0] = 1.0  # all weight on the Dirac: D = I
            with torch.no_grad():  # candidate gate g = 0 -> c = 0, h = 0, y = 0
                self.lstm.conv.weight[3 * num_atoms :].zero_()
                self.lstm.conv.bias[3 * num_atoms :].zero_()
        self.register_buffer("offset", offset, persistent=False)

    def forward(self, feats: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        r = F.relu(self.bn(self.conv(feats)), inplace=True)
        h, c = self.lstm(F.avg_pool2d(feats, 2), state)
        y = F.interpolate(h, scale_factor=2.0, mode="nearest")
        return torch.addcmul(y, y, r).add_(self.offset), (h, c)  # y * r + y + offset


def pad_to_multiple(x: Tensor, m: int) -> Tensor:
    """Pad bottom and right so both sides are multiples of m and at least 2m (the 3x3
    convolutions reflect at 1/m scale): reflect, or replicate for tiny images."""
    H, W = x.shape[-2:]
    pad = (0, max(-W % m, 2 * m - W), 0, max(-H % m, 2 * m - H))
    if not any(pad):
        return x
    return F.pad(x, pad, mode="reflect" if min(H, W) > max(pad) else "replicate")


def pyramid(x: Tensor, num_scales: int) -> list[Tensor]:
    """[Y_S, ..., Y_2, Y_1]: coarsest first, each level nearest-downsampled by 2."""
    levels = [x]
    for _ in range(num_scales - 1):
        levels.append(F.interpolate(levels[-1], scale_factor=0.5, mode="nearest"))
    return levels[::-1]


class NRKOutput(NamedTuple):
    image: Tensor  # (B, C, H, W) the deblurred image Z (eq. 10)
    gammas: list[Tensor] | None  # coarse to fine, (B, J, H/2^(S-1-t), W/2^(S-1-t)), on request
    scale_outputs: list[Tensor] | None  # training: per-scale Neumann sums, coarse to fine
    reblurred: list[Tensor] | None  # training: D_t(X_t) for the sharp pyramid X_t
    blurry: list[Tensor] | None  # training: the input pyramid Y_t, coarse to fine
    sharp: list[Tensor] | None  # training: the sharp pyramid X_t, coarse to fine


class NRKNet(nn.Module):
    """The whole network: shared U-Net, coefficient head, RKR atoms, Neumann fusion."""

    def __init__(self, config: NRKConfig):
        super().__init__()
        self.config = config
        J, C = config.num_atoms, config.in_channels
        self.unet = UNet(C, config.width, config.num_res)
        self.head = CoefficientHead(config.width, J, config.lstm_kernel, config.head_batchnorm, config.identity_start)
        self.rkr = RecursiveKernels(J, C, config.atoms_per_channel, config.symmetric_taps)
        self.mix = nn.Conv2d(J * C, C, 1, bias=True) if config.mixing == "conv" else None

    def blur(self, x: Tensor, gamma: Tensor) -> Tensor:
        """The learned blur operator D(x) for coefficients gamma (eq. 3)."""
        return self.rkr(x, gamma, self.mix)

    def forward(self, blurry: Tensor, sharp: Tensor | None = None, return_gamma: bool = False) -> NRKOutput:
        """Deblur `blurry` [B, C, H, W] in [0, 1]; any H, W (padded internally).

        With `sharp` (training), also returns the per-scale Neumann sums, the reblurred
        sharp pyramid D_t(X_t) and both pyramids, for the losses of eq. 12-14.
        """
        S = self.config.num_scales
        H, W = blurry.shape[-2:]
        blurry = pad_to_multiple(blurry, self.config.multiple)
        sharp = pad_to_multiple(sharp, self.config.multiple) if sharp is not None else None
        ys = pyramid(blurry, S)
        xs = pyramid(sharp, S) if sharp is not None else None

        B, J = blurry.shape[0], self.config.num_atoms
        h0, w0 = ys[0].shape[-2] // 2, ys[0].shape[-1] // 2
        state = (blurry.new_zeros(B, J, h0, w0), blurry.new_zeros(B, J, h0, w0))
        image = ys[-1]
        gammas, sums, reblurred = [], [], []
        for t, y in enumerate(ys):  # coarse to fine
            gamma, state = self.head(self.unet(y), state)
            term, total = y, y
            for _ in range(S - t):  # (I - D_t)^(S-t) Y_t, and the partial sums
                term = term - self.blur(term, gamma)
                if xs is not None:
                    total = total + term
            image = image + (F.interpolate(term, scale_factor=2.0 ** (S - 1 - t), mode="bilinear") if t < S - 1 else term)
            if return_gamma:
                gammas.append(gamma)
            if xs is not None:
                sums.append(total)
                reblurred.append(self.blur(xs[t], gamma))
            if t < S - 1:
                state = tuple(F.interpolate(s, scale_factor=2.0, mode="bilinear") for s in state)

        crop = lambda z, f: z[..., : -(-H // f), : -(-W // f)]  # noqa: E731  ceil(H / f)
        scales = [2 ** (S - 1 - t) for t in range(S)]
        training = xs is not None
        return NRKOutput(
            image=crop(image, 1),
            gammas=[crop(g, f) for g, f in zip(gammas, scales)] if return_gamma else None,
            scale_outputs=[crop(z, f) for z, f in zip(sums, scales)] if training else None,
            reblurred=[crop(z, f) for z, f in zip(reblurred, scales)] if training else None,
            blurry=[crop(z, f) for z, f in zip(ys, scales)] if training else None,
            sharp=[crop(z, f) for z, f in zip(xs, scales)] if training else None,
        )

    def defocus_map(self, gammas: list[Tensor], size: tuple[int, int], eps: float = 0.0) -> Tensor:
        """The defocus scale [B, 1, H, W] in input pixels: the per-scale mean squared radii
        r_t^2 of the effective kernels sum_j gamma_j A_j (rkr.mean_square_radius; with the
        authors' mixing convolution, `paper`, D also mixes colour channels, so the radius
        describes the atoms' weighting, not D exactly), each nearest-upsampled and converted
        to input pixels by its factor f_t, combined as sqrt(mean_t (f_t r_t)^2 + eps).
        Training uses eps > 0 to keep the square root's gradient finite at a Dirac kernel."""
        m2 = self.rkr.second_moments()
        S = len(gammas)
        squares = [upsample_to(mean_square_radius(g, m2), size, 2 ** (S - 1 - t)) * 4 ** (S - 1 - t)
                   for t, g in enumerate(gammas)]
        return (torch.stack(squares).mean(0) + eps).sqrt()


def upsample_to(x: Tensor, size: tuple[int, int], f: int) -> Tensor:
    """Nearest-upsample a coarse map by its factor f, cropped to `size`."""
    x = x.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)
    return x[..., : size[0], : size[1]]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
