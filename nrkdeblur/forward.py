"""The network's outputs for inference as one tensor: the image, then on request the defocus
map and the coefficient maps, all at the input's size, so that tiling (tiling.py) blends
them alike and an ONNX export (export.py) has them as graph outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .model import NRKNet, upsample_to


def forward_maps(model: NRKNet, x: Tensor, defocus_map: bool, coefficients: bool) -> Tensor:
    """[1, 3, h, w] -> [1, 3 (+1) (+S*J), h, w]: image, defocus map, coefficients.

    The defocus map is NRKNet.defocus_map: the map head's measured radius where the model
    has one, else the focus head's, else the RMS radius of the effective kernels combined
    over the scales.
    """
    out = model(x, return_gamma=defocus_map or coefficients, measure=defocus_map)
    parts = [out.image]
    size = x.shape[-2:]
    if defocus_map:
        parts.append(model.defocus_map(out, size))
    if coefficients:
        S = len(out.gammas)
        parts.extend(upsample_to(g, size, 2 ** (S - 1 - t)) for t, g in enumerate(out.gammas))
    return torch.cat(parts, dim=1)
