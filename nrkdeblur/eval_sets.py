"""What `nrkdeblur eval` runs on: evaluation sets found on disk, and the method that
restores their blurry images (the network, a classical baseline, the identity, or
predictions already on disk). Arrays in and out; the scores are evaluate.py's."""

from __future__ import annotations

from pathlib import Path
import numpy as np

from .errors import DataError, SettingsError
from .evaluate import Restorer, to_uint8
from .imageio import list_images, read_photo

Pair = tuple[str, np.ndarray, np.ndarray, np.ndarray | None]  # name, blurry, sharp, true radius or None


def find_sets(folders: list[Path]) -> list[tuple[str, list[Pair]]]:
    """(set name, pairs) for each evaluation set: folders with blur/ and sharp/ (and radius/,
    the true radius maps `nrkdeblur render` writes), or one BLUR_DIR SHARP_DIR pair."""
    from .data import match_pairs, read_radius_map

    if all((f / "blur").is_dir() and (f / "sharp").is_dir() for f in folders):
        layout = [(f.name, f / "blur", f / "sharp", f / "radius") for f in folders]
    elif len(folders) == 2:
        blur_dir = folders[0].resolve()
        name = blur_dir.parent.name if blur_dir.name == "blur" else blur_dir.name  # PAIRS/blur: "PAIRS"
        layout = [(name, folders[0], folders[1], None)]
    else:
        raise SettingsError("give evaluation sets (folders with blur/ and sharp/) or one BLUR_DIR SHARP_DIR pair")
    sets = []
    for name, blur_dir, sharp_dir, radius_dir in layout:
        pairs = []
        for b, s in match_pairs(blur_dir, sharp_dir):
            key = b.relative_to(blur_dir).with_suffix("").as_posix()
            truth = radius_dir / f"{key}.tiff" if radius_dir is not None else None
            radius = read_radius_map(truth) if truth is not None and truth.is_file() else None
            pairs.append((key, _load(b), _load(s), radius))
        sets.append((name, pairs))
    return sets


def _load(path: Path) -> np.ndarray:
    return to_uint8(read_photo(path).pixels)


def restorer(method: str, pred_dir: Path | None = None, weights: Path | None = None, device: str = "cpu",
             linear: bool = False, strength: float = 1.0, protect: float | None = None,
             protect_keep: float = 0.0) -> Restorer:
    """The Restorer for a method: "nrknet" (tiled as for deblurring, with its defocus map,
    strength, protect and protect_keep as for deblurring),
    "unsharp", "richardson-lucy", "identity", or the predictions in pred_dir."""
    if pred_dir is not None:
        return _from_folder(pred_dir)
    if method == "identity":
        return lambda name, blurry: (blurry, None)
    if method in ("unsharp", "richardson-lucy"):
        from . import baselines
        from .srgb import linear_to_srgb, srgb_to_linear

        fn = baselines.unsharp if method == "unsharp" else baselines.richardson_lucy
        if linear:
            return lambda name, blurry: (to_uint8(srgb_to_linear(fn(linear_to_srgb(blurry.astype(np.float32) / 255)))), None)
        return lambda name, blurry: (to_uint8(fn(blurry.astype(np.float32) / 255)), None)
    if method != "nrknet":
        raise SettingsError(f"unknown method {method!r}")
    from .inference import InferenceOptions, deblur, resolve_device
    from .pipeline import open_default_weights

    model = open_default_weights(weights, resolve_device(device))
    options = InferenceOptions(linear=linear, strength=strength, protect=protect, protect_keep=protect_keep,
                               backend="torch")  # tiles as for deblurring

    def restore(name, blurry):
        out = deblur(model, blurry.astype(np.float32) / 255, options, defocus_map=True)
        return to_uint8(out.image), out.defocus_map

    return restore


def _from_folder(pred_dir: Path) -> Restorer:
    preds = {p.relative_to(pred_dir).with_suffix("").as_posix(): p for p in list_images(pred_dir, recursive=True)}

    def from_folder(name, blurry):
        if name not in preds:
            raise DataError(f"{pred_dir}: no prediction named {name}.*")
        return _load(preds[name]), None

    return from_folder
