"""What a GPU changes, measured on one: the shipped weights on CUDA against the CPU, in half
precision, tiled against whole, the ONNX Runtime backend there, and whole command lines on a
12 MP photo. Prints one line per figure (scripts/gpu-run.sh keeps them).

    python scripts/gpu-checks.py PHOTO
"""

import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nrkdeblur.inference import InferenceOptions, deblur
from nrkdeblur.runtime import onnxruntime_available
from nrkdeblur.weights import default_weights, load_model


def levels(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.clip(a, 0, 1) - np.clip(b, 0, 1)).max() * 255)


def timed(fn, repeat: int = 3) -> float:
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main(photo: Path) -> None:
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    pixels = np.asarray(Image.open(photo).convert("RGB").resize((1280, 720)), dtype=np.float32) / 255
    cpu = load_model(default_weights(), torch.device("cpu"))
    gpu = load_model(default_weights(), torch.device("cuda"))
    on_cpu = deblur(cpu, pixels, InferenceOptions(), defocus_map=True)
    on_gpu = deblur(gpu, pixels, InferenceOptions(), defocus_map=True)
    half = deblur(gpu, pixels, InferenceOptions(half=True), defocus_map=True)
    tiled = deblur(gpu, pixels, InferenceOptions(tile=384, overlap=192))
    print(f"1280x720, CUDA vs CPU: image {levels(on_gpu.image, on_cpu.image):.3f} levels, "
          f"map {np.abs(on_gpu.defocus_map - on_cpu.defocus_map).max():.4f} px")
    print(f"1280x720, --half vs float on CUDA: image {levels(half.image, on_gpu.image):.3f} levels, "
          f"map {np.abs(half.defocus_map - on_gpu.defocus_map).max():.4f} px")
    print(f"1280x720, tiles of 384 vs whole on CUDA: {levels(tiled.image, on_gpu.image):.3f} levels")
    for flag in (False, True):
        seconds = timed(lambda: deblur(gpu, pixels, InferenceOptions(half=flag)))
        print(f"1280x720 on CUDA, half={flag}: {seconds:.3f} s")
    if onnxruntime_available():
        import onnxruntime

        print(f"onnxruntime {onnxruntime.__version__}, providers {onnxruntime.get_available_providers()}")
        try:
            ort = deblur(gpu, pixels, InferenceOptions(backend="onnxruntime"))
            print(f"1280x720, --backend onnxruntime vs torch on CUDA: {levels(ort.image, on_gpu.image):.3f} levels")
        except Exception as e:  # report it: this script measures, it does not fix
            print(f"--backend onnxruntime on CUDA failed: {type(e).__name__}: {str(e).splitlines()[0]}")
    big = Path("/tmp/photo12mp.jpg")
    Image.open(photo).convert("RGB").resize((4000, 3000)).save(big, quality=92)
    for flags in (["--device", "cuda"], ["--device", "cuda", "--half"], ["--device", "cpu"]):
        start = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "nrkdeblur", str(big), "-o", "/tmp/out12.jpg", "--overwrite", "-q",
                            *flags], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"command line, 4000x3000 JPEG, {' '.join(flags)}: exit {r.returncode}, {seconds:.1f} s, "
              f"peak RSS so far {peak:.0f} MB {r.stderr.strip()[-200:]}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
