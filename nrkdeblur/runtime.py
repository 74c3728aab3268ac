"""Backends that run the network on one tile: torch, or ONNX Runtime on an exported graph.

Both are one call, [1, 3, h, w] float32 on the CPU -> [1, K, h, w] float32 on the CPU with
the channels of forward.forward_maps (image, defocus map, coefficients), so
inference.deblur's tiling, blending and colour handling stay the same for both.

"auto" is torch: measured side by side on an idle 2-core CPU (README, "Speed and
memory"), ONNX Runtime was as fast at 1280 x 720 and no faster for a 12 MP photo end to
end, with a higher peak memory; on CUDA nothing was measured against it. The ONNX Runtime
backend (--backend onnxruntime) reads the exported graph from the cache
(export.cached_onnx: one export per weights, options and versions; a cached file that
ONNX Runtime cannot load is exported again) and keeps one InferenceSession per model,
options and device, reused by every tile and photo.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .errors import SettingsError
from .forward import forward_maps
from .model import NRKNet, pad_to_multiple

BACKENDS = ("auto", "torch", "onnxruntime")

Runner = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class RunSpec:
    """What a runner computes, and where: the key of the runners kept per model."""

    backend: str  # "torch" or "onnxruntime", never "auto"
    device: str
    defocus_map: bool
    coefficients: bool
    half: bool


def onnxruntime_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def execution_providers() -> list[str]:
    """The execution providers this ONNX Runtime build has."""
    import onnxruntime

    return onnxruntime.get_available_providers()


def resolve_backend(name: str, device: torch.device) -> str:
    """"auto" -> the backend measured faster (torch, module docstring); others are checked."""
    if name not in BACKENDS:
        raise SettingsError(f"unknown backend {name!r} (use {', '.join(BACKENDS)})")
    if name == "auto":
        return "torch"
    if name == "onnxruntime":
        if not onnxruntime_available():
            raise SettingsError("--backend onnxruntime needs the onnx extra: pip install 'nrkdeblur[onnx]'")
        if device.type not in ("cpu", "cuda"):
            raise SettingsError(f"--backend onnxruntime runs on cpu or cuda, not {device.type}")
        if device.type == "cuda" and "CUDAExecutionProvider" not in execution_providers():
            raise SettingsError("--backend onnxruntime on cuda needs ONNX Runtime's CUDA build "
                                "(pip install onnxruntime-gpu); this one runs on the CPU only")
    return name


def torch_runner(model: NRKNet, spec: RunSpec) -> Runner:
    """The model itself in channels-last layout (same numbers, faster convolutions), in
    float16 autocast when half on CUDA."""
    device = next(model.parameters()).device
    dtype = torch.float16 if spec.half and device.type == "cuda" else torch.float32
    model.to(memory_format=torch.channels_last)

    def run(x: Tensor) -> Tensor:
        x = x.to(device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            y = forward_maps(model, x, spec.defocus_map, spec.coefficients)
        return y.float().cpu()

    return run


def session_options(threads: int | None = None):
    """ONNX Runtime settings measured best here (README, "Speed and memory"): all graph
    optimisations, one intra-op thread per torch thread, sequential execution, the arena on
    (tiles of one shape reuse its blocks: without it a 912 x 1168 tile takes 9.4 s instead
    of 5.6 s) and the memory pattern off (with it, the second run of a shape plans one more
    block beside the arena's: peak 2816 MB instead of 2003 MB, at the same speed)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.enable_mem_pattern = False
    so.enable_cpu_mem_arena = True
    so.log_severity_level = 3  # errors only
    if _shared_cpu_arena():
        so.add_session_config_entry("session.use_env_allocators", "1")
    return so


@functools.cache
def _shared_cpu_arena() -> bool:
    """Register, once per process, a CPU arena that grows by what is asked for instead of
    doubling: at 912 x 1168 tiles of the shipped model the peak drops from 2319 to 2050 MB,
    at the same speed (measured). False if this ONNX Runtime cannot."""
    import onnxruntime as ort

    try:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": 1}))
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return False
    return True


def onnxruntime_runner(model: NRKNet, spec: RunSpec) -> Runner:
    """One InferenceSession on the cached export; on CUDA through the CUDA execution
    provider, in float16 when half (an export in float16). Every tile is padded here to the
    model's multiple exactly as NRKNet pads it (model.pad_to_multiple), so the tiles of a
    photo reach the graph in one shape (tiling.py) and the runtime's arena blocks are
    reused; the graph's own padding then does nothing."""
    import onnxruntime as ort

    from .export import ExportOptions, cached_onnx

    device = torch.device(spec.device)
    half = spec.half and device.type == "cuda"
    export = ExportOptions(defocus_map=spec.defocus_map, coefficients=spec.coefficients, half=half)
    path, exported = cached_onnx(model, export)
    if device.type == "cuda":
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    try:
        runtime_graph = ort.InferenceSession(str(path), sess_options=session_options(), providers=providers)
    except Exception:  # ONNX Runtime's own error classes: a cached file cut short or damaged on disk
        if exported:
            raise
        path, _ = cached_onnx(model, export, rebuild=True)  # exported afresh, then loaded as any other
        runtime_graph = ort.InferenceSession(str(path), sess_options=session_options(), providers=providers)
    dtype = np.float16 if half else np.float32
    m = model.config.multiple

    def run(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, m)
        outputs = runtime_graph.run(None, {"input": np.ascontiguousarray(x.numpy(), dtype=dtype)})
        y = torch.from_numpy(outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=1))
        return y[..., :h, :w].float()

    return run


_runners: "weakref.WeakKeyDictionary[NRKNet, dict[RunSpec, Runner]]" = weakref.WeakKeyDictionary()


def runner_for(model: NRKNet, backend: str, defocus_map: bool, coefficients: bool, half: bool) -> Runner:
    """The runner for this model and settings, made once and kept as long as the model
    lives (one InferenceSession for all tiles and photos of a batch)."""
    device = next(model.parameters()).device
    spec = RunSpec(resolve_backend(backend, device), str(device), defocus_map, coefficients, half)
    kept = _runners.setdefault(model, {})
    if spec not in kept:
        kept[spec] = (onnxruntime_runner if spec.backend == "onnxruntime" else torch_runner)(model, spec)
    return kept[spec]
