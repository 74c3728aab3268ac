"""Torch datasets: synthetic defocus from sharp photos, and paired folders (DPDD, LFDOF).

Every random choice of an item is drawn from `np.random.default_rng([seed, index])`,
so item i is the same in every process and after a restart: the trainer can
resume a run exactly by step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from ..imageio import IMAGE_EXTENSIONS, list_images, read_photo
from ..levels import to_levels
from .defocus import RenderSettings, render_pair

INFINITE_LENGTH = 10**9  # SyntheticDefocus is an endless stream indexed by training step


# ----------------------------------------------------------------------------
# reading images


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as HxWx3 float32 in [0, 1] (imageio.read_photo: 8 or 16 bit by the
    file's dtype, EXIF orientation applied); grey is repeated to three channels."""
    pixels = read_photo(path).pixels
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def read_uint8(path: str | Path) -> np.ndarray:
    """Read an image as HxWx3 uint8 (16-bit files are rounded to 8 bits)."""
    return to_levels(read_image(path))


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 float array to a 3xHxW float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def _flip_rotate(images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Apply the same random horizontal flip and 90-degree rotation to every image."""
    flip, turns = rng.random() < 0.5, int(rng.integers(0, 4))
    out = []
    for image in images:
        if flip:
            image = image[:, ::-1]
        out.append(np.ascontiguousarray(np.rot90(image, turns)))
    return out


# ----------------------------------------------------------------------------
# synthetic pairs


def sharp_photos(dirs: Iterable[str | Path]) -> list[Path]:
    """All image files under the given folders (recursive), sorted."""
    found = set()
    for folder in map(Path, dirs):
        if not folder.is_dir():
            raise DataError(f"photo folder {folder} does not exist")
        found.update(list_images(folder, recursive=True, raw=False))
    return sorted(found)


class SyntheticDefocus(Dataset):
    """Endless stream of synthetic defocus pairs rendered on the fly from sharp photos.

    Item i picks a photo, a random down-scale (which also sharpens the photo),
    a random (crop + 2 * margin) window, a flip and a rotation, then renders
    a pair and keeps the centre crop x crop. It is a pure function of
    (seed, i). Decoded photos are cached (uint8) on first use, per process.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        crop: int,
        seed: int,
        settings: RenderSettings = RenderSettings(),
        scale_range: tuple[float, float] = (0.5, 1.0),
    ):
        if len(paths) == 0:
            raise DataError("SyntheticDefocus needs at least one photo")
        if crop <= 0 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"bad crop {crop} or scale_range {scale_range}")
        self.paths = [Path(p) for p in paths]
        self.crop = crop
        self.seed = seed
        self.settings = settings
        self.scale_range = scale_range
        self._photos: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return INFINITE_LENGTH

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index < 0:
            raise IndexError(f"negative index {index}")
        rng = np.random.default_rng([self.seed, index])
        photo = self._photo(int(rng.integers(0, len(self.paths))))
        margin = self.settings.margin
        window = scaled_window(photo, self.crop + 2 * margin, self.scale_range, rng)
        (window,) = _flip_rotate([window], rng)
        pair = render_pair(window, rng, self.settings, border=margin)
        return {"blur": _to_tensor(pair.blurry), "sharp": _to_tensor(pair.sharp),
                "radius": torch.from_numpy(pair.kernel_rms[None])}  # (1, H, W) PSF RMS radius, px

    def _photo(self, k: int) -> np.ndarray:
        """Decoded photo k (uint8, cached)."""
        if k not in self._photos:
            self._photos[k] = read_uint8(self.paths[k])
        return self._photos[k]


def scaled_window(
    photo: np.ndarray, size: int, scale_range: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """A random size x size window of `photo` (uint8) resized by a random scale, as float32 [0, 1].

    The scale is drawn from scale_range but never so small that the window
    would not fit in the photo (photos too small for scale 1 are upscaled).
    """
    h, w = photo.shape[:2]
    low = max(scale_range[0], size / min(h, w))
    scale = rng.uniform(low, max(scale_range[1], low))
    source = size / scale  # side of the window in photo pixels
    y0, x0 = rng.uniform(0, h - source), rng.uniform(0, w - source)
    if abs(scale - 1.0) < 1e-3:  # no resampling: plain crop
        y, x = int(y0), int(x0)
        return photo[y : y + size, x : x + size].astype(np.float32) / 255.0
    top, left = int(y0), int(x0)
    bottom, right = min(h, int(np.ceil(y0 + source)) + 1), min(w, int(np.ceil(x0 + source)) + 1)
    patch = Image.fromarray(np.ascontiguousarray(photo[top:bottom, left:right]))
    box = (x0 - left, y0 - top, x0 - left + source, y0 - top + source)
    resized = patch.resize((size, size), Image.Resampling.BICUBIC, box=box)
    return np.asarray(resized, dtype=np.float32) / 255.0


def write_frozen_set(
    paths: Sequence[str | Path], out_dir: str | Path, seed: int, settings: RenderSettings = RenderSettings(),
    scale: float = 1.0,
) -> list[str]:
    """Render each photo once, whole, and write out_dir/blur/NAME.png, out_dir/sharp/NAME.png
    (8-bit) and out_dir/radius/NAME.tiff, the RMS radius (px, float32) of the PSF each pixel
    was rendered with: the truth for the defocus map (evaluate.map_scores).

    Photo i is rendered with `np.random.default_rng([seed, i])`, so the set
    is reproducible. `scale` < 1 first shrinks each photo (Pillow's reduce for whole
    factors, else Lanczos), which keeps big photos' sets small and their detail sharp.
    Returns the names written.
    """
    out_dir = Path(out_dir)
    names = [Path(p).stem for p in paths]
    if len(set(names)) != len(names):
        raise DataError("photos of a frozen set need distinct file names")
    for folder in ("blur", "sharp", "radius"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    for i, (path, name) in enumerate(zip(paths, names)):
        pair = render_pair(shrink(read_image(path), scale), np.random.default_rng([seed, i]), settings)
        for folder, image in (("blur", pair.blurry), ("sharp", pair.sharp)):
            pixels = to_levels(image)
            Image.fromarray(pixels).save(out_dir / folder / f"{name}.png")
        # rounded to 1/1024 px: a blended (position-dependent) map then deflates ~30x smaller
        write_radius_map(out_dir / "radius" / f"{name}.tiff", np.round(pair.kernel_rms * 1024) / 1024)
    return names


def shrink(image: np.ndarray, scale: float) -> np.ndarray:
    """An HxWx3 float image resized by `scale` <= 1 (box filter for 1/n, else Lanczos)."""
    if scale >= 1.0:
        return image
    pil = Image.fromarray(to_levels(image))
    factor = 1.0 / scale
    if abs(factor - round(factor)) < 1e-6:
        pil = pil.reduce(int(round(factor)))
    else:
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.Resampling.LANCZOS)
    return np.asarray(pil, dtype=np.float32) / 255.0


def write_radius_map(path: str | Path, radius: np.ndarray) -> None:
    """A float32 HxW map as a deflate-compressed one-channel TIFF."""
    Image.fromarray(np.ascontiguousarray(radius, dtype=np.float32), mode="F").save(path, compression="tiff_adobe_deflate")


def read_radius_map(path: str | Path) -> np.ndarray:
    """The float32 HxW map written by write_radius_map (or nrkdeblur's NAME_defocus.tiff)."""
    with Image.open(path) as image:
        if image.mode != "F":
            raise DataError(f"{path}: not a float32 radius map (mode {image.mode})")
        return np.asarray(image, dtype=np.float32)


# ----------------------------------------------------------------------------
# paired folders


def match_pairs(blur_dir: str | Path, sharp_dir: str | Path) -> list[tuple[Path, Path]]:
    """Pair blurry and sharp images by name, sorted by blurry path.

    sharp_dir/NAME.* is the target of blur_dir/NAME.* and also of every image
    in a sub-folder blur_dir/NAME/ (LFDOF keeps several blurry shots of one
    scene that way). Raises ValueError naming the folder when nothing is
    found or an image has no partner.
    """
    blur_dir, sharp_dir = Path(blur_dir), Path(sharp_dir)
    for folder in (blur_dir, sharp_dir):
        if not folder.is_dir():
            raise DataError(f"image folder {folder} does not exist")
    sharp = _by_stem(sharp_dir)
    blurry = sharp_photos([blur_dir])
    if not blurry or not sharp:
        empty = blur_dir if not blurry else sharp_dir
        raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {empty}")
    pairs, orphans = [], []
    for path in blurry:
        relative = path.relative_to(blur_dir)
        key = relative.stem if len(relative.parts) == 1 else relative.parts[0]
        if key in sharp:
            pairs.append((path, sharp[key]))
        else:
            orphans.append(str(relative))
    if orphans:
        raise DataError(f"{len(orphans)} image(s) in {blur_dir} have no partner in {sharp_dir}: {orphans[:5]}")
    unused = sorted(set(sharp) - {s.stem for _, s in pairs})
    if unused:
        raise DataError(f"{len(unused)} image(s) in {sharp_dir} have no partner in {blur_dir}: {unused[:5]}")
    return pairs


def _by_stem(folder: Path) -> dict[str, Path]:
    """Image files directly in `folder`, keyed by file name without suffix."""
    found: dict[str, Path] = {}
    for path in list_images(folder, raw=False):
        if path.stem in found:
            raise DataError(f"{folder} has two images named {path.stem}: {found[path.stem].name}, {path.name}")
        found[path.stem] = path
    return found


class PairFolder(Dataset):
    """Aligned (blurry, sharp) pairs from two folders, matched by name (see `match_pairs`).

    Items are {"blur", "sharp"}: 3xHxW float32 tensors in [0, 1], and "name":
    the blurry file's path relative to blur_dir, without suffix. With `crop`,
    both images are cut to crop x crop: at a random place when `augment`
    (plus the same random flip and rotation), else at the centre. crop=None
    keeps the whole image. Item i is a pure function of (seed, i). With `augment`, any
    i >= 0 is valid: the trainer reads an endless stream, pair i % N of epoch i // N
    taken in an order shuffled per epoch.
    """

    def __init__(self, blur_dir: str | Path, sharp_dir: str | Path, crop: int | None, seed: int, augment: bool):
        self.blur_dir = Path(blur_dir)
        self.pairs = match_pairs(blur_dir, sharp_dir)
        self.crop = crop
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        n = len(self.pairs)
        stream_index = index  # fresh crops, flips and rotations every epoch
        if self.augment:
            epoch, index = divmod(index, n)
            index = int(np.random.default_rng([self.seed, epoch, n]).permutation(n)[index])
        blur_path, sharp_path = self.pairs[index]
        blur, sharp = read_image(blur_path), read_image(sharp_path)
        if blur.shape != sharp.shape:
            raise DataError(f"size mismatch: {blur_path} {blur.shape[:2]} vs {sharp_path} {sharp.shape[:2]}")
        rng = np.random.default_rng([self.seed, stream_index])
        if self.crop is not None:
            blur, sharp = self._cut(blur, sharp, rng, blur_path)
        if self.augment:
            blur, sharp = _flip_rotate([blur, sharp], rng)
        name = blur_path.relative_to(self.blur_dir).with_suffix("").as_posix()
        return {"blur": _to_tensor(blur), "sharp": _to_tensor(sharp), "name": name}

    def _cut(
        self, blur: np.ndarray, sharp: np.ndarray, rng: np.random.Generator, path: Path
    ) -> tuple[np.ndarray, np.ndarray]:
        """Same crop x crop window of both images (random if augmenting, else centred)."""
        h, w = blur.shape[:2]
        c = self.crop
        if h < c or w < c:
            raise DataError(f"{path} is {h}x{w}, smaller than the crop {c}")
        if self.augment:
            y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        else:
            y, x = (h - c) // 2, (w - c) // 2
        return blur[y : y + c, x : x + c], sharp[y : y + c, x : x + c]


def dpdd(root: str | Path, split: str, crop: int | None = None, seed: int = 0, augment: bool = False) -> PairFolder:
    """DPDD canon set (Abuolaim & Brown 2020): root/{train_c,val_c,test_c}/{source,target}."""
    folders = {"train": "train_c", "val": "val_c", "test": "test_c"}
    if split not in folders:
        raise ValueError(f"DPDD split must be one of {sorted(folders)}, got {split!r}")
    base = Path(root) / folders[split]
    return PairFolder(base / "source", base / "target", crop, seed, augment)


def lfdof(root: str | Path, split: str, crop: int | None = None, seed: int = 0, augment: bool = False) -> PairFolder:
    """LFDOF (Ruan et al. 2021): root/{train_data,test_data}/input/NAME/NAME_apK_NN.png,
    target root/{train_data,test_data}/ground_truth/NAME.png (up to 15 blurry shots per target).

    `root` may also be the folder that holds LFDOF/.
    """
    folders = {"train": "train_data", "test": "test_data"}
    if split not in folders:
        raise ValueError(f"LFDOF split must be one of {sorted(folders)}, got {split!r}")
    root = Path(root)
    if not (root / folders[split]).is_dir() and (root / "LFDOF").is_dir():
        root = root / "LFDOF"
    base = root / folders[split]
    return PairFolder(base / "input", base / "ground_truth", crop, seed, augment)
