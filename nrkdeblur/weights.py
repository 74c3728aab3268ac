"""Weights files: safetensors with the model config in the metadata; the authors' converter.

A weights file is self-describing: its metadata holds `nrkdeblur.config` (the NRKConfig as
JSON), so `load_model(path)` needs nothing else and never guesses. Loading never unpickles.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from .errors import NrkdeblurError
from .config import NRKConfig
from .atomic import atomic_write
from .errors import ImageError
from .model import NRKNet

CONFIG_KEY = "nrkdeblur.config"


class WeightsError(NrkdeblurError):
    """A weights file that is missing, corrupt, or does not describe an NRKNet."""


@dataclass(frozen=True)
class ShippedModel:
    """A weights file shipped in the top-level weights/ (installed as nrkdeblur.pretrained)."""

    name: str  # what --model and nrkdeblur.load(model=...) accept
    file: str
    summary: str  # speed and quality in one line, as measured (weights/README.md)


SHIPPED = (
    ShippedModel("default", "nrkdeblur-cpu.safetensors",
                 "12 MP in 66 s on 2 CPU cores (2026-12-05); Kodak24 +1.96 dB, Pixel-4 +1.00 dB"),
)
DEFAULT_WEIGHTS_NAME = SHIPPED[0].file


def shipped_weights(name: str = "default") -> Path:
    """The file of a shipped model, wherever the package is installed; in a source tree that
    is not installed (PYTHONPATH=.), the tree's own weights/ folder."""
    file = {m.name: m.file for m in SHIPPED}[name]
    try:
        return Path(str(files("nrkdeblur.pretrained").joinpath(file)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "weights" / file


def default_weights() -> Path:
    """The default shipped weights file (shipped_weights)."""
    return shipped_weights("default")


def model_weights(model: str | os.PathLike | None) -> Path | None:
    """--model's value as a weights file: a shipped model's name, or a path to a
    .safetensors; None stays None (the default weights). Raises WeightsError for neither."""
    if model is None:
        return None
    if str(model) in {m.name for m in SHIPPED}:
        return shipped_weights(str(model))
    path = Path(model)
    if not path.is_file():
        names = ", ".join(m.name for m in SHIPPED)
        raise WeightsError(f"{path}: does not exist, and no shipped model has that name ({names})")
    return path


def save_weights(model: NRKNet, path: str | os.PathLike, extra: dict[str, str] | None = None) -> None:
    """Write the model's state and config to `path` atomically (temp file, then rename)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {CONFIG_KEY: model.config.to_json(), **(extra or {})}
    try:
        atomic_write(Path(path), lambda f: f.write(safetensors_bytes(state, metadata=metadata)))
    except ImageError as e:
        raise WeightsError(str(e)) from None


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a valid safetensors file ({e})") from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> NRKNet:
    """Rebuild the exact model stored in `path` (config from its metadata), in eval mode."""
    meta = read_metadata(path)
    if CONFIG_KEY not in meta:
        raise WeightsError(f"{path}: has no nrkdeblur config in its metadata (not made by nrkdeblur train/convert)")
    try:
        config = NRKConfig.from_json(meta[CONFIG_KEY])
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{path}: invalid nrkdeblur config in metadata ({e})") from None
    model = NRKNet(config)
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0]
        raise WeightsError(f"{path}: weights do not match their config ({first})") from None
    damaged = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if damaged:  # a NaN would turn every output pixel black, without any error
        raise WeightsError(f"{path}: {damaged[0]} holds non-finite values (NaN or infinity); the file is damaged")
    return model.to(device).eval()


# --- the authors' checkpoints (csZcWu/NRKNet) ----------------------------------------

_STAGES = {"Encoder.0": "enc1", "Encoder.1": "enc2", "Encoder.2": "enc3",
           "Decoder.0": "dec3", "Decoder.1": "dec2", "Decoder.2": "dec1", "bottleneck.1": "mid"}
_CONVS = {"feat_extract.0": "inp", "feat_extract.1": "down1", "feat_extract.2": "down2",
          "feat_extract.3": "up2", "feat_extract.4": "up1", "bottleneck.0": "mid_conv"}


def convert_official_state(state: dict[str, Tensor], config: NRKConfig) -> dict[str, Tensor]:
    """Rename the authors' state_dict keys to ours (pure: tensors in, tensors out).

    Raises KeyError for a key it does not know, so a foreign file never loads half-way.
    """
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("SummationLayer.conv."):
            new = "mix." + parts[-1]
        elif key == "GCM.kernels":  # (J-1)*C x 1 x 1 x 2, atom-major, colour-minor
            new, value = "rkr.taps", value.reshape(config.num_atoms - 1, config.in_channels, -1)
        elif key.startswith("APU.conv.main.0."):
            new = "head.conv." + parts[-1]
        elif key.startswith("APU.conv.main.1."):
            new = "head.bn." + parts[-1]
        elif key.startswith("APU.conv_atten.conv."):
            new = "head.lstm.conv." + parts[-1]
        elif ".".join(parts[:2]) in _STAGES:  # X.i.layers.k.main.m.main.0.weight
            block, conv = parts[3], int(parts[5]) + 1
            new = f"unet.{_STAGES['.'.join(parts[:2])]}.{block}.conv{conv}.weight"
        elif ".".join(parts[:2]) in _CONVS:  # X.i.main.0.weight
            new = f"unet.{_CONVS['.'.join(parts[:2])]}.weight"
        else:
            raise KeyError(key)
        out[new] = value
    return out


def convert_official(src: str | os.PathLike, dst: str | os.PathLike, config: NRKConfig) -> NRKNet:
    """Load the authors' .pth (weights_only: never runs pickled code), save ours."""
    src = Path(src)
    if not src.is_file():
        raise WeightsError(f"{src}: no such checkpoint")
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a bad file; report one line
        raise WeightsError(f"{src}: cannot read as a PyTorch checkpoint ({type(e).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{src}: not a state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel prefix
    model = NRKNet(config)
    try:
        model.load_state_dict(convert_official_state(state, config), strict=True)
    except (KeyError, RuntimeError, IndexError, ValueError) as e:
        raise WeightsError(f"{src}: not an NRKNet checkpoint of the authors' layout ({str(e).splitlines()[0]})") from None
    save_weights(model, dst, extra={"nrkdeblur.source": f"converted from {src.name}"})
    return model
