"""NRKNet: a U-Net predicts RKR coefficients, a truncated Neumann series inverts the blur.

Paper section 3.3 and eq. 10-11. For a blurry image Y and its pyramid Y_1 (full), Y_2
(half), Y_3 (quarter), one U-Net shared by all scales and a ConvLSTM carried from coarse to
fine give coefficients gamma_t, hence blur operators D_t (rkr.py), and

    Z = Y + (I - D_1) Y + up2((I - D_2)^2 Y_2) + up4((I - D_3)^3 Y_3)          (eq. 10)

Smallest parts first: ResBlock, UNet, CoefficientHead (the authors' "APU"), FocusHead
(ours, optional), NRKNet.

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
Our own additions, `identity_start` and `focus_width` (config.py), are off for `paper`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .config import NRKConfig
from .map_head import MapHead, map_inputs
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


class FocusHead(nn.Module):
    """Ours, not the paper's (config.focus_width > 0): measures the blur in pixels, and holds
    the network back where its change would do harm (blur too strong to invert, a region
    already smooth, a background the photo had soft on purpose).

    It reads, per pyramid scale t, the U-Net's decoder features and log(1 + q_t), q_t the
    effective kernels' mean squared radius in input pixels^2 (rkr.mean_square_radius times
    f_t^2), and at full resolution log(1e-5 + e), e the mean over colours of (Z - Y)^2, how
    much the network changes the pixel. Each input passes a 1x1 convolution and is
    upsampled bilinearly to the input's resolution; their sum passes three times ReLU and
    a 3x3 convolution, then a 3x3 convolution gives two maps (delta, c), and

        radius = relu(r_K + delta)        the defocus map in px (r_K: NRKNet.kernel_radius)
        keep   = 2 sigmoid(c)             the share of the change Z - Y that is kept, in (0, 2)
        Z'     = Y + keep (Z - Y)         the output, instead of eq. 10's Z

    Below 1, keep holds the network back; above 1 it goes further where the network
    inverts too little. keep is not clamped at 1: a clamp has no gradient above it, and a
    head whose c drifted above 0 in its first steps never learned to hold back.

    Its last convolution starts at zero, so a new head changes nothing (keep = 1, radius =
    r_K) and can be added to trained weights (widen.load_widened). It only reads the rest
    of the network: no gradient flows back through r_K, q_t or e.
    """

    def __init__(self, width: int, num_scales: int, channels: int):
        super().__init__()
        self.project = nn.ModuleList(nn.Conv2d(width + 1, channels, 1) for _ in range(num_scales))
        self.change = nn.Conv2d(1, channels, 1)
        self.body = nn.ModuleList(ReflectConv3x3(channels, channels, bias=True) for _ in range(3))
        self.out = ReflectConv3x3(channels, 2, bias=True)
        with torch.no_grad():
            self.out.weight.zero_()
            self.out.bias.zero_()

    def forward(self, feats: list[Tensor], squares: list[Tensor], kernel_radius: Tensor,
                change: Tensor) -> tuple[Tensor, Tensor]:
        """feats [B, width, h_t, w_t] and squares q_t [B, 1, h_t, w_t], coarse to fine;
        kernel_radius r_K [B, 1, H, W]; change Z - Y [B, C, H, W] -> (radius, keep), each
        [B, 1, H, W]."""
        def project(t: int) -> Tensor:  # scale t's 1x1 convolution of [f_t, log(1 + q_t)]
            conv, q = self.project[t], torch.log1p(squares[t].detach())
            if torch.onnx.is_in_onnx_export():  # ONNX's strict shape inference rejects the broadcast below
                return conv(torch.cat([feats[t], q], dim=1))
            z = F.conv2d(feats[t], conv.weight[:, :-1], conv.bias)  # without copying f_t into a concatenation
            return z.add_(q * conv.weight[:, -1:].view(1, -1, 1, 1))

        S = len(feats)
        h = project(S - 1)  # the sum starts in the full-resolution features' memory layout
        h = h.add_(self.change(change.detach().square().mean(1, keepdim=True).add_(1e-5).log_()))
        for t in range(S - 1):
            h = h.add_(F.interpolate(project(t), scale_factor=2.0 ** (S - 1 - t), mode="bilinear"))
        for conv in self.body:
            h = conv(F.relu(h, inplace=True))
        delta, c = self.out(F.relu(h, inplace=True)).split(1, dim=1)
        return F.relu(kernel_radius.detach() + delta), torch.sigmoid(c).mul(2)


def padded_size(n: int, m: int) -> int:
    """A side of n px as pad_to_multiple pads it: the next multiple of m, at least 2m."""
    return n + max(-n % m, 2 * m - n)


def pad_to_multiple(x: Tensor, m: int) -> Tensor:
    """Pad bottom and right so both sides are multiples of m and at least 2m (the 3x3
    convolutions reflect at 1/m scale): reflect, or replicate for tiny images."""
    H, W = x.shape[-2:]
    pad = (0, padded_size(W, m) - W, 0, padded_size(H, m) - H)
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
    radius: Tensor | None = None  # (B, 1, H, W) defocus map, px: the map head's when measured, else the focus head's
    spread: Tensor | None = None  # (B, 1, H, W) the map head's expected error of log(1 + radius), when measured


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
        self.focus = FocusHead(config.width, config.num_scales, config.focus_width) if config.focus_width else None
        self.map_head = MapHead(config.width, config.num_scales, config.map_width) if config.map_width else None

    def blur(self, x: Tensor, gamma: Tensor) -> Tensor:
        """The learned blur operator D(x) for coefficients gamma (eq. 3)."""
        return self.rkr(x, gamma, self.mix)

    def forward(self, blurry: Tensor, sharp: Tensor | None = None, return_gamma: bool = False,
                measure: bool = False) -> NRKOutput:
        """Deblur `blurry` [B, C, H, W] in [0, 1]; any H, W (padded internally).

        With `sharp` (training), also returns the per-scale Neumann sums, the reblurred
        sharp pyramid D_t(X_t) and both pyramids, for the losses of eq. 12-14. With a focus
        head, the output is its blend of Y and Z, and `radius` its defocus map; with a map
        head and `measure`, `radius` is the map head's and `spread` its expected error.
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
        gammas, sums, reblurred, feats = [], [], [], []
        for t, y in enumerate(ys):  # coarse to fine
            f = self.unet(y)
            gamma, state = self.head(f, state)
            term, total = y, y
            for _ in range(S - t):  # (I - D_t)^(S-t) Y_t, and the partial sums
                term = term - self.blur(term, gamma)
                if xs is not None:
                    total = total + term
            image = image + (F.interpolate(term, scale_factor=2.0 ** (S - 1 - t), mode="bilinear") if t < S - 1 else term)
            if return_gamma or self.focus is not None:
                gammas.append(gamma)
            if self.focus is not None:
                feats.append(f)
            if xs is not None:
                sums.append(total)
                reblurred.append(self.blur(xs[t], gamma))
            if t < S - 1:
                state = tuple(F.interpolate(s, scale_factor=2.0, mode="bilinear") for s in state)

        radius = spread = None
        if self.focus is not None:
            squares = self.kernel_squares(gammas)
            change = image - blurry
            kernel_radius = self.combine(squares, blurry.shape[-2:])
            radius, keep = self.focus(feats, squares, kernel_radius, change)
            image = torch.addcmul(blurry, keep, change)  # Y + keep (Z - Y)
            if self.map_head is not None and measure:
                inputs = map_inputs(feats, squares, change, radius, kernel_radius, blurry)
                radius, spread = self.map_head.measure(inputs, blurry.shape[-2:])

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
            radius=crop(radius, 1) if radius is not None else None,
            spread=crop(spread, 1) if spread is not None else None,
        )

    def kernel_squares(self, gammas: list[Tensor]) -> list[Tensor]:
        """q_t = f_t^2 r_t^2 [B, 1, h_t, w_t], coarse to fine: the mean squared radius of
        the effective kernel sum_j gamma_j A_j at scale t (rkr.mean_square_radius), in
        input pixels^2 (f_t = 2^(S-1-t), the scale's factor)."""
        m2 = self.rkr.second_moments()
        S = len(gammas)
        return [mean_square_radius(g, m2) * 4 ** (S - 1 - t) for t, g in enumerate(gammas)]

    @staticmethod
    def combine(squares: list[Tensor], size: tuple[int, int], eps: float = 0.0) -> Tensor:
        """sqrt(mean_t q_t + eps), each q_t nearest-upsampled to `size`: [B, 1, H, W], px."""
        S = len(squares)
        return (torch.stack([upsample_to(q, size, 2 ** (S - 1 - t)) for t, q in enumerate(squares)]).mean(0) + eps).sqrt()

    def kernel_radius(self, gammas: list[Tensor], size: tuple[int, int], eps: float = 0.0) -> Tensor:
        """The RMS radius r_K [B, 1, H, W] of the kernel the network inverts, in input
        pixels: the per-scale squares q_t (kernel_squares) combined as sqrt(mean_t q_t).
        With the authors' mixing convolution, `paper`, D also mixes colour channels, so the
        radius describes the atoms' weighting, not D exactly. Training uses eps > 0 to keep
        the square root's gradient finite at a Dirac kernel."""
        return self.combine(self.kernel_squares(gammas), size, eps)

    def defocus_map(self, out: NRKOutput, size: tuple[int, int], eps: float = 0.0) -> Tensor:
        """The defocus map [B, 1, H, W] in input pixels for a forward pass `out` (made with
        return_gamma, and measure for the map head's): the map head's or the focus head's
        measured radius where the model has one, else the kernels' RMS radius (kernel_radius)."""
        return out.radius if out.radius is not None else self.kernel_radius(out.gammas, size, eps)


def upsample_to(x: Tensor, size: tuple[int, int], f: int) -> Tensor:
    """Nearest-upsample a coarse map by its factor f, cropped to `size`."""
    x = x.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)
    return x[..., : size[0], : size[1]]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
