"""Model configuration: one frozen dataclass and its named presets.

The weights file stores the config as JSON in its safetensors metadata (see weights.py),
so a model is always rebuilt exactly as it was trained, never guessed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from .errors import SettingsError


@dataclass(frozen=True)
class NRKConfig:
    """Architecture of an NRKNet (paper section 3.3).

    Args:
        width: U-Net base width; stages use width, 2*width, 4*width (paper: 64).
        num_atoms: J, the number of recursive atoms *including* the Dirac A_1. The paper
            writes J = 20; the authors' released code uses the identity plus 21 atoms (22).
        num_res: residual blocks per U-Net stage (paper: 1).
        in_channels: colour channels of the image (3).
        atoms_per_channel: each colour channel has its own 3-tap kernels a_j (authors'
            code) instead of one set shared by R, G and B (paper).
        symmetric_taps: a_j = softmax([t0, t1, t0]), a symmetric kernel with 2 free values
            (authors' code); otherwise softmax of 3 free values.
        mixing: how the weighted atom responses become D(x). "sum" is the paper's eq. 3,
            D(x) = sum_j gamma_j (x * A_j). "conv" is the authors' code: a 1x1 convolution
            with bias over the J*C stack of gamma_j (x * A_j)[c].
        lstm_kernel: kernel size of the ConvLSTM that carries coefficients across scales.
        num_scales: pyramid levels of the Neumann fusion (eq. 10 uses 3).
        head_batchnorm: BatchNorm in the coefficient head's r branch (authors' code).
            Without it the 3x3 conv gets a bias. Off for CPU training: with batches of 8
            its running statistics lagged the weights and cost 0.5 dB on training crops.
        identity_start: ours, not the paper's. Adds a fixed Dirac offset to the
            coefficients and zero-initialises the ConvLSTM's candidate gate, so a fresh
            model has gamma = e_1, D = I and outputs its input exactly, so CPU training
            starts at the input's PSNR instead of spending hundreds of steps to reach it.
        focus_width: ours, not the paper's. Channels of the focus head (model.FocusHead),
            which measures the blur in pixels (the defocus map) and decides per pixel how
            much of the network's change to keep; 0: no head, the map is the effective
            kernels' RMS radius and the output is eq. 10's Z.
        map_width: ours. Channels of the map head (map_head.MapHead), trained for the
            defocus map alone on frozen weights; it needs a focus head, whose radius it
            reads. 0: no map head, the map is the focus head's.
    """

    width: int = 64
    num_atoms: int = 22
    num_res: int = 1
    in_channels: int = 3
    atoms_per_channel: bool = True
    symmetric_taps: bool = True
    mixing: str = "conv"
    lstm_kernel: int = 5
    num_scales: int = 3
    head_batchnorm: bool = True
    identity_start: bool = False
    focus_width: int = 0
    map_width: int = 0

    def __post_init__(self) -> None:
        if self.mixing not in ("sum", "conv"):
            raise ValueError(f"mixing must be 'sum' or 'conv', not {self.mixing!r}")
        if self.num_atoms < 1 or self.width < 1 or self.num_scales < 1:
            raise ValueError("num_atoms, width and num_scales must be positive")
        if self.focus_width < 0:
            raise ValueError("focus_width must be 0 (no focus head) or positive")
        if self.map_width < 0 or (self.map_width and not self.focus_width):
            raise ValueError("map_width must be 0 (no map head), or positive with a focus head")

    @property
    def multiple(self) -> int:
        """Input sides must be a multiple of this: the pyramid halves num_scales - 1 times
        and the U-Net halves twice more at the coarsest scale."""
        return 2 ** (self.num_scales - 1) * 4

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "NRKConfig":
        """Parse a config written by to_json. Unknown fields are an error; fields added
        after a file was written take their defaults, which reproduce the old behaviour."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("config is not a JSON object")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)} (made by a newer nrkdeblur?)")
        return cls(**data)


PRESETS: dict[str, NRKConfig] = {
    # The authors' released model (csZcWu/NRKNet): 6.09 M parameters, DPDD PSNR 26.11.
    "paper": NRKConfig(),
    # The shipped CPU model: the paper's architecture at a quarter of the width with the
    # paper's own J = 20 shared atoms and eq. 3's plain sum, started as the identity map.
    # Width chosen by measured quality per CPU-minute (README, "Choosing the CPU preset").
    "cpu": NRKConfig(
        width=16,
        num_atoms=20,
        atoms_per_channel=False,
        symmetric_taps=True,
        mixing="sum",
        head_batchnorm=False,
        identity_start=True,
    ),
}


def preset(name: str) -> NRKConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise SettingsError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
