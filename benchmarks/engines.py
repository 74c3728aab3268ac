"""The local and the Ray engine side by side: whole `nrkdeblur` commands on the same photos.

    python benchmarks/engines.py --json benchmarks/engines.json

Writes PHOTOS synthetic photos (fixed seed) to a temporary folder, then runs each
configuration as a fresh process, in turn, ROUNDS times, and times it from start to exit:

    local x1       nrkdeblur IN -o OUT -q with OMP_NUM_THREADS=1   (one torch thread)
    ray 1x1        ... --engine ray --workers 1, Ray's node given one CPU
                   (RAY_OVERRIDE_RESOURCES), so the one worker runs one torch thread
    ray 2x1        ... --engine ray --workers 2             (two workers, one thread each)
    local x2       nrkdeblur IN -o OUT -q                    (torch's default: all cores)
    ray 1x2        ... --engine ray --workers 1             (one worker, all cores)

and, with --startup, each configuration on one 64x64 photo (what starting and stopping
cost), to give the same ratios on the time past start-up as well. Medians over the rounds;
overhead = the Ray engine's time / the local engine's at equal parallelism; scaling = ray
1x1's time / ray 2x1's (2 is linear).
Not a test: it takes minutes. Needs `pip install 'nrkdeblur[ray]'`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {  # name: (extra arguments, extra environment); run in this order, so pairs run side by side
    "local x1": ([], {"OMP_NUM_THREADS": "1"}),
    "ray 1x1": (["--engine", "ray", "--workers", "1"], {"RAY_OVERRIDE_RESOURCES": json.dumps({"CPU": 1})}),
    "ray 2x1": (["--engine", "ray", "--workers", "2"], {}),
    "local x2": ([], {}),
    "ray 1x2": (["--engine", "ray", "--workers", "1"], {}),
}


def synthetic_photos(folder: Path, count: int, size: tuple[int, int], seed: int) -> float:
    """Smooth random scenes with fine noise, as JPEG; returns the megapixels in all."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(count):
        coarse = rng.random((h // 16, w // 16, 3)) * 255
        base = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((w, h), Image.BICUBIC), dtype=np.float64)
        pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i:02d}.jpg", quality=92)
    return count * w * h / 1e6


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "nrkdeblur", *args], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): nrkdeblur {' '.join(args)}\n{r.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--size", type=int, nargs=2, default=(800, 600), metavar=("W", "H"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--startup", action="store_true", help="Also time each engine on one 64x64 photo.")
    parser.add_argument("--json", type=Path, help="Write the results here.")
    a = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nrkdeblur-engines-"))
    try:
        megapixels = synthetic_photos(work / "in", a.photos, tuple(a.size), a.seed)
        synthetic_photos(work / "one", 1, (64, 64), a.seed)
        runs: dict[str, list[float]] = {name: [] for name in CONFIGS}
        load: dict[str, list[float]] = {name: [] for name in CONFIGS}  # the machine's, after each run
        startup: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for r in range(a.rounds):
            for name, (extra, env) in CONFIGS.items():
                out = work / "out"
                seconds = timed([str(work / "in"), "-o", str(out), "-q", *extra], env)
                shutil.rmtree(out)
                runs[name].append(seconds)
                load[name].append(os.getloadavg()[0])
                print(f"round {r + 1} {name}: {seconds:.1f} s, {megapixels / seconds:.3f} MP/s, "
                      f"load average {load[name][-1]:.1f}", flush=True)
            if a.startup:
                for name, (extra, env) in CONFIGS.items():
                    seconds = timed([str(work / "one"), "-o", str(work / "o1"), "-q", *extra], env)
                    shutil.rmtree(work / "o1")
                    startup[name].append(seconds)
                    print(f"round {r + 1} {name}, one 64x64 photo: {seconds:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    median = {name: statistics.median(s) for name, s in runs.items()}
    results = {
        "command": "python benchmarks/engines.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "photos": a.photos, "size": list(a.size), "megapixels": megapixels, "rounds": a.rounds,
        "seconds": runs,
        "load_average_after": load,
        "median_seconds": median,
        "megapixels_per_s": {name: megapixels / s for name, s in median.items()},
        "overhead_1_thread": median["ray 1x1"] / median["local x1"],
        "overhead_all_cores": median["ray 1x2"] / median["local x2"],
        "scaling_1_to_2_workers": median["ray 1x1"] / median["ray 2x1"],
        "ray_2x1_vs_local_x2": median["local x2"] / median["ray 2x1"],
    }
    keys = ["overhead_1_thread", "overhead_all_cores", "scaling_1_to_2_workers", "ray_2x1_vs_local_x2"]
    if a.startup:  # the same ratios on the time past starting up (the batch's time less one tiny photo's)
        start = {name: statistics.median(s) for name, s in startup.items()}
        past = {name: median[name] - start[name] for name in CONFIGS}
        results["startup_seconds"] = {"runs": startup, "median": start}
        results["past_startup"] = {
            "overhead_1_thread": past["ray 1x1"] / past["local x1"],
            "overhead_all_cores": past["ray 1x2"] / past["local x2"],
            "scaling_1_to_2_workers": past["ray 1x1"] / past["ray 2x1"],
            "ray_2x1_vs_local_x2": past["local x2"] / past["ray 2x1"],
        }
        for key in keys:
            print(f"{key}, past start-up: {results['past_startup'][key]:.3f}")
    for key in keys:
        print(f"{key}: {results[key]:.3f}")
    if a.json is not None:
        a.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
