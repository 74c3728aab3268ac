"""`nrkdeblur train`: a recipe (file or defaults), overridden by options named after its
settings, run in a folder it can resume from. The options are made from the recipe's
fields (recipe.py), so a new setting needs no change here."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..recipe import Recipe
from ..settings import leaf_fields
from .group import main
from .common import command, console, device_option, resolve_device


def recipe_options(f):
    """One option per setting of a Recipe, `--name-with-dashes`, unset (None) by default."""
    for name, (path, kind, field) in reversed(leaf_fields(Recipe).items()):
        flag = "--" + name.replace("_", "-")
        help_text = field.metadata.get("help") or f"renderer setting (data/defocus.py, RenderSettings.{name})"
        section = f"[{path[0]}] " if path else ""
        args = typing.get_args(kind)
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(a for a in args if a is not type(None))
            args = typing.get_args(kind)
        if kind is bool:
            f = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=section + help_text)(f)
        elif typing.get_origin(kind) is tuple and (len(args) == 2 and args[1] is Ellipsis):
            f = click.option(flag, name, multiple=True, type=args[0], help=section + help_text + " (repeatable)")(f)
        elif typing.get_origin(kind) is tuple:
            f = click.option(flag, name, nargs=len(args), type=tuple(args), default=None, help=section + help_text)(f)
        else:
            f = click.option(flag, name, type=kind, default=None, help=section + help_text)(f)
    return f


@command(main)
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for checkpoints, weights and the validation curve. Re-running with the same folder resumes.")
@click.option("--recipe", "recipe_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A recipe file (.toml, e.g. recipes/*.toml) or a run's run.json; options below override it.")
@click.option("--workers", type=click.IntRange(0), default=1, show_default=True, help="Data-rendering worker processes.")
@click.option("--stop-after", type=click.IntRange(1), help="Stop after this many steps in all (resume later).")
@click.option("--time-limit", type=click.FloatRange(0, min_open=True),
              help="Stop cleanly after this many minutes: validate, checkpoint and write the weights (resume later).")
@device_option()
@recipe_options
def train(run_dir: Path, recipe_file: Path | None, workers: int, stop_after, time_limit, device, **settings) -> None:
    """Train NRKNet; resumes exactly from RUN_DIR's checkpoint.

    Every setting of a run is a field of its recipe (nrkdeblur/recipe.py), set by a recipe
    file (--recipe) and overridden by the option of the same name. Data: synthetic defocus
    rendered on the fly from sharp photos (--photos), or real pairs (--dpdd, --lfdof,
    --pairs). The recipe is saved in RUN_DIR/run.json; re-running with only --run-dir
    resumes with it. --steps may be given again to lengthen or shorten the run: the
    learning-rate drops move with it. Under `torchrun --nproc_per_node N` it trains
    data-parallel (gloo on CPU, nccl on CUDA).

    \b
    Examples:
      nrkdeblur train --recipe recipes/1-from-scratch.toml --run-dir runs/1
      nrkdeblur train --run-dir runs/1                         # resume
      nrkdeblur train --run-dir runs/cpu --photos photos/ --val val/ --steps 40000 --p-high-iso 0.3
      torchrun --nproc_per_node 4 -m nrkdeblur train --recipe my.toml --run-dir runs/paper --device cuda
    """
    from .. import train as training
    from ..recipe import load_recipe, plan_run
    from ..settings import override

    given = {k: v for k, v in settings.items() if v is not None and v != ()}
    asked = override(load_recipe(recipe_file) if recipe_file else Recipe(), **given)
    named = set(settings) if recipe_file else set(given)
    done = training.checkpoint_step(run_dir)
    config, recipe, message = plan_run(run_dir, asked, named, done, write=training.is_rank0())
    dev = training.init_distributed(resolve_device(device))
    if message and training.is_rank0():
        console.print(message, highlight=False)
    train_data = training.open_train_data(recipe)
    val_data = training.open_val_data(recipe.data.val) if recipe.data.val else None
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not training.is_rank0()) as bar:
        task = bar.add_task("train", total=recipe.end, completed=0, info="")

        def on_step(s: training.StepInfo) -> None:
            val = f" val {s.val_psnr:.2f} dB (input {s.val_input_psnr:.2f})" if s.val_psnr is not None else ""
            info = f"loss {s.loss:.4f} {s.seconds_per_step:.2f} s/step{val}"
            bar.update(task, completed=s.step, info=info)
            if not console.is_terminal and (s.step % 50 == 0 or s.step == s.steps):  # logs: a line now and then
                console.print(f"step {s.step}/{s.steps} {info}", highlight=False)

        result = training.train(config, recipe, train_data, val_data, run_dir, dev, stop_after, on_step,
                                time_limit=time_limit and time_limit * 60, workers=workers)
    if training.is_rank0():
        console.print(f"stopped at step {result.step}/{recipe.end}; weights: {run_dir / 'last.safetensors'}")
