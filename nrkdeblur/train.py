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
import dataclasses
import json
import math
import os
import pickle
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from .config import NRKConfig
from .imageio import atomic_write
from .config import preset
from .data import PairFolder, RenderSettings, SyntheticDefocus, dpdd, lfdof, sharp_photos
from .losses import nrk_loss, psnr
from .model import NRKNet
from .weights import load_model, save_weights
from .widen import load_widened

RESUMABLE = ("steps", "workers")  # settings that may change when a run resumes


@dataclass(frozen=True)
class TrainSettings:
    """How to train. Stored in every checkpoint, so a resumed run cannot drift.

    Args:
        steps: total optimiser steps; the learning-rate schedule is laid out over them.
            `steps` and `workers` may change when a run resumes (RESUMABLE): a new
            `steps` moves every drop of the schedule, so the rate may go down or, for a
            longer run, back up.
        batch_size: global batch, split evenly over data-parallel processes.
        crop: side of the square training crops, in pixels (a multiple of 16).
        lr: Adam's base learning rate (paper: 1e-4).
        milestones: fractions of `steps` where the rate drops to 0.5x, 0.25x, 0.1x: the
            shape of the authors' schedule (epochs 2000/3000/4000 of 5000).
        alpha, beta: weights of the reblurring and FFT terms (eq. 14, 13).
        log_mse: squared errors as minus each image's PSNR (losses.py; ours, not the paper's).
        seed: seeds model init, data stream and every RNG.
        val_every, ckpt_every: in steps.
        workers: DataLoader worker processes that render samples while the model trains.
        grad_clip: max gradient norm (None: no clipping).
        ema: decay of the exponential moving average of the weights that is validated
            and exported (0: none). Small CPU batches make single weights noisy: the
            validation PSNR of raw weights jumped by +-0.3 dB between checkpoints.
        radius_weight: weight of the defocus-map term (losses.py, px of mean absolute
            error), which ties the coefficients to the true blur. Synthetic data only.
        soft_source: share of synthetic samples whose sharp target has a softened
            background, as photos with a natural shallow depth of field have
            (data/defocus.py, RenderSettings.p_soft_source).
        radius_power: the renderer's radius_power; lower draws strong blur more often.
        highlights: share of synthetic samples whose highlights are brighter than white
            before the blur and clip after it, as real bokeh does
            (data/defocus.py, RenderSettings.p_highlights).
        high_iso: share of synthetic samples with a high-ISO phone's noise and a strong JPEG
            (data/defocus.py, RenderSettings.p_high_iso).
        focus_only: train the focus head alone (model.FocusHead) and keep the rest of the
            network as it is: only the head's parameters learn, and the frozen part builds
            no autograd graph, so a step costs little more than a forward pass.
    """

    steps: int = 100_000
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-4
    milestones: tuple[float, float, float] = (0.4, 0.6, 0.8)
    alpha: float = 0.1
    beta: float = 0.1
    seed: int = 0
    val_every: int = 500
    ckpt_every: int = 100
    workers: int = 1
    grad_clip: float | None = 1.0
    ema: float = 0.999
    log_mse: bool = False
    radius_weight: float = 0.0
    soft_source: float = 0.0
    radius_power: float = RenderSettings.radius_power
    highlights: float = 0.0
    high_iso: float = 0.0
    focus_only: bool = False

    def render_settings(self) -> RenderSettings:
        return RenderSettings(p_soft_source=self.soft_source, radius_power=self.radius_power,
                              p_highlights=self.highlights, p_high_iso=self.high_iso)

    def lr_at(self, step: int) -> float:
        frac = step / self.steps
        factor = 1.0
        for m, f in zip(self.milestones, (0.5, 0.25, 0.1)):
            if frac >= m:
                factor = f
        return self.lr * factor


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


def open_train_data(args: dict, settings: TrainSettings) -> Dataset:
    """The training stream named by a run's data arguments (photos | dpdd | lfdof | pairs);
    photos named in args["holdout"] files are left out."""
    chosen = [k for k in ("photos", "dpdd", "lfdof", "pairs") if args.get(k)]
    if len(chosen) != 1:
        raise ValueError("give exactly one training source: --photos (repeatable), --dpdd, --lfdof or --pairs")
    seed, crop = settings.seed, settings.crop
    if args.get("photos"):
        skip = held_out(args.get("holdout") or [])
        paths = [p for p in sharp_photos([Path(p) for p in args["photos"]]) if p.name not in skip]
        if not paths:
            raise ValueError(f"no photos found in {', '.join(args['photos'])}")
        return SyntheticDefocus(paths, crop=crop, seed=seed, settings=settings.render_settings())
    if args.get("dpdd"):
        return dpdd(Path(args["dpdd"]), "train", crop=crop, seed=seed, augment=True)
    if args.get("lfdof"):
        return lfdof(Path(args["lfdof"]), "train", crop=crop, seed=seed, augment=True)
    blur_dir, sharp_dir = args["pairs"]
    return PairFolder(Path(blur_dir), Path(sharp_dir), crop=crop, seed=seed, augment=True)


def open_val_data(folder: str | os.PathLike) -> Dataset:
    """Whole-image validation pairs from FOLDER/blur and FOLDER/sharp."""
    folder = Path(folder)
    return PairFolder(folder / "blur", folder / "sharp", crop=None, seed=0, augment=False)


class RunSettingsError(ValueError):
    """The settings asked for disagree with each other or with the run folder's (a usage
    error, not a broken file)."""


class RunPlan(NamedTuple):
    config: NRKConfig
    settings: TrainSettings
    args: dict  # the run's data and settings arguments, as stored in run.json
    message: str | None  # what a changed --steps does to the learning rate, to tell the user


def plan_run(run_dir: Path, args: dict, explicit: set[str], workers: int) -> RunPlan:
    """The run to do in run_dir, from the command's arguments, and write its run.json.

    args: every setting by run.json key (preset, width, atoms, init, photos, holdout,
    dpdd, lfdof, pairs, val, steps, batch_size, crop, lr, seed, alpha, beta, log_mse,
    radius_weight, soft_source, radius_power, highlights, high_iso, focus_width, focus_only,
    val_every, ckpt_every); explicit: the keys the user gave. A new run stores args in
    RUN_DIR/run.json. A run that has one resumes with the saved settings; an explicit
    setting that disagrees with them is a ValueError, except `steps`, which reschedules the
    run (the message says how).
    """
    run_file = run_dir / "run.json"
    saved = None
    if run_file.exists():
        try:
            saved = json.loads(run_file.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{run_file}: cannot read the run's settings ({e})") from None
        for key in explicit - {"steps"}:
            if key in saved and saved[key] != args[key]:
                raise RunSettingsError(f"{run_dir} was started with {key}={saved[key]!r}; use another --run-dir to change it")
        args = {**args, **saved, "steps": args["steps"] if "steps" in explicit else saved["steps"]}
    config = preset(args["preset"])
    config = dataclasses.replace(config, width=args["width"] or config.width, num_atoms=args["atoms"] or config.num_atoms,
                                 focus_width=args.get("focus_width") or config.focus_width)
    defaults = TrainSettings()
    settings = TrainSettings(
        steps=args["steps"], batch_size=args["batch_size"], crop=args["crop"], lr=args["lr"], seed=args["seed"],
        alpha=args.get("alpha", 0.1), beta=args.get("beta", 0.1),  # .get: run.json files from before these
        log_mse=args.get("log_mse", False), val_every=args["val_every"], ckpt_every=args["ckpt_every"],
        workers=workers, radius_weight=args.get("radius_weight", defaults.radius_weight),
        soft_source=args.get("soft_source", defaults.soft_source),
        radius_power=args.get("radius_power", defaults.radius_power),
        highlights=args.get("highlights", defaults.highlights),
        high_iso=args.get("high_iso", defaults.high_iso),
        focus_only=args.get("focus_only", defaults.focus_only))
    if settings.focus_only and not config.focus_width:
        raise RunSettingsError("--focus-only trains the focus head: give it one with --focus-width")
    message = None
    rescheduled = saved is not None and args["steps"] != saved["steps"]
    if rescheduled:
        done = checkpoint_step(run_dir)
        refuse_past_end(done, settings.steps, run_dir)
        before = dataclasses.replace(settings, steps=saved["steps"])
        message = (f"{run_file}: steps {before.steps} -> {settings.steps}; learning rate at step {done}: "
                   f"{before.lr_at(done):.3g} -> {settings.lr_at(done):.3g}")
    if is_rank0() and (rescheduled or saved is None):
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_file, lambda f: f.write(json.dumps(args, indent=1).encode()))
    return RunPlan(config, settings, args, message)


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
                    settings: TrainSettings, history: list[dict]) -> None:
    """Everything needed to resume exactly; atomic (temp file, then rename)."""
    state = {
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "rng": rng_state(),
        "config": model.config.to_json(),
        "settings": json.dumps(dataclasses.asdict(settings)),
        "history": json.dumps(history),
    }
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict:
    """A checkpoint.pt as saved by save_checkpoint; ValueError if it cannot be read."""
    try:  # weights_only: tensors, numbers, strings and tuples only; never runs pickled code
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0]})") from e


def checkpoint_step(run_dir: str | os.PathLike) -> int:
    """How many steps the run in run_dir has done (0 if it has no checkpoint yet)."""
    path = Path(run_dir) / "checkpoint.pt"
    return load_checkpoint(path)["step"] if path.exists() else 0


def refuse_past_end(done: int, steps: int, where: Path) -> None:
    if done > steps:
        raise RunSettingsError(f"{where} is at step {done}, past the {steps} steps asked for")


def leave_signals_to_the_main_process(worker_id: int) -> None:
    """A data worker ignores Ctrl-C and SIGTERM: sent to the whole process group (a terminal,
    `kill -- -PGID`, a scheduler), they would otherwise end the workers first and the run
    with a traceback instead of its own clean stop. The main process ends the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done, then raise a held one through the
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
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if held:
            signal.raise_signal(held[0])


def train(config: NRKConfig, settings: TrainSettings, train_data: Dataset, val_data: Dataset | None,
          run_dir: str | os.PathLike, device: str | torch.device = "cpu", stop_after: int | None = None,
          on_step: Callable[[StepInfo], None] | None = None, init: str | os.PathLike | None = None,
          time_limit: float | None = None) -> Checkpoint:
    """Train (or resume, if run_dir holds a checkpoint) up to `settings.steps`.

    stop_after: stop once this many steps are done (the schedule still assumes
    settings.steps), leaving a checkpoint to resume from. time_limit: seconds from now
    after which the run stops at the end of a step, validates, and writes its checkpoint
    and weights as at any stop. init: a weights file to start
    from instead of a fresh model; it may be narrower than `config` (widen.py). A run
    that has a checkpoint resumes from it and ignores init. Writes to run_dir:
    checkpoint.pt (resume state), last.safetensors and best.safetensors (the averaged
    weights with their config), history.json (validation curve).
    """
    run_dir = Path(run_dir)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if settings.batch_size % world:
        raise ValueError(f"batch size {settings.batch_size} does not split over {world} processes")
    device = torch.device(device)
    ckpt_path = run_dir / "checkpoint.pt"

    seed_everything(settings.seed)
    model = NRKNet(config).to(device)
    ema = copy.deepcopy(model).eval()  # validated and exported (settings.ema)
    if settings.focus_only and model.focus is None:
        raise ValueError("training the focus head alone needs a model with one (--focus-width)")
    trainable = list((model.focus if settings.focus_only else model).parameters())
    if settings.focus_only:  # the rest builds no autograd graph
        model.requires_grad_(False)
        model.focus.requires_grad_(True)
    opt = torch.optim.Adam(trainable, lr=settings.lr)
    step, history = 0, []
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        saved_config, saved_settings = NRKConfig.from_json(state["config"]), json.loads(state["settings"])
        mine = json.loads(json.dumps(dataclasses.asdict(settings)))  # tuples as lists, like the saved ones
        defaults = json.loads(json.dumps(dataclasses.asdict(TrainSettings())))  # fields newer than the run
        changed = [k for k in mine if k not in RESUMABLE and saved_settings.get(k, defaults[k]) != mine[k]]
        if saved_config != config or changed:
            what = ", ".join(changed) if changed else "the model config"
            raise ValueError(f"{ckpt_path} was made with other settings ({what}); use another run folder")
        refuse_past_end(state["step"], settings.steps, ckpt_path)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step, history = state["step"], json.loads(state["history"])
        set_rng_state(state["rng"])
    elif init is not None:
        load_widened(model, load_model(init))
        ema.load_state_dict(model.state_dict())
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    if distributed:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        net = model

    end = settings.steps if stop_after is None else min(settings.steps, stop_after)
    loader = DataLoader(train_data, batch_sampler=StepBatches(step, end, settings.batch_size, rank, world),
                        num_workers=settings.workers, collate_fn=collate, persistent_workers=False,
                        worker_init_fn=leave_signals_to_the_main_process)
    best = max((h["val_psnr"] for h in history), default=-math.inf)
    last_val = (history[-1]["val_psnr"], history[-1]["val_input_psnr"]) if history else (None, None)
    model.train(not settings.focus_only)  # frozen: BatchNorm keeps its statistics too
    if settings.focus_only:
        model.focus.train()
    deadline = None if time_limit is None else time.monotonic() + time_limit
    tick = time.perf_counter()
    batches = iter(loader)
    while True:
        with signals_held():
            batch = next(batches, None)
        if batch is None:
            break
        for g in opt.param_groups:
            g["lr"] = settings.lr_at(step)
        blur, sharp = batch["blur"].to(device), batch["sharp"].to(device)
        with_radius = settings.radius_weight > 0 and "radius" in batch
        out = net(blur, sharp, return_gamma=with_radius)
        radius = (model.defocus_map(out, blur.shape[-2:], eps=1e-4), batch["radius"].to(device)) if with_radius else None
        terms = nrk_loss(out, sharp, settings.alpha, settings.beta, log_mse=settings.log_mse, radius=radius,
                         radius_weight=settings.radius_weight)
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        if settings.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(trainable, settings.grad_clip)
        opt.step()
        if settings.ema > 0:
            update_ema(ema, model, settings.ema, step)
        else:
            ema.load_state_dict(model.state_dict())
        step += 1
        seconds = time.perf_counter() - tick
        if deadline is not None:  # every process stops at the same step
            late = torch.tensor([float(time.monotonic() >= deadline)], device=device)
            if distributed:
                dist.all_reduce(late, op=dist.ReduceOp.MAX)
            if late.item():
                end = step  # stop here, as at the end of the run: validate, checkpoint, export

        if rank == 0 and val_data is not None and (step % settings.val_every == 0 or step == end):
            val_psnr, val_in = validate(ema, val_data, device)
            history.append({"step": step, "loss": terms.total.item(), "radius_mae": terms.radius.item(), "val_psnr": val_psnr,
                            "val_input_psnr": val_in, "lr": settings.lr_at(step - 1), "time": time.time()})
            last_val = (val_psnr, val_in)
            with signals_held():
                if val_psnr > best:
                    best = val_psnr
                    save_weights(ema, run_dir / "best.safetensors", extra={"nrkdeblur.step": str(step)})
                atomic_write(run_dir / "history.json", lambda f: f.write(json.dumps(history, indent=1).encode()))
        if rank == 0 and (step % settings.ckpt_every == 0 or step == end):
            with signals_held():
                save_checkpoint(ckpt_path, model, ema, opt, step, settings, history)
                save_weights(ema, run_dir / "last.safetensors", extra={"nrkdeblur.step": str(step)})
        if on_step is not None and rank == 0:
            on_step(StepInfo(step, settings.steps, terms.total.item(), seconds, *last_val))
        tick = time.perf_counter()  # validation and checkpoints do not count as step time
        if step == end:
            break
    if distributed:
        dist.barrier()
    return Checkpoint(step, history)
