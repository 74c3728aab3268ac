"""A training recipe: every setting of a run, each declared once, and the run folder's record.

A recipe is a `Recipe`: sections for the model, the data, the optimiser, the loss (eq.
12-14) and the synthetic-defocus renderer (data/defocus.py RenderSettings), plus the
run's seed and cadence. Field names are unique across sections, so `nrkdeblur train`
overrides any of them by its own name (`--lr 5e-5`, `--p-high-iso 0.3`), and a recipe file
(TOML, `train --recipe FILE`) sets them by the same names under the section's header.
`load_recipe` and `save_recipe` are the one pair of functions that read and write them;
every run folder holds its recipe as run.json, and the checkpoint holds it too, so a
resumed run cannot drift.

The shipped weights' lineage is a list of recipe files in recipes/, each starting from the
one before (`model.init`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .config import NRKConfig, preset
from .data import RenderSettings
from .errors import DataError, SettingsError
from .settings import differences, flatten, from_dict, leaf_fields, override, to_dict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover  (Python 3.10: the same parser, as a package)
    import tomli as tomllib


def knob(default, help: str):
    """A setting's default and the one line that explains it (shown by `train --help`)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("settings are immutable: use a tuple")
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ModelSettings:
    preset: str = knob("cpu", "model size: 'cpu' (the shipped default) or 'paper' (6.1 M parameters, for a GPU)")
    width: int | None = knob(None, "override the preset's U-Net width")
    atoms: int | None = knob(None, "override the preset's number of atoms J")
    focus_width: int | None = knob(None, "add a focus head of this many channels: it measures the blur (the defocus "
                                         "map) and holds the change back where it would harm; with init it starts "
                                         "at zero effect")
    init: str | None = knob(None, "start from these weights (.safetensors) instead of a fresh model; with a larger "
                                  "width the new channels start at zero effect")

    def config(self) -> NRKConfig:
        base = preset(self.preset)
        return dataclasses.replace(base, width=self.width or base.width, num_atoms=self.atoms or base.num_atoms,
                                   focus_width=self.focus_width or base.focus_width)


@dataclass(frozen=True)
class DataSettings:
    photos: tuple[str, ...] = knob((), "folders of sharp photos to render synthetic defocus from")
    holdout: tuple[str, ...] = knob((), "files listing photo names that training must not read: the sources of "
                                        "frozen evaluation sets (benchmarks/*/sources.txt)")
    dpdd: str | None = knob(None, "DPDD root (train_c/, val_c/, test_c/ with source/ and target/)")
    lfdof: str | None = knob(None, "LFDOF root")
    pairs: tuple[str, str] | None = knob(None, "BLUR_DIR SHARP_DIR: folders of pairs matched by file name")
    val: str | None = knob(None, "validation pairs: a folder with blur/ and sharp/ (made by `nrkdeblur render`)")
    crop: int = knob(128, "side of the square training crops, px (a multiple of 16)")

    def source(self) -> str:
        chosen = [k for k in ("photos", "dpdd", "lfdof", "pairs") if getattr(self, k)]
        if len(chosen) != 1:
            raise SettingsError("give exactly one training source: photos (repeatable), dpdd, lfdof or pairs")
        return chosen[0]


@dataclass(frozen=True)
class OptimSettings:
    steps: int = knob(100_000, "total optimiser steps; the learning-rate schedule is laid out over them, and may "
                               "change when a run resumes")
    batch_size: int = knob(8, "global batch, split evenly over data-parallel processes")
    lr: float = knob(1e-4, "Adam's base learning rate (paper: 1e-4)")
    milestones: tuple[float, float, float] = knob((0.4, 0.6, 0.8), "fractions of steps where the rate drops to 0.5x, "
                                                  "0.25x, 0.1x: the authors' schedule (epochs 2000/3000/4000 of 5000)")
    lr_drop_steps: tuple[int, ...] | None = knob(None, "the steps where the rate drops to 0.5x, 0.25x, 0.1x, "
                                                       "instead of the milestones")
    stop_at: int | None = knob(None, "end the run at this step although its schedule runs to steps")
    grad_clip: float | None = knob(1.0, "largest gradient norm (None: no clipping)")
    ema: float = knob(0.999, "decay of the moving average of the weights that is validated and exported (0: none); "
                             "single weights of small CPU batches jump by +-0.3 dB between checkpoints")
    focus_only: bool = knob(False, "train the focus head alone; the rest of the network stays as it is and builds "
                                   "no autograd graph")

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr < 0:
            raise SettingsError("steps and batch_size must be at least 1, and lr not below 0")
        if self.stop_at is not None and not 1 <= self.stop_at <= self.steps:
            raise SettingsError(f"stop_at must be between 1 and steps ({self.steps}), not {self.stop_at}")
        if self.lr_drop_steps is not None and len(self.lr_drop_steps) > 3:
            raise SettingsError("lr_drop_steps: at most three drops (to 0.5x, 0.25x, 0.1x)")

    def lr_at(self, step: int) -> float:
        """The learning rate of step `step` (0-based)."""
        drops = self.lr_drop_steps if self.lr_drop_steps is not None else [m * self.steps for m in self.milestones]
        factor = 1.0
        for at, f in zip(drops, (0.5, 0.25, 0.1)):
            if step >= at:
                factor = f
        return self.lr * factor


@dataclass(frozen=True)
class LossSettings:
    reblur_weight: float = knob(0.1, "alpha: weight of the reblurring term (eq. 14)")
    fft_weight: float = knob(0.1, "beta: weight of the FFT-L1 term (eq. 13)")
    log_mse: bool = knob(False, "squared errors as minus each image's PSNR (ours) instead of plain MSE (paper)")
    radius_weight: float = knob(0.0, "weight of the defocus-map term: mean absolute error (px) of the map against "
                                     "the true blur; synthetic data only")
    harm_weight: float = knob(0.0, "weight of the harm term: mean local dB by which the output is worse than "
                                   "the input, 0 where it is better (losses.local_harm)")
    roughness_weight: float = knob(0.0, "weight of the roughness term: steps of the coefficient maps between "
                                        "neighbours where the target is smooth (losses.coefficient_roughness)")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what a run learns. Execution details that do not (data
    workers, device, when to pause) are arguments of `train`, not part of the recipe."""

    model: ModelSettings = ModelSettings()
    data: DataSettings = DataSettings()
    optim: OptimSettings = OptimSettings()
    loss: LossSettings = LossSettings()
    render: RenderSettings = RenderSettings()
    seed: int = knob(0, "seeds the model's initialisation, the data stream and every random generator")
    val_every: int = knob(500, "validate (and keep the best weights) every this many steps")
    ckpt_every: int = knob(100, "write the checkpoint and last weights every this many steps")

    @property
    def end(self) -> int:
        return self.optim.stop_at or self.optim.steps


# run.json files written before recipes had sections: their flat keys, renamed where the
# recipe's name differs. Only read, never written.
_FLAT_NAMES = {"alpha": "reblur_weight", "beta": "fft_weight", "soft_source": "p_soft_source",
               "highlights": "p_highlights", "high_iso": "p_high_iso"}
_FLAT_DROPPED = ("workers",)


def recipe_from_data(data: dict, where: str) -> Recipe:
    """A Recipe from plain data: sectioned (this version) or flat (older run folders)."""
    if not isinstance(data, dict):
        raise SettingsError(f"{where}: not a recipe (a table of settings)")
    if any(isinstance(v, dict) for v in data.values()):
        return from_dict(Recipe, data, where)
    return _from_flat({_FLAT_NAMES.get(k, k): v for k, v in data.items() if k not in _FLAT_DROPPED}, where)


def _from_flat(flat: dict, where: str) -> Recipe:
    """A Recipe from settings named alone, each put into its section."""
    sectioned: dict = {}
    index = leaf_fields(Recipe)
    for name, value in flat.items():
        if name not in index:
            raise SettingsError(f"{where}: unknown setting {name}")
        path = index[name][0]
        node = sectioned
        for part in path:
            node = node.setdefault(part, {})
        node[name] = value
    return from_dict(Recipe, sectioned, where)


def load_recipe(path: str | os.PathLike) -> Recipe:
    """A recipe file (.toml) or a run's record (.json). SettingsError if it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the recipe ({str(e).splitlines()[0]})") from None
    return recipe_from_data(data, str(path))


def save_recipe(path: str | os.PathLike, recipe: Recipe) -> None:
    """Write a recipe as JSON (a run folder's run.json), atomically."""
    from .atomic import atomic_write

    atomic_write(Path(path), lambda f: f.write(json.dumps(to_dict(recipe), indent=1).encode() + b"\n"))


class RunPlan(NamedTuple):
    config: NRKConfig
    recipe: Recipe
    message: str | None  # what a changed `steps` does to the learning rate, to tell the user


def plan_run(run_dir: Path, asked: Recipe, given: set[str], done: int = 0, write: bool = True) -> RunPlan:
    """The run to do in run_dir, and write its run.json.

    asked: the recipe the user asked for; given: the names of the settings the user set
    (on the command line or in a recipe file). A new run stores `asked`. A run folder that
    has a run.json resumes with its recipe; a given setting that disagrees with it is a
    SettingsError, except `steps`, which reschedules the run (the message says how).
    done: the steps the run has done (its checkpoint's). write: False on the processes of
    a data-parallel run other than the first.
    """
    run_file = run_dir / "run.json"
    saved = load_recipe(run_file) if run_file.exists() else None
    recipe, message = asked, None
    if saved is not None:
        recipe = override(saved, **{k: v for k, v in flatten(asked).items() if k in given})
        changed = differences(saved, recipe, ignore=("steps",))
        if changed:
            k = changed[0]
            raise SettingsError(f"{run_dir} was started with {k}={flatten(saved)[k]!r}; use another --run-dir to change it")
        if recipe.optim.steps != saved.optim.steps:
            if done > recipe.optim.steps:
                raise SettingsError(f"{run_dir} is at step {done}, past the {recipe.optim.steps} steps asked for")
            message = (f"{run_file}: steps {saved.optim.steps} -> {recipe.optim.steps}; learning rate at step {done}: "
                       f"{saved.optim.lr_at(done):.3g} -> {recipe.optim.lr_at(done):.3g}")
    if recipe.optim.focus_only and not recipe.model.focus_width:
        raise SettingsError("focus_only (--focus-only) trains the focus head: give it one with focus_width (--focus-width)")
    recipe.data.source()
    if write and (saved is None or message is not None):
        run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(run_file, recipe)
    return RunPlan(recipe.model.config(), recipe, message)
