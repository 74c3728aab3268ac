"""ONNX export of an NRKNet, and the cache of exported models the ONNX Runtime backend uses.

The exported graph takes an image [N, 3, H, W] in [0, 1] of any height and width of at
least 2 * multiple (32 px for three scales; smaller images are padded by the caller, as
runtime.py does). It pads to the model's multiple by reflection inside the graph, exactly
as NRKNet.forward does (model.pad_to_multiple), runs the network and crops back, so
outputs have the input's size. Outputs, by name:

- ``image``: the deblurred image Z (eq. 10), [N, 3, H, W];
- ``defocus_map`` (on request): the defocus map, the blur's RMS radius in input pixels, [N, 1, H, W];
- ``coefficients`` (on request): the coefficients gamma of every scale, coarse to fine,
  nearest-upsampled to full size, [N, S * J, H, W].

These are the channels of forward.forward_maps, computed by that very function while
the exporter traces it. The model's config is stored in the file's metadata_props under
the same key as in a weights file (weights.CONFIG_KEY), so an exported file describes
itself as the safetensors file does.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .errors import NrkdeblurError
from .version import __version__
from .atomic import atomic_write
from .forward import forward_maps
from .model import NRKNet
from .weights import CONFIG_KEY

OUTPUTS_KEY = "nrkdeblur.outputs"
CACHE_ENV = "NRKDEBLUR_CACHE_DIR"


class ExportError(NrkdeblurError):
    """The ONNX packages are missing, or the export or its check failed."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export.

    Args:
        defocus_map: add the ``defocus_map`` output.
        coefficients: add the ``coefficients`` output.
        half: float16 weights, input and outputs (for GPU execution providers).
        opset: ONNX opset version.
    """

    defocus_map: bool = False
    coefficients: bool = False
    half: bool = False
    opset: int = 18

    @property
    def output_names(self) -> list[str]:
        return ["image"] + ["defocus_map"] * self.defocus_map + ["coefficients"] * self.coefficients


class ExportGraph(nn.Module):
    """What is exported: pad to the model's multiple, forward_maps, crop, split by output.

    The padding is written with sizes the tracer records as graph operations (so any H, W
    work), and the padded sides are multiples, so NRKNet.forward's own padding does nothing.
    """

    def __init__(self, model: NRKNet, options: ExportOptions):
        super().__init__()
        self.model = model
        self.options = options

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        H, W = x.shape[-2:]
        m = self.model.config.multiple
        padded = F.pad(x, (0, (W + m - 1) // m * m - W, 0, (H + m - 1) // m * m - H), mode="reflect")
        y = forward_maps(self.model, padded, self.options.defocus_map, self.options.coefficients)[..., :H, :W]
        c = self.model.config
        sizes = [3] + [1] * self.options.defocus_map + [c.num_scales * c.num_atoms] * self.options.coefficients
        return tuple(y.split(sizes, dim=1))


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx extra: pip install 'nrkdeblur[onnx]'") from None
    return onnx


def export_bytes(model: NRKNet, options: ExportOptions = ExportOptions()) -> bytes:
    """The model as a checked ONNX file (bytes), config in its metadata."""
    onnx = _require_onnx()
    import io

    dtype = torch.float16 if options.half else torch.float32
    # a private float copy in the default layout: the traced graph then holds plain NCHW ops
    net = copy.deepcopy(model).to("cpu", dtype).to(memory_format=torch.contiguous_format).eval()
    graph = ExportGraph(net, options)
    m = model.config.multiple
    example = torch.rand(1, model.config.in_channels, 3 * m + 3, 2 * m + 5, dtype=dtype)  # odd sides
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer warns about the Python branches of NRKNet's padding and asserts; with padded
        # inputs of at least 2 * multiple they take the same way for every size
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (example,), buffer, dynamo=False, opset_version=options.opset,
                          input_names=["input"], output_names=options.output_names,
                          dynamic_axes={name: axes for name in ["input", *options.output_names]})
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in {CONFIG_KEY: model.config.to_json(), OUTPUTS_KEY: json.dumps(asdict(options)),
                       "nrkdeblur.version": __version__}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "nrkdeblur"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the exported graph fails onnx.checker: {str(e).splitlines()[0]}") from None
    return proto.SerializeToString()


def export_onnx(model: NRKNet, path: str | os.PathLike, options: ExportOptions = ExportOptions()) -> None:
    """Export to `path`, written atomically (temporary file, then rename)."""
    data = export_bytes(model, options)
    atomic_write(Path(path), lambda f: f.write(data))


def read_onnx_config(path: str | os.PathLike) -> dict[str, str]:
    """The nrkdeblur entries of an ONNX file's metadata_props."""
    onnx = _require_onnx()
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props if p.key.startswith("nrkdeblur.")}


def cache_dir() -> Path:
    """$NRKDEBLUR_CACHE_DIR, else $XDG_CACHE_HOME/nrkdeblur, else ~/.cache/nrkdeblur."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nrkdeblur"


def weights_digest(model: NRKNet) -> str:
    """SHA-256 of what a weights file holds: the config and every tensor of the state."""
    h = hashlib.sha256(model.config.to_json().encode())
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(model: NRKNet, options: ExportOptions) -> str:
    """The weights' digest, the export options, the versions and the source of the modules
    that the traced graph comes from."""
    import onnx

    here = Path(__file__).parent
    source = hashlib.sha256(b"".join((here / f"{name}.py").read_bytes() for name in ("model", "rkr", "inference", "export")))
    parts = [weights_digest(model), json.dumps(asdict(options), sort_keys=True), __version__, torch.__version__,
             onnx.__version__, source.hexdigest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def cached_onnx(model: NRKNet, options: ExportOptions = ExportOptions(), folder: Path | None = None,
                rebuild: bool = False) -> tuple[Path, bool]:
    """(path of the exported model, whether it was exported now): exported once per weights,
    options and versions, then read from the user's cache folder; `rebuild` exports it
    again over a cached file (one that does not load)."""
    _require_onnx()
    folder = cache_dir() if folder is None else folder
    path = folder / f"nrknet-{cache_key(model, options)}.onnx"
    if path.is_file() and not rebuild:
        return path, False
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(model, path, options)
    return path, True
