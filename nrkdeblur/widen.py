"""Starting a run from trained weights, optionally into a wider U-Net, output unchanged.

Ours, not the paper's. On CPU a wider network trained from scratch learns too slowly to be
worth it (docs/training-notes.md, "The `cpu` preset"), but a trained narrow one stops improving.
So a wider model starts from the narrow one's weights: every old weight is copied, each
new channel is computed by freshly initialised weights, and every weight through which
an old channel *reads* a new one is zero. The new channels are invisible at first, so
the wide model computes exactly what the narrow one did and training continues from its
quality; they start to matter as those zero weights learn. At equal widths this is a
plain copy: how a new run (other crops, rates, data) goes on from a finished one.

Only the width may differ, and a focus head (model.FocusHead) may be added: it starts at
zero and changes nothing either. Every other config field must match.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from .errors import DataError
from .config import NRKConfig
from .model import NRKNet


def input_channels(model: NRKNet, name: str, old: NRKConfig) -> list[int] | None:
    """Where the old model's input channels of layer `name` sit in the new model (None:
    they keep their places, followed by the new ones)."""
    w, W = old.width, model.config.width
    if name == "head.lstm.conv":  # it reads cat([features (width), h (J)]): h moves back
        return list(range(w)) + list(range(W, W + old.num_atoms))
    if name.startswith("focus.project."):  # cat([features (width), log(1 + q)]): q moves back
        return list(range(w)) + [W]
    return None


@torch.no_grad()
def load_widened(model: NRKNet, source: NRKNet) -> None:
    """Copy `source`'s weights into `model`, which may be wider; `model`'s own initial
    weights supply the new channels' inputs. Afterwards model(x) equals source(x) up to
    float rounding. A map head (map_head.py) may be left behind when `model` has none: it
    was trained on `source` frozen and measures nothing once the rest learns; the run's
    weights get a new one afterwards (scripts/train-map-head.py)."""
    old, new = source.config, model.config
    kept_map = old.map_width if new.map_width else 0
    if (dataclasses.replace(old, width=new.width, focus_width=new.focus_width, map_width=kept_map) != new
            or new.width < old.width or old.focus_width not in (0, new.focus_width)):
        raise DataError(f"cannot start a model of width {new.width} from weights of width {old.width} "
                         "with another config (only the width may grow, a focus head be added and a map "
                         "head be left behind)")
    state = source.state_dict()
    added_head = old.focus_width == 0 and new.focus_width > 0

    def fresh(name: str) -> bool:
        """A part of a head added now: it keeps its own (zero-effect) start."""
        return added_head and name.startswith("focus.")

    convs = {name: m for name, m in model.named_modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and not fresh(name)}
    for name, module in convs.items():
        w_old, w_new = state[f"{name}.weight"], module.weight
        if isinstance(module, nn.ConvTranspose2d):  # stored (in, out, kh, kw)
            w_old, w_new = w_old.transpose(0, 1), w_new.transpose(0, 1)
        out_old, in_old = w_old.shape[:2]
        cols = input_channels(model, name, old) or list(range(in_old))
        new_cols = sorted(set(range(w_new.shape[1])) - set(cols))
        w_new[:out_old, new_cols] = 0.0  # old channels never read new ones
        w_new[:out_old, cols] = w_old  # new channels keep their fresh weights
        if module.bias is not None:
            module.bias[:out_old] = state[f"{name}.bias"]
    conv_params = {f"{name}.{k}" for name in convs for k in ("weight", "bias")}
    rest = {k: v for k, v in model.state_dict().items() if k not in conv_params and not fresh(k)}
    for k, v in rest.items():  # RKR taps, BatchNorm: the width leaves them alone
        if state[k].shape != v.shape:
            raise ValueError(f"{k}: shape {tuple(state[k].shape)} does not fit {tuple(v.shape)}")
        v.copy_(state[k])
