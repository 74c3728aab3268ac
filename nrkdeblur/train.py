"""Training loop: Adam with the paper's step schedule, exact resume, safetensors export.

Data are streams indexed by sample number: sample i of the run is `dataset[i]`, a pure
function of (seed, i) (see data/datasets.py). Step s of a run with global batch B on W
processes reads samples s*B .. s*B+B-1, rank r taking its B/W share. So the "data
position" of a checkpoint is just its step, and a resumed run reads exactly the samples an
uninterrupted one would. Together with the saved model, optimiser and RNG states, stopping
and resuming gives the same weights as running straight through.

Runs unchanged on CPU or CUDA, and data-parallel under `torchrun` (DistributedDataParallel,
gloo on CPU, nccl on CUDA). Progress is reported through a callback; this module prints
nothing.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import pickle
import random
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from .config import NRKConfig
from .data import PairFolder, SyntheticDefocus, dpdd, lfdof, sharp_photos
from .errors import DataError, SettingsError
from .atomic import atomic_write
from .losses import nrk_loss, psnr
from .model import NRKNet
from .recipe import Recipe, recipe_from_data
from .settings import differences, to_dict
from .weights import load_model, save_weights
from .widen import load_widened

class StepInfo(NamedTuple):
    step: int
    steps: int
    loss: float
    seconds_per_step: float
    val_psnr: float | None  # latest validation PSNR of the output, dB
    val_input_psnr: float | None  # the same for the input, dB


class Checkpoint(NamedTuple):
    step: int
    history: list[dict]


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); returns this
    process's device (on CUDA, the GPU numbered LOCAL_RANK)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def is_rank0() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def held_out(lists: list[str]) -> set[str]:
    """File names (no folders) listed in the given hold-out files, one per line, # comments:
    the sources of the frozen evaluation sets, which training never reads."""
    names = set()
    for path in lists:
        for line in Path(path).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                names.add(Path(line).name)
    return names


def open_train_data(recipe: Recipe) -> Dataset:
    """The training stream the recipe's data section names (photos | dpdd | lfdof | pairs);
    photos named in its holdout files are left out."""
    data, seed = recipe.data, recipe.seed
    source = data.source()
    if source == "photos":
        skip = held_out(list(data.holdout))
        paths = [p for p in sharp_photos([Path(p) for p in data.photos]) if p.name not in skip]
        if not paths:
            raise DataError(f"no photos found in {', '.join(data.photos)}")
        return SyntheticDefocus(paths, crop=data.crop, seed=seed, settings=recipe.render)
    if source == "dpdd":
        return dpdd(Path(data.dpdd), "train", crop=data.crop, seed=seed, augment=True)
    if source == "lfdof":
        return lfdof(Path(data.lfdof), "train", crop=data.crop, seed=seed, augment=True)
    blur_dir, sharp_dir = data.pairs
    return PairFolder(Path(blur_dir), Path(sharp_dir), crop=data.crop, seed=seed, augment=True)


def open_val_data(folder: str | os.PathLike) -> Dataset:
    """Whole-image validation pairs from FOLDER/blur and FOLDER/sharp."""
    folder = Path(folder)
    return PairFolder(folder / "blur", folder / "sharp", crop=None, seed=0, augment=False)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def update_ema(ema: NRKNet, model: NRKNet, decay: float, step: int) -> None:
    """ema <- d * ema + (1 - d) * model, with d warming up as (1 + step) / (10 + step);
    buffers (BatchNorm statistics) are copied."""
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - d)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


class StepBatches(torch.utils.data.Sampler):
    """Index lists of this rank's share of each step's batch, from `start` to `steps`."""

    def __init__(self, start: int, steps: int, batch: int, rank: int, world: int):
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world

    def __iter__(self):
        per = self.batch // self.world
        for s in range(self.start, self.steps):
            first = s * self.batch + self.rank * per
            yield list(range(first, first + per))

    def __len__(self) -> int:
        return self.steps - self.start


def collate(items: list[dict]) -> dict:
    """Stack the tensors of a batch's items; other fields (names) become lists."""
    return {k: torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k]) else [it[k] for it in items]
            for k in items[0]}


@torch.no_grad()
def validate(model: NRKNet, val: Dataset, device: torch.device) -> tuple[float, float]:
    """Mean PSNR (dB) of output and of input over a validation set, whole images."""
    was_training = model.training
    model.eval()
    out_psnr, in_psnr = [], []
    for i in range(len(val)):
        item = val[i]
        blur, sharp = item["blur"][None].to(device), item["sharp"][None].to(device)
        out_psnr.append(psnr(model(blur).image, sharp).item())
        in_psnr.append(psnr(blur, sharp).item())
    model.train(was_training)
    return float(np.mean(out_psnr)), float(np.mean(in_psnr))


def save_checkpoint(path: Path, model: NRKNet, ema: NRKNet, opt: torch.optim.Optimizer, step: int,
                    recipe: Recipe, history: list[dict]) -> None:
    """Everything needed to resume exactly; atomic (temp file, then rename)."""
    state = {
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "rng": rng_state(),
        "config": model.config.to_json(),
        "recipe": json.dumps(to_dict(recipe)),
        "history": json.dumps(history),
    }
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict:
    """A checkpoint.pt as saved by save_checkpoint; ValueError if it cannot be read."""
    try:  # weights_only: tensors, numbers, strings and tuples only; never runs pickled code
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise DataError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0]})") from e


def checkpoint_step(run_dir: str | os.PathLike) -> int:
    """How many steps the run in run_dir has done (0 if it has no checkpoint yet)."""
    path = Path(run_dir) / "checkpoint.pt"
    return load_checkpoint(path)["step"] if path.exists() else 0


# the signals that stop a run cleanly (cli/common.py): Ctrl-C, SIGTERM and, where there is one, SIGHUP
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


def leave_signals_to_the_main_process(worker_id: int) -> None:
    """A data worker ignores Ctrl-C, SIGTERM and SIGHUP: sent to the whole process group (a
    terminal, `kill -- -PGID`, a scheduler), they would otherwise end the workers first and
    the run with a traceback instead of its own clean stop. The main process ends the workers."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done, then raise a held one through the
    handler that was in place. For work a signal must not cut in two: a data worker hands a
    batch over in several exchanges (cut, the worker prints a traceback), and torch.save
    cut mid-write raises an unrelated error or aborts the process as its writer closes.
    Outside the main thread (where handlers cannot be set) the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum))
                for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if held:
            signal.raise_signal(held[0])


class Trainee(NamedTuple):
    """What a run trains: the model, its moving average, the optimiser and where it stands."""

    model: NRKNet
    ema: NRKNet  # validated and exported (OptimSettings.ema)
    opt: torch.optim.Optimizer
    trainable: list[torch.nn.Parameter]
    step: int
    history: list[dict]


def start_or_resume(config: NRKConfig, recipe: Recipe, ckpt_path: Path, device: torch.device) -> Trainee:
    """A fresh model (from recipe.model.init when given, widened if narrower: widen.py), or
    the state of the checkpoint at ckpt_path, which must have been made by this recipe
    (except `steps`, which may change when a run resumes)."""
    seed_everything(recipe.seed)
    model = NRKNet(config).to(device)
    ema = copy.deepcopy(model).eval()
    focus_only = recipe.optim.focus_only
    if focus_only and model.focus is None:
        raise SettingsError("training the focus head alone needs a model with one (focus_width)")
    trainable = list((model.focus if focus_only else model).parameters())
    if focus_only:  # the rest builds no autograd graph
        model.requires_grad_(False)
        model.focus.requires_grad_(True)
    opt = torch.optim.Adam(trainable, lr=recipe.optim.lr)
    if not ckpt_path.exists():
        if recipe.model.init is not None:
            load_widened(model, load_model(recipe.model.init, device))
            ema.load_state_dict(model.state_dict())
        return Trainee(model, ema, opt, trainable, 0, [])
    state = load_checkpoint(ckpt_path)
    saved = recipe_from_data(json.loads(state["recipe"] if "recipe" in state else state["settings"]), str(ckpt_path))
    changed = differences(saved, recipe, ignore=("steps",))
    if NRKConfig.from_json(state["config"]) != config or changed:
        what = ", ".join(changed) if changed else "the model config"
        raise SettingsError(f"{ckpt_path} was made with other settings ({what}); use another run folder")
    if state["step"] > recipe.optim.steps:
        raise SettingsError(f"{ckpt_path} is at step {state['step']}, past the {recipe.optim.steps} steps asked for")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return Trainee(model, ema, opt, trainable, state["step"], json.loads(state["history"]))


def train_step(net: torch.nn.Module, t: Trainee, recipe: Recipe, batch: dict,
               device: torch.device) -> tuple[float, float]:
    """One optimiser step on one batch (eq. 12-14, the defocus-map term where the batch has
    the true radius); returns the loss and the map term."""
    optim, loss = recipe.optim, recipe.loss
    for g in t.opt.param_groups:
        g["lr"] = optim.lr_at(t.step)
    blur, sharp = batch["blur"].to(device), batch["sharp"].to(device)
    with_radius = loss.radius_weight > 0 and "radius" in batch
    out = net(blur, sharp, return_gamma=with_radius or loss.roughness_weight > 0)
    radius = (t.model.defocus_map(out, blur.shape[-2:], eps=1e-4), batch["radius"].to(device)) if with_radius else None
    terms = nrk_loss(out, sharp, loss.reblur_weight, loss.fft_weight, log_mse=loss.log_mse, radius=radius,
                     radius_weight=loss.radius_weight, blurry=blur, harm_weight=loss.harm_weight,
                     roughness_weight=loss.roughness_weight)
    t.opt.zero_grad(set_to_none=True)
    terms.total.backward()
    if optim.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(t.trainable, optim.grad_clip)
    t.opt.step()
    if optim.ema > 0:
        update_ema(t.ema, t.model, optim.ema, t.step)
    else:
        t.ema.load_state_dict(t.model.state_dict())
    return terms.total.item(), terms.radius.item()


def train(config: NRKConfig, recipe: Recipe, train_data: Dataset, val_data: Dataset | None,
          run_dir: str | os.PathLike, device: str | torch.device = "cpu", stop_after: int | None = None,
          on_step: Callable[[StepInfo], None] | None = None, time_limit: float | None = None,
          workers: int = 0) -> Checkpoint:
    """Train (or resume, if run_dir holds a checkpoint) up to the recipe's end (its
    `stop_at`, else its `steps`).

    stop_after: stop once this many steps are done (the schedule is unchanged), leaving a
    checkpoint to resume from. time_limit: seconds from now after which the run stops at
    the end of a step, validates, and writes its checkpoint and weights as at any stop.
    workers: DataLoader processes that render samples while the model trains (0: this one). Writes to
    run_dir: checkpoint.pt (resume state), last.safetensors and best.safetensors (the
    averaged weights with their config), history.json (validation curve).
    """
    run_dir = Path(run_dir)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if recipe.optim.batch_size % world:
        raise SettingsError(f"batch size {recipe.optim.batch_size} does not split over {world} processes")
    device = torch.device(device)
    ckpt_path = run_dir / "checkpoint.pt"
    t = start_or_resume(config, recipe, ckpt_path, device)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    net = (DistributedDataParallel(t.model, device_ids=[device.index] if device.type == "cuda" else None)
           if distributed else t.model)
    end = recipe.end if stop_after is None else min(recipe.end, stop_after)
    loader = DataLoader(train_data, batch_sampler=StepBatches(t.step, end, recipe.optim.batch_size, rank, world),
                        num_workers=workers, collate_fn=collate, persistent_workers=False,
                        worker_init_fn=leave_signals_to_the_main_process)
    best = max((h["val_psnr"] for h in t.history), default=-math.inf)
    last_val = (t.history[-1]["val_psnr"], t.history[-1]["val_input_psnr"]) if t.history else (None, None)
    t.model.train(not recipe.optim.focus_only)  # frozen: BatchNorm keeps its statistics too
    if recipe.optim.focus_only:
        t.model.focus.train()
    deadline = None if time_limit is None else time.monotonic() + time_limit
    tick = time.perf_counter()
    batches = iter(loader)
    while True:
        with signals_held():
            batch = next(batches, None)
        if batch is None:
            break
        loss, radius_mae = train_step(net, t, recipe, batch, device)
        t = t._replace(step=t.step + 1)
        seconds = time.perf_counter() - tick
        if deadline is not None and past(deadline, device, distributed):
            end = t.step  # stop here, as at the end of the run: validate, checkpoint, export
        if rank == 0:
            last_val, best = record(t, recipe, val_data, run_dir, device, loss, radius_mae, end, last_val, best)
        if on_step is not None and rank == 0:
            on_step(StepInfo(t.step, recipe.end, loss, seconds, *last_val))
        tick = time.perf_counter()  # validation and checkpoints do not count as step time
        if t.step == end:
            break
    if distributed:
        dist.barrier()
    return Checkpoint(t.step, t.history)


def record(t: Trainee, recipe: Recipe, val_data: Dataset | None, run_dir: Path, device: torch.device, loss: float,
           radius_mae: float, end: int, last_val: tuple, best: float) -> tuple[tuple, float]:
    """After a step, on the first process: validate and keep the best weights every
    val_every steps, write the checkpoint and last weights every ckpt_every steps, and both
    at the end; a signal waits until the files are written. Returns (last validation, best)."""
    if val_data is not None and (t.step % recipe.val_every == 0 or t.step == end):
        val_psnr, val_in = validate(t.ema, val_data, device)
        t.history.append({"step": t.step, "loss": loss, "radius_mae": radius_mae, "val_psnr": val_psnr,
                          "val_input_psnr": val_in, "lr": recipe.optim.lr_at(t.step - 1), "time": time.time()})
        last_val = (val_psnr, val_in)
        with signals_held():
            if val_psnr > best:
                best = val_psnr
                save_weights(t.ema, run_dir / "best.safetensors", extra={"nrkdeblur.step": str(t.step)})
            atomic_write(run_dir / "history.json", lambda f: f.write(json.dumps(t.history, indent=1).encode()))
    if t.step % recipe.ckpt_every == 0 or t.step == end:
        with signals_held():
            save_checkpoint(run_dir / "checkpoint.pt", t.model, t.ema, t.opt, t.step, recipe, t.history)
            save_weights(t.ema, run_dir / "last.safetensors", extra={"nrkdeblur.step": str(t.step)})
    return last_val, best


def past(deadline: float, device: torch.device, distributed: bool) -> bool:
    """Whether the deadline has passed; every process of a data-parallel run agrees."""
    late = torch.tensor([float(time.monotonic() >= deadline)], device=device)
    if distributed:
        dist.all_reduce(late, op=dist.ReduceOp.MAX)
    return bool(late.item())
