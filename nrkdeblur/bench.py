"""Benchmarks behind `nrkdeblur bench`: every figure measured in the same run.

1. the recursive RKR operator (eq. 5, O(6NJ)) against the explicit per-pixel-kernel
   operator (O(N S^2)) at J = 20, S = 39, on a 1 MP image;
2. whole-photo inference speed (megapixels per second) of the shipped and paper presets
   at 1280x720;
3. peak resident memory of tiled inference on 2, 12 and 24 MP photos, each in a fresh
   process;
4. the share of the machine's measured convolution throughput that inference reaches;
5. the largest difference between tiled and whole-photo inference.
Pure measurement: returns numbers (and a plot of them); cli.py prints them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageDraw, ImageFont

from .config import preset
from .model import NRKNet, count_parameters
from .rkr import RecursiveKernels, explicit_blur


def best_time(fn: Callable[[], object], repeat: int = 3, warmup: bool = True) -> float:
    """Fastest of `repeat` runs after one warm-up run, in seconds."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from . import allocator

    command_allocator = "mimalloc" if allocator.wanted(os.environ) and allocator.library() else "system"
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "command_allocator": command_allocator}


@torch.inference_mode()
def rkr_vs_explicit(J: int = 20, side: int = 1024) -> dict:
    """Seconds of the recursive and of the per-pixel operator on a side x side RGB image."""
    torch.manual_seed(0)
    rkr = RecursiveKernels(J, 3)
    x = torch.rand(1, 3, side, side)
    gamma = torch.softmax(torch.randn(1, J, side, side), dim=1)
    atoms = rkr.atoms_per_channel()
    fast = best_time(lambda: rkr(x, gamma))
    slow = best_time(lambda: explicit_blur(x, gamma, atoms, rows=32), repeat=1, warmup=False)  # minutes
    return {"J": J, "S": 2 * J - 1, "megapixels": side * side / 1e6, "recursive_s": fast, "explicit_s": slow,
            "ratio": slow / fast}


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of the convolutions in one forward pass (the RKR operator's
    few elementwise operations per pixel and atom are not counted)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total  # each output (conv) or input (transposed conv) value meets weight[0]
        grid = inputs[0] if isinstance(module, nn.ConvTranspose2d) else output
        total += grid.numel() * module.weight[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return total


@torch.inference_mode()
def conv_ceiling() -> float:
    """MAC/s of one large 3x3 convolution, 64 -> 64 channels on 512x512, in the faster of
    the NCHW and channels-last layouts: the machine's ceiling."""
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)
    x = torch.rand(1, 64, 512, 512)
    t = best_time(lambda: conv(x))
    conv.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    t = min(t, best_time(lambda: conv(x)))
    return 64 * 64 * 9 * 512 * 512 / t


def throughput(preset_name: str, height: int = 720, width: int = 1280, weights: str | None = None) -> dict:
    """Whole-photo inference through the product's path (inference.deblur with the default
    backend, "auto": channels-last torch in inference mode), through ONNX Runtime when the
    onnx extra is installed and, for comparison, the model called plainly on an NCHW
    tensor: seconds, megapixels per second, MACs and their rate. ONNX Runtime's first call,
    which exports the model (unless cached) and opens the runtime, is timed on its own."""
    from .inference import InferenceOptions, deblur
    from .runtime import onnxruntime_available, resolve_backend
    from .weights import load_model

    if weights is not None:
        model = load_model(weights)
    else:
        torch.manual_seed(0)
        model = NRKNet(preset(preset_name)).eval()
    pixels = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()
    with torch.inference_mode():
        plain = best_time(lambda: model(x))
    backend = resolve_backend("auto", torch.device("cpu"))
    seconds = best_time(lambda: deblur(model, pixels, InferenceOptions(backend=backend)))
    extra = {}
    if onnxruntime_available():
        start = time.perf_counter()
        deblur(model, pixels, InferenceOptions(backend="onnxruntime"))
        extra["first_call_seconds"] = time.perf_counter() - start
        extra["onnxruntime_seconds"] = best_time(lambda: deblur(model, pixels, InferenceOptions(backend="onnxruntime")), warmup=False)
    macs = count_macs(model, x)
    return {"preset": preset_name, "width": model.config.width,
            "parameters": count_parameters(model), "backend": backend,
            "size": f"{width}x{height}", "seconds": seconds, **extra, "plain_nchw_seconds": plain,
            "megapixels_per_s": height * width / 1e6 / seconds, "gmacs": macs / 1e9, "mac_per_s": macs / seconds,
            "threads": torch.get_num_threads()}


def synthetic_photo(path, megapixels: float) -> tuple[int, int]:
    """A 4:3 JPEG of blocky noise (edges everywhere) of about that size; returns (h, w)."""
    h = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    w = int(h * 4 / 3)
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    Image.fromarray(blocks.repeat(8, 0).repeat(8, 1)[:h, :w]).save(path, quality=95)
    return h, w


def command_line(photo, backend: str = "torch", model: str = "default", env: dict | None = None) -> dict:
    """One `nrkdeblur PHOTO -o OUT --backend B --model M` in a fresh process, start-up
    included, through the console command's own entry (launch.py: the allocator too): wall
    seconds, the child's own user and system CPU seconds and peak memory (wait4)."""
    out = os.path.join(os.path.dirname(photo), f"out-{backend}-{model}.jpg")
    args = [str(photo), "-o", out, "--backend", backend, "--model", model, "--overwrite", "-q"]
    # as `python -m nrkdeblur ARGS`, then the process's own peak (VmHWM; wait4's ru_maxrss
    # would also count this process's size at the fork) printed last on stderr
    code = ("import atexit, sys\n"
            "def peak():\n"
            "    kb = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
            "    print(f'VmHWM {kb}', file=sys.stderr)\n"
            "atexit.register(peak)\n"
            f"sys.argv = ['nrkdeblur', *{args!r}]\n"
            "from nrkdeblur.launch import main\n"
            "main()\n")
    cmd = [sys.executable, "-c", code]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err.strip()[-300:]}")
    peak = int(err.strip().splitlines()[-1].split()[1])
    return {"backend": backend, "model": model, "seconds": wall, "user_s": usage.ru_utime,
            "system_s": usage.ru_stime, "peak_rss_mb": peak / 1024}


def end_to_end_macs(model: NRKNet, height: int, width: int, backend: str = "torch") -> int:
    """The convolutions' MACs for a photo of that size as the command line runs it: the
    model's MACs per pixel (count_macs on 256 x 256, a multiple of every model's grid, so
    exact per pixel) times the pixels its tiles process, overlaps and padding included
    (inference.processed_pixels, with the tiles chosen from the memory free now, as the
    command line chooses them)."""
    from .inference import InferenceOptions, processed_pixels

    per_pixel = count_macs(model, torch.rand(1, 3, 256, 256)) / 256**2
    return int(per_pixel * processed_pixels(model, height, width, InferenceOptions(backend=backend)))


def tiled_vs_whole(weights: str, side: int = 1024, tile: int = 512, backend: str = "torch") -> float:
    """Largest difference, in 8-bit levels, between tiled and whole-photo inference."""
    from .inference import DEFAULT_OVERLAP, InferenceOptions, deblur
    from .weights import load_model

    model = load_model(weights)
    rng = np.random.default_rng(0)  # blocky noise: edges everywhere, the hardest case for seams
    pixels = rng.random((side // 8, side // 8, 3), dtype=np.float32).repeat(8, 0).repeat(8, 1)
    whole = deblur(model, pixels, InferenceOptions(backend=backend)).image.clip(0, 1)
    overlap = min(DEFAULT_OVERLAP, tile // 2)  # as the command line allows
    tiled = deblur(model, pixels, InferenceOptions(tile=tile, overlap=overlap, backend=backend)).image.clip(0, 1)
    return float(np.abs(whole - tiled).max() * 255)


def backends_agree(weights: str, height: int = 301, width: int = 457) -> float:
    """Largest difference between the torch and the ONNX Runtime backend's float outputs."""
    from .inference import InferenceOptions, deblur
    from .weights import load_model

    model = load_model(weights)
    pixels = np.random.default_rng(1).random((height, width, 3), dtype=np.float32)
    a = deblur(model, pixels, InferenceOptions(backend="torch"), defocus_map=True)
    b = deblur(model, pixels, InferenceOptions(backend="onnxruntime"), defocus_map=True)
    return float(max(np.abs(a.image - b.image).max(), np.abs(a.defocus_map - b.defocus_map).max()))


def tiled_peak_memory(megapixels: float, weights: str | None = None, backend: str = "auto") -> dict:
    """Peak RSS of deblurring a synthetic photo of that size through the product's own path
    (inference.deblur with the automatic tile), measured in a fresh child process with the
    command's allocator (allocator.py)."""
    code = (
        "from nrkdeblur import allocator\n"
        "allocator.switch_on()\n"
        "import json, resource, time, numpy as np, torch\n"
        "from nrkdeblur.inference import InferenceOptions, deblur, tiles_for\n"
        "from nrkdeblur.pipeline import open_default_weights\n"
        f"w = {weights!r}\n"
        "model = open_default_weights(None if w is None else __import__('pathlib').Path(w), torch.device('cpu'))\n"
        f"mp = {megapixels}\n"
        "h = int((mp * 1e6 * 3 / 4) ** 0.5); w_ = int(h * 4 / 3)\n"
        "rng = np.random.default_rng(0)\n"
        "img = np.clip(rng.random((h // 8 + 1, w_ // 8 + 1, 3), dtype=np.float32).repeat(8, 0).repeat(8, 1)[:h, :w_], 0, 1)\n"
        "t = time.perf_counter()\n"
        f"options = InferenceOptions(backend={backend!r})\n"
        "tile = tiles_for(model, h, w_, options)[0]\n"
        "deblur(model, img, options)\n"
        "s = time.perf_counter() - t\n"
        "try:  # VmHWM: this process's own peak (ru_maxrss also counts the parent's before exec)\n"
        "    peak = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "except (OSError, StopIteration):\n"
        "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"print(json.dumps({{'megapixels': h * w_ / 1e6, 'tile': tile, 'seconds': s, 'peak_rss_mb': peak / 1024, 'backend': {backend!r}, 'allocator': allocator.active()}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(results: dict) -> Image.Image:
    """The results as one picture: inference seconds per preset (plain NCHW call beside the
    product's path) and tiled peak memory per photo size, as labelled horizontal bars."""
    font = ImageFont.load_default(size=15)
    rows: list[tuple[str, float, str, tuple[int, int, int]] | str] = []
    for t in results.get("throughput", []):
        rows.append(f"Whole-photo inference, {t['size']}, {t['threads']} threads (seconds)")
        name = f"{t['preset']} (width {t['width']})"
        rows.append((f"{name}: plain NCHW call", t["plain_nchw_seconds"], f"{t['plain_nchw_seconds']:.1f} s",
                     (170, 170, 170)))
        if "onnxruntime_seconds" in t:
            rows.append((f"{name}: onnxruntime", t["onnxruntime_seconds"], f"{t['onnxruntime_seconds']:.1f} s",
                         (120, 160, 210)))
        rows.append((f"{name}: nrkdeblur ({t.get('backend', 'torch')})", t["seconds"], f"{t['seconds']:.1f} s",
                     (40, 110, 200)))
    if results.get("memory"):
        rows.append("Tiled inference: peak memory (MB) and time")
        for m in results["memory"]:
            rows.append((f"{m['megapixels']:.0f} MP photo", m["peak_rss_mb"], f"{m['peak_rss_mb']:.0f} MB, "
                         f"{m['seconds']:.0f} s", (230, 120, 40)))
    width, label_w, bar_w, line = 960, 250, 560, 26
    title = f"nrkdeblur bench: {results['machine']['cpu']}, {results['machine']['cores']} cores"
    if "rkr" in results:
        op = results["rkr"]
        title += f"; RKR operator {op['ratio']:.0f}x faster than per-pixel kernels (S={op['S']})"
    img = Image.new("RGB", (width, line * (len(rows) + 2)), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 6), title, fill="black", font=font)
    group_max = 1.0
    for i, row in enumerate(rows):
        y = line * (i + 1) + 8
        if isinstance(row, str):
            draw.text((10, y + 4), row, fill="black", font=font)
            nxt = rows[i + 1:]
            end = next((k for k, r in enumerate(nxt) if isinstance(r, str)), len(nxt))
            group_max = max([r[1] for r in nxt[:end]], default=1.0) or 1.0
            continue
        name, value, text, colour = row
        draw.text((20, y + 4), name, fill="black", font=font)
        length = int(bar_w * value / group_max)
        draw.rectangle([label_w, y + 4, label_w + max(length, 1), y + line - 4], fill=colour)
        draw.text((label_w + length + 8, y + 4), text, fill="black", font=font)
    return img


# --- the whole benchmark, as `nrkdeblur bench` runs it ----------------------------------

Say = Callable[[str], None]


def run_all(quick: bool, memory: bool, end_to_end: bool, say: Say) -> dict:
    """Every measurement of `nrkdeblur bench` in one run, side by side; each is said as it
    comes and all are returned (for --json and --plot)."""
    from .weights import default_weights

    shipped = str(default_weights())
    results: dict = {"machine": machine()}
    say(f"machine: {results['machine']}")
    op = rkr_vs_explicit(20, 512 if quick else 1024)
    results["rkr"] = op
    say(f"RKR operator, J={op['J']} (S={op['S']}), {op['megapixels']:.2f} MP: recursive {op['recursive_s']:.3f} s, "
        f"per-pixel kernels {op['explicit_s']:.1f} s: {op['ratio']:.0f}x faster")
    if quick:
        return results
    ceiling = conv_ceiling()
    results["conv_ceiling_gmac_per_s"] = ceiling / 1e9
    results["throughput"] = [_say_throughput(name, weights, ceiling, say)
                             for name, weights in (("cpu", shipped), ("paper", None))]
    results.update(_agreement(shipped, say))
    if memory:
        results["memory"] = _memory(say)
    if end_to_end:
        results["command_line"] = _command_lines(results, ceiling, say)
    return results


def _say_throughput(name: str, weights: str | None, ceiling: float, say: Say) -> dict:
    t = throughput(name, weights=weights)
    t["share_of_conv_ceiling"] = t["mac_per_s"] / ceiling
    say(f"{name} preset (width {t['width']}, {t['parameters']:,} parameters), {t['size']}: "
        f"{t['seconds']:.2f} s with {t['backend']} (the default; "
        + (f"{t['onnxruntime_seconds']:.2f} s with onnxruntime, first call {t['first_call_seconds']:.1f} s; "
           if "onnxruntime_seconds" in t else "")
        + f"{t['plain_nchw_seconds']:.2f} s as a plain NCHW call: {t['plain_nchw_seconds'] / t['seconds']:.2f}x), "
        f"{t['megapixels_per_s']:.3f} MP/s, {t['gmacs']:.1f} GMAC, {t['share_of_conv_ceiling']:.0%} of "
        f"the {ceiling / 1e9:.1f} GMAC/s 3x3-conv ceiling, {t['threads']} threads")
    return t


def _backends() -> list[str]:
    from .runtime import onnxruntime_available

    return ["torch", "onnxruntime"] if onnxruntime_available() else ["torch"]


def _agreement(shipped: str, say: Say) -> dict:
    results: dict = {"tiled_vs_whole_levels": {k: tiled_vs_whole(shipped, backend=k) for k in _backends()}}
    for k, v in results["tiled_vs_whole_levels"].items():
        say(f"tiled vs whole, 1 MP, tile 512, {k}: max difference {v:.4f} of an 8-bit level")
    if "onnxruntime" in _backends():
        results["onnxruntime_vs_torch"] = backends_agree(shipped)
        say(f"onnxruntime vs torch, 457x301, image and defocus map: max difference "
            f"{results['onnxruntime_vs_torch']:.1e}")
    return results


def _memory(say: Say) -> list[dict]:
    runs = []
    for mp in (2, 12, 24):
        m = tiled_peak_memory(mp)
        runs.append(m)
        say(f"tiled {m['megapixels']:.1f} MP (tile {m['tile']}): {m['seconds']:.1f} s, peak {m['peak_rss_mb']:.0f} MB")
    say(f"peak memory, 24 MP / 12 MP: {runs[2]['peak_rss_mb'] / runs[1]['peak_rss_mb']:.2f}")
    return runs


def _command_lines(results: dict, ceiling: float, say: Say) -> list[dict]:
    """A 12 MP JPEG through the command line: each shipped model with the default backend,
    and the default model with ONNX Runtime when installed; the MACs its tiles process
    against the conv ceiling measured in this run."""
    import tempfile
    from pathlib import Path

    from .weights import SHIPPED, load_model, shipped_weights

    runs = [("torch", m.name) for m in SHIPPED] + [(k, "default") for k in _backends() if k != "torch"]
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "photo12mp.jpg"
        h, w = synthetic_photo(photo, 12)
        macs = {(backend, name): end_to_end_macs(load_model(shipped_weights(name)), h, w, backend)
                for backend, name in runs}
        timed = [command_line(photo, backend, name) for backend, name in runs]
    for r in timed:
        r["gmacs"] = macs[r["backend"], r["model"]] / 1e9
        r["share_of_conv_ceiling"] = r["gmacs"] * 1e9 / ceiling / r["seconds"]
        say(f"command line, {w}x{h} JPEG, --model {r['model']} --backend {r['backend']}: {r['seconds']:.1f} s "
            f"(user {r['user_s']:.1f} s, system {r['system_s']:.1f} s), peak {r['peak_rss_mb']:.0f} MB; "
            f"{r['gmacs']:.0f} GMAC in the pixels its tiles process: {r['share_of_conv_ceiling']:.0%} of the "
            f"{ceiling / 1e9:.0f} GMAC/s conv ceiling")
    by = {(r["backend"], r["model"]): r["seconds"] for r in timed}
    for name in (m.name for m in SHIPPED[1:]):
        say(f"command line, --model {name} vs default: {by['torch', 'default'] / by['torch', name]:.2f}x faster")
    if ("onnxruntime", "default") in by:
        say(f"command line, --backend onnxruntime vs torch (the default): "
            f"{by['torch', 'default'] / by['onnxruntime', 'default']:.2f}x faster")
    return timed
