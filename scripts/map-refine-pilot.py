"""Post-processing the network's defocus map, without training: which edge-aware refinement,
confidence or fusion with the classical map (zhuo_sim.py) moves the map scores of
docs/map-scores.md (Spearman on all and on textured pixels, fit MAE against the best
constant's) on the frozen sets.

    python scripts/map-refine-pilot.py cache CACHE SET...     # the network once per image
    python scripts/map-refine-pilot.py score CACHE [--only V] [--json OUT]

`cache` runs the network (shipped weights, one pass on the whole photo, as `deblur` runs
photos of the sets' size) on each SET/blur image and writes CACHE/SETNAME/NAME.npz
(blurry, sharp and deblurred uint8 RGB, the true radius, the network's map before any
refinement, the classical map), so `score` costs seconds per variant. Scores are
evaluate.py's functions, per set as `nrkdeblur eval` reports them; `--only` takes names or
patterns ('wgf soft2*'). The variant `refine_map s4` is what deblur ships (map_refine.py).
"""

from __future__ import annotations

import argparse
import json
import time
from fnmatch import fnmatch
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from nrkdeblur.evaluate import fit_set, spearman, textured
from nrkdeblur.guided_filter import guided_filter
from nrkdeblur.map_refine import refine_map
from nrkdeblur.zhuo_sim import defocus_map as classical_map, grey

Record = dict[str, np.ndarray]
SHORT = {"kodak24-defocus": "K24", "kodak24-camera": "K24cam", "out-of-recipe": "OOR", "natural-dof": "NDOF"}
Variant = Callable[[Record], np.ndarray]


def cache(out: Path, sets: list[Path]) -> None:
    """The raw map: the network's forward pass on the whole photo (500 px photos fit one
    tile, so this is what `deblur` computes before any refinement)."""
    import torch

    from nrkdeblur.eval_sets import find_sets
    from nrkdeblur.evaluate import to_uint8
    from nrkdeblur.pipeline import open_default_weights
    from nrkdeblur.runtime import runner_for

    model = open_default_weights(None, torch.device("cpu"))
    forward = runner_for(model, "torch", True, False, False)
    for name, pairs in find_sets(sets):
        (out / name).mkdir(parents=True, exist_ok=True)
        for key, blurry, sharp, radius in pairs:
            target = out / name / f"{key}.npz"
            if target.exists():
                continue
            t = time.perf_counter()
            pixels = blurry.astype(np.float32) / 255
            with torch.inference_mode():
                y = forward(torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous())[0].numpy()
            np.savez(target, blurry=blurry, sharp=sharp, out=to_uint8(y[:3].transpose(1, 2, 0)), radius=radius,
                     net=y[3].astype(np.float32), classical=classical_map(pixels))
            print(f"{name}/{key}: {time.perf_counter() - t:.1f} s", flush=True)


def load(root: Path) -> dict[str, list[Record]]:
    sets = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        records = []
        for f in sorted(folder.glob("*.npz")):
            with np.load(f) as z:
                rec = {k: z[k] for k in z.files}
            rec["textured"] = textured(rec["sharp"])
            rec["grey"] = grey(rec["blurry"] / 255.0)
            records.append(rec)
        sets[folder.name] = records
    return sets


def score_set(records: list[Record], variant: Variant) -> dict[str, float]:
    """A set's mean Spearman (all, textured), fit MAE and constant MAE, as evaluate.py."""
    maps = [variant(r).astype(np.float32) for r in records]
    truths = [r["radius"] for r in records]
    rho = [spearman(m, t) for m, t in zip(maps, truths)]
    rho_tex = [spearman(m[r["textured"]], t[r["textured"]]) for m, t, r in zip(maps, truths, records)]
    scale, constant = fit_set(maps, truths)
    return {"rho": float(np.mean([v for v in rho if v is not None])),
            "rho_tex": float(np.mean([v for v in rho_tex if v is not None])),
            "fit_mae": float(np.mean([np.abs(scale * m - t).mean() for m, t in zip(maps, truths)])),
            "const_mae": float(np.mean([np.abs(constant - t).mean() for t in truths])), "scale": scale}


# --- variants ----------------------------------------------------------------------------

def energy(image: np.ndarray, sigma: float) -> np.ndarray:
    """The grey image's gradient energy (central differences), Gaussian-smoothed."""
    gy, gx = np.gradient(image)
    return gaussian_filter(gx**2 + gy**2, sigma)


def confidence(image: np.ndarray, kind: str, sigma: float = 2.0) -> np.ndarray:
    """Where blur is observable in the blurry grey image: 'soft' E / (E + median E), 'soft2'
    its square, 'top30' / 'top50' / 'top70' the pixels with E in the top 30 / 50 / 70 %."""
    e = energy(image, sigma)
    if kind == "soft":
        return e / (e + np.median(e))
    if kind == "soft2":
        return (e / (e + np.median(e))) ** 2
    q = {"top50": 50, "top30": 70, "top70": 30}[kind]
    return (e >= np.percentile(e, q)).astype(np.float64)


def fill(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, conf: np.ndarray | None) -> np.ndarray:
    """The (weighted) guided filter, pixels no confident window reaches taken from a 4x wider
    pass, then from the raw map."""
    out = guided_filter(guide, src, radius, eps, confidence=conf)
    if conf is not None and np.isnan(out).any():
        wide = guided_filter(guide, src, 4 * radius, eps, confidence=conf)
        out = np.where(np.isnan(out), wide, out)
    return np.where(np.isnan(out), src, np.maximum(out, 0.0))


def guide_of(rec: Record, which: str) -> np.ndarray:
    return rec["grey"] if which == "blurry" else grey(rec["out"] / 255.0)


def variants() -> dict[str, Variant]:
    """name -> map: 'gf' the plain guided filter (radius r, eps e; guide: the blurry grey, or
    the deblurred output's with 'out'), 'wgf KIND' the confidence-weighted one, 'fuse' with
    the classical map, 'refine_map' the shipped module."""
    v: dict[str, Variant] = {"raw": lambda r: r["net"], "classical": lambda r: r["classical"]}
    for radius in (4, 8, 16, 32):
        for eps in (1e-4, 1e-3, 1e-2):
            v[f"gf r{radius} e{eps:g}"] = lambda r, a=radius, e=eps: fill(r["grey"], r["net"], a, e, None)
    for g in ("out",):
        for radius in (8, 16):
            v[f"gf {g} r{radius} e1e-3"] = lambda r, a=radius, g=g: fill(guide_of(r, g), r["net"], a, 1e-3, None)
    for kind in ("soft", "soft2", "top50", "top30", "top70"):
        for radius in (8, 16, 32):
            for eps in (1e-3, 1e-2):
                v[f"wgf {kind} r{radius} e{eps:g}"] = (
                    lambda r, k=kind, a=radius, e=eps: fill(r["grey"], r["net"], a, e, confidence(r["grey"], k)))
    v["gaussian 8"] = lambda r: gaussian_filter(r["net"], 8.0)  # no guide at all
    for radius in (8, 16):
        v[f"wgf soft2-out r{radius} e0.01"] = (
            lambda r, a=radius: fill(r["grey"], r["net"], a, 1e-2, confidence(guide_of(r, "out"), "soft2")))
    for w in (0.1, 0.25, 0.5, 1.0):
        v[f"fuse add w{w:g}"] = lambda r, w=w: r["net"] + w * r["classical"]
        v[f"fuse add w{w:g} +wgf"] = lambda r, w=w: refined(r, r["net"] + w * r["classical"])
    for k in (1.0, 1.2, 1.5):
        v[f"fuse max k{k:g}"] = lambda r, k=k: np.maximum(r["net"], r["classical"] / k)
        v[f"fuse max k{k:g} +wgf"] = lambda r, k=k: refined(r, np.maximum(r["net"], r["classical"] / k))
    for sub in (1, 2, 4):  # the shipped refinement, nrkdeblur/map_refine.py, at three block sizes
        v[f"refine_map s{sub}"] = lambda r, b=sub: refine_map(r["net"], r["blurry"] / np.float32(255), subsample=b).map
    return v


def refined(rec: Record, src: np.ndarray, radius: int = 8, eps: float = 1e-2) -> np.ndarray:
    """The confidence-weighted guided filter of src ('wgf soft2')."""
    return fill(rec["grey"], src, radius, eps, confidence(rec["grey"], "soft2"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    c = sub.add_parser("cache")
    c.add_argument("cache", type=Path)
    c.add_argument("sets", type=Path, nargs="+")
    s = sub.add_parser("score")
    s.add_argument("cache", type=Path)
    s.add_argument("--only", nargs="*", help="variant names or patterns (default: all)")
    s.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.step == "cache":
        return cache(args.cache, args.sets)
    sets = load(args.cache)
    records = []
    for name, fn in variants().items():
        if args.only and not any(fnmatch(name, pattern) for pattern in args.only):
            continue
        t = time.perf_counter()
        row = {"variant": name, **{s: score_set(recs, fn) for s, recs in sets.items()}}
        seconds = (time.perf_counter() - t) / sum(len(r) for r in sets.values())
        print(f"{name:28} " + "  ".join(f"{SHORT.get(s, s)} {row[s]['rho']:.3f} {row[s]['rho_tex']:.3f} "
                                        f"{row[s]['fit_mae']:.2f}/{row[s]['const_mae']:.2f}" for s in sets)
              + f"  {seconds:.2f} s/img", flush=True)
        records.append(row)
    if args.json is not None:
        args.json.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
