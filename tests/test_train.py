"""Training: it learns, it resumes exactly, it runs data-parallel under torchrun."""

import copy
import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nrkdeblur.config import NRKConfig, preset
from nrkdeblur.model import NRKNet
from nrkdeblur.data import RenderSettings, SyntheticDefocus, write_frozen_set
from nrkdeblur.recipe import Recipe
from nrkdeblur.settings import override
from nrkdeblur.train import load_checkpoint, train
from nrkdeblur.weights import load_model

# blur a tiny model can learn in seconds, without noise, 8-bit rounding or JPEG
MILD = RenderSettings(max_coc_radius=5.0, p_noise=0.0, quantize=False, p_jpeg=0.0)
TINY = NRKConfig(width=8, num_atoms=8, atoms_per_channel=False, mixing="sum", identity_start=True)


def photo_like(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """Edges and texture: random rectangles and disks over a smooth gradient."""
    yy, xx = np.mgrid[:size, :size] / size
    img = np.stack([0.3 + 0.4 * xx, 0.5 - 0.3 * yy, 0.4 + 0.2 * xx * yy], axis=-1)
    for _ in range(12):
        c = rng.random(3)
        y0, x0 = rng.integers(0, size - 8, 2)
        h, w = rng.integers(4, size // 2, 2)
        if rng.random() < 0.5:
            img[y0 : y0 + h, x0 : x0 + w] = c
        else:
            img[(yy * size - y0) ** 2 + (xx * size - x0) ** 2 < h**2] = c
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(photo_like(rng)).save(root / f"p{i}.png")
    return root


@pytest.fixture(scope="module")
def val_set(tmp_path_factory, photos):
    out = tmp_path_factory.mktemp("val")
    write_frozen_set(sorted(photos.glob("*.png"))[:3], out, seed=123, settings=MILD)
    return out


def settings(**kw) -> Recipe:
    base = dict(steps=40, batch_size=4, crop=32, lr=2e-3, val_every=1000, ckpt_every=1000)
    return override(Recipe(), **{**base, **kw})


def test_a_short_run_lowers_the_loss_and_raises_validation_psnr(tmp_path, photos, val_set):
    from nrkdeblur.train import open_val_data

    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=0, settings=MILD)
    val = open_val_data(val_set)
    losses = []
    result = train(TINY, settings(steps=150, val_every=150, lr=3e-3, fft_weight=0.0, ema=0.0), data, val,
                   tmp_path / "run", on_step=lambda s: losses.append(s.loss))
    assert result.step == 150
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    (entry,) = result.history
    assert entry["val_psnr"] > entry["val_input_psnr"] + 0.04, entry  # identity start: equal at step 0
    assert load_model(tmp_path / "run" / "best.safetensors").config == TINY


def test_stop_and_resume_gives_the_same_weights_as_one_run(tmp_path, photos):
    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=1)
    s = settings(steps=6, ckpt_every=3)
    torch.manual_seed(99)  # train() must not depend on the global RNG state before it
    train(TINY, s, data, None, tmp_path / "straight")
    train(TINY, s, data, None, tmp_path / "resumed", stop_after=3)
    torch.manual_seed(12345)
    train(TINY, s, data, None, tmp_path / "resumed")
    a = load_model(tmp_path / "straight" / "last.safetensors").state_dict()
    b = load_model(tmp_path / "resumed" / "last.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_settings(tmp_path, photos):
    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=1)
    train(TINY, settings(steps=2), data, None, tmp_path / "run")
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):
        train(TINY, settings(steps=2, lr=1.0), data, None, tmp_path / "run")


def test_resume_may_change_the_length_of_the_schedule(tmp_path, photos):
    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=1)
    train(TINY, settings(steps=8, val_every=4), data, None, tmp_path / "run", stop_after=4)
    shorter = settings(steps=5, val_every=4)
    assert shorter.optim.lr_at(4) == 0.1 * shorter.optim.lr  # 4/5 of the way: the last drop
    assert train(TINY, shorter, data, None, tmp_path / "run").step == 5
    optimiser = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["optimizer"]
    assert optimiser["param_groups"][0]["lr"] == 0.1 * shorter.optim.lr  # the last step ran on the new schedule
    with pytest.raises(ValueError, match="at step 5, past the 3 steps"):
        train(TINY, settings(steps=3, val_every=4), data, None, tmp_path / "run")


def test_cli_resume_with_new_steps_rewrites_the_run_settings(tmp_path, photos, val_set):
    from click.testing import CliRunner

    from nrkdeblur.cli import main

    run = tmp_path / "run"
    first = ["train", "--run-dir", str(run), "--photos", str(photos), "--val", str(val_set), "--width", "4",
             "--atoms", "5", "--crop", "32", "--batch-size", "2", "--steps", "6", "--val-every", "2",
             "--workers", "0", "--device", "cpu", "--stop-after", "2", "--p-high-iso", "0.5"]
    assert CliRunner().invoke(main, first).exit_code == 0
    assert json.loads((run / "run.json").read_text())["render"]["p_high_iso"] == 0.5
    result = CliRunner().invoke(main, ["train", "--run-dir", str(run), "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert "steps 6 -> 3; learning rate at step 2: 0.0001 -> 2.5e-05" in result.output
    assert json.loads((run / "run.json").read_text())["optim"]["steps"] == 3
    history = json.loads((run / "history.json").read_text())
    assert [h["step"] for h in history] == [2, 3] and history[-1]["lr"] == 0.25 * 1e-4
    assert json.loads(load_checkpoint(run / "checkpoint.pt")["recipe"])["render"]["p_high_iso"] == 0.5  # kept on resume
    refused = CliRunner().invoke(main, ["train", "--run-dir", str(run), "--steps", "2"])
    assert refused.exit_code == 2 and "is at step 3, past the 2 steps asked for" in refused.output  # a usage error
    assert json.loads((run / "run.json").read_text())["optim"]["steps"] == 3
    refused = CliRunner().invoke(main, ["train", "--run-dir", str(run), "--lr", "0.1"])
    assert refused.exit_code == 2 and "was started with lr=0.0001" in refused.output  # a usage error
    (run / "checkpoint.pt").write_bytes(b"not a zip file")
    refused = CliRunner().invoke(main, ["train", "--run-dir", str(run), "--steps", "4"])
    assert refused.exit_code == 1 and "checkpoint.pt: not a readable checkpoint" in refused.output
    assert json.loads((run / "run.json").read_text())["optim"]["steps"] == 3
    alone = CliRunner().invoke(main, first[:1] + ["--run-dir", str(tmp_path / "other")] + first[3:] + ["--focus-only"])
    assert alone.exit_code == 2 and "--focus-width" in alone.output and not (tmp_path / "other").exists()


def test_a_run_may_start_from_narrower_weights(tmp_path, photos, val_set):
    from click.testing import CliRunner

    from nrkdeblur.cli import main
    from nrkdeblur.weights import save_weights

    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=1, settings=MILD)
    narrow = dataclasses.replace(TINY, head_batchnorm=False)  # no running statistics to move
    train(narrow, settings(steps=20), data, None, tmp_path / "narrow")
    start = tmp_path / "narrow" / "last.safetensors"
    wide = dataclasses.replace(narrow, width=12)
    train(wide, settings(steps=1, lr=0.0, init=str(start)), data, None, tmp_path / "wide")  # lr 0: weights stay
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        before, after = load_model(start)(x).image, load_model(tmp_path / "wide" / "last.safetensors")(x).image
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    assert load_model(tmp_path / "wide" / "last.safetensors").config == wide

    args = ["train", "--photos", str(photos), "--width", "4", "--atoms", "5", "--crop", "32", "--batch-size", "2",
            "--steps", "1", "--workers", "0", "--device", "cpu"]
    save_weights(NRKNet(dataclasses.replace(preset("cpu"), width=2, num_atoms=5)), tmp_path / "w2.safetensors")
    ok = CliRunner().invoke(main, args + ["--run-dir", str(tmp_path / "ok"), "--init", str(tmp_path / "w2.safetensors")])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "ok" / "run.json").read_text())["model"]["init"] == str(tmp_path / "w2.safetensors")
    refused = CliRunner().invoke(main, args + ["--run-dir", str(tmp_path / "bad"), "--init", str(start)])
    assert refused.exit_code == 1 and "only the width may grow" in refused.output, refused.output


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_data_parallel_with_two_cpu_processes(tmp_path, photos, val_set):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", "29517", "-m", "nrkdeblur", "train",
           "--run-dir", str(tmp_path / "ddp"), "--photos", str(photos), "--val", str(val_set),
           "--width", "4", "--atoms", "5", "--crop", "32", "--batch-size", "4", "--steps", "3",
           "--val-every", "3", "--workers", "0", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert history[-1]["step"] == 3
    model = load_model(tmp_path / "ddp" / "last.safetensors")
    assert model.config.width == 4 and model.config.num_atoms == 5


RADIUS_W = 5.0  # the map term's weight in these tests


def acting_model(config: NRKConfig = TINY, seed: int = 0) -> NRKNet:
    """Trained-like weights near the identity start: kernels with a radius, a map that varies."""
    torch.manual_seed(seed)
    model = NRKNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def one_step(model: NRKNet, recipe: Recipe, batch: dict):
    """train_step on `model` with an optimiser that moves nothing (lr 0); returns (loss, map
    term, trainee) with the step's gradients left on the parameters."""
    from nrkdeblur.train import Trainee, train_step

    trainable = list((model.focus if recipe.optim.focus_only else model).parameters())
    if recipe.optim.focus_only:
        model.requires_grad_(False)
        model.focus.requires_grad_(True)
    t = Trainee(model, copy.deepcopy(model), torch.optim.Adam(trainable, lr=0.0), trainable, 0, [])
    loss, radius_mae = train_step(model, t, recipe, batch, torch.device("cpu"))
    return loss, radius_mae, t


@pytest.mark.parametrize("focus_width", [0, 4])
def test_a_training_step_adds_the_radius_term_to_the_loss_and_its_gradient(photos, focus_width):
    """The step's loss is eq. 12-14 plus radius_weight times the map's mean absolute error
    in pixels against the rendered PSF radius, and its gradient is that sum's: recomputed
    here on a copy of the model (train mode, the same batch)."""
    from nrkdeblur.losses import nrk_loss
    from nrkdeblur.train import collate

    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=0, settings=MILD)
    batch = collate([data[i] for i in range(4)])
    assert batch["radius"].shape == (4, 1, 32, 32) and batch["radius"].max() <= MILD.max_coc_radius
    model = acting_model(dataclasses.replace(TINY, focus_width=focus_width)).train()
    reference = copy.deepcopy(model)
    recipe = settings(lr=0.0, radius_weight=RADIUS_W, grad_clip=None)
    loss, radius_mae, _ = one_step(model, recipe, batch)

    out = reference(batch["blur"], batch["sharp"], return_gamma=True)
    error = (reference.defocus_map(out, (32, 32), eps=1e-4) - batch["radius"]).abs().mean()
    rest = nrk_loss(out, batch["sharp"], recipe.loss.reblur_weight, recipe.loss.fft_weight).total
    params = [p for p in reference.parameters() if p.requires_grad]
    without = torch.autograd.grad(rest, params, retain_graph=True, allow_unused=True)
    (rest + RADIUS_W * error).backward()
    assert radius_mae == pytest.approx(error.item(), rel=1e-6) and error.item() > 0.1
    assert loss == pytest.approx((rest + RADIUS_W * error).item(), rel=1e-6)
    got = dict(model.named_parameters())
    for name, p in reference.named_parameters():
        torch.testing.assert_close(got[name].grad, p.grad, rtol=1e-4, atol=1e-7, msg=name)
    moved = max((p.grad - (0 if w is None else w)).abs().max().item() for p, w in zip(params, without))
    assert moved > 1e-2  # the map term's share of the gradient, far above the tolerance above


def test_the_radius_term_has_finite_gradients_at_a_dirac():
    """At the identity start every kernel is a Dirac, whose RMS radius sqrt(0) has no
    gradient: training's eps keeps it finite."""
    from nrkdeblur.losses import nrk_loss

    fresh = NRKNet(TINY)
    blur, sharp, truth = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), 3 * torch.rand(2, 1, 32, 32)
    out = fresh(blur, sharp, return_gamma=True)
    pred = fresh.defocus_map(out, (32, 32), eps=1e-4)
    assert pred.max().item() == pytest.approx(1e-2)  # sqrt(eps): the map of a Dirac
    nrk_loss(out, sharp, radius=(pred, truth), radius_weight=1.0).total.backward()
    assert all(torch.isfinite(p.grad).all() for p in fresh.parameters() if p.grad is not None)


def test_time_limit_stops_cleanly_and_writes_weights(tmp_path, photos, val_set):
    from nrkdeblur.train import open_val_data

    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=0, settings=MILD)
    result = train(TINY, settings(steps=10_000), data, open_val_data(val_set), tmp_path / "run", time_limit=1e-6)
    assert result.step == 1  # the deadline passed during the first step
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 1
    assert (tmp_path / "run" / "last.safetensors").exists() and result.history[-1]["step"] == 1


def test_holdout_files_keep_their_photos_out_of_training(tmp_path, photos):
    from nrkdeblur.train import open_train_data

    listing = tmp_path / "sources.txt"
    listing.write_text("# a frozen set's sources\np1.png\nsome/folder/p3.png\n")
    data = open_train_data(settings(photos=(str(photos),), holdout=(str(listing),)))
    assert sorted(p.name for p in data.paths) == ["p0.png", "p2.png", "p4.png", "p5.png"]


def parent_of(proc: Path) -> int | None:
    """The parent process id of a /proc/PID folder; None once the process is gone or a zombie."""
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[1])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
def test_a_signal_to_the_process_group_stops_training_cleanly(tmp_path, photos, val_set):
    """SIGTERM to the whole group, as `kill -- -PGID` or a scheduler sends it, reaches the
    data worker too: the worker ignores it, and the run ends with its one line and 143."""
    import signal
    import sys
    import time

    run = tmp_path / "run"
    args = ["train", "--run-dir", str(run), "--photos", str(photos), "--val", str(val_set), "--width", "4",
            "--atoms", "5", "--crop", "32", "--batch-size", "2", "--steps", "100000", "--val-every", "100000",
            "--ckpt-every", "2", "--workers", "1", "--device", "cpu"]
    child = subprocess.Popen([sys.executable, "-m", "nrkdeblur", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for _ in range(600):  # until it has trained a few steps with its data worker
            if (run / "checkpoint.pt").exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert child.poll() is None, child.stderr.read()
        (worker,) = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and parent_of(d) == child.pid]
        os.kill(worker, signal.SIGTERM)  # what a signal to the group does to it: nothing
        time.sleep(1.0)
        assert parent_of(Path(f"/proc/{worker}")) == child.pid and child.poll() is None
        os.killpg(child.pid, signal.SIGTERM)
        assert child.wait(timeout=60) == 143
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    output = child.stdout.read() + child.stderr.read()
    assert "terminated (SIGTERM)" in output and "Traceback" not in output, output


def test_a_signal_during_held_work_takes_effect_once_it_is_done():
    """Ctrl-C or SIGTERM in the middle of a batch's hand-over or of torch.save would break
    them (a worker's traceback; an unrelated error or an abort): signals_held raises the
    signal after the block, through the handler in place, and puts the handlers back."""
    import signal

    from nrkdeblur.train import signals_held

    done = []
    before = signal.getsignal(signal.SIGTERM)
    # Ctrl-C's handler as in a terminal, also where the tests run in a background job, which ignores SIGINT
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the work
                done.append("the rest of the work")
        assert done == ["the rest of the work"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is before
        with signals_held():  # no signal: nothing raised
            done.append("more")
        assert done[-1] == "more"
        if hasattr(signal, "SIGHUP"):  # the terminal closed: held too
            class HungUp(Exception):
                pass

            def hang_up(signum, frame):
                raise HungUp

            before_hup = signal.signal(signal.SIGHUP, hang_up)
            try:
                with pytest.raises(HungUp):
                    with signals_held():
                        os.kill(os.getpid(), signal.SIGHUP)
                        done.append("saved")
                assert done[-1] == "saved" and signal.getsignal(signal.SIGHUP) is hang_up
            finally:
                signal.signal(signal.SIGHUP, before_hup)
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_train_holds_a_signal_that_arrives_during_its_checkpoint_save(tmp_path, photos, monkeypatch):
    """Ctrl-C as train() starts writing its checkpoint: the checkpoint and the weights are
    written whole, then the run stops with KeyboardInterrupt."""
    import signal

    import nrkdeblur.train as training

    real = training.save_checkpoint

    def save_checkpoint(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives as the save begins
        real(*args, **kwargs)

    monkeypatch.setattr(training, "save_checkpoint", save_checkpoint)
    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=1)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with pytest.raises(KeyboardInterrupt):
            train(TINY, settings(steps=4, batch_size=2, ckpt_every=2), data, None, tmp_path / "run")
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2
    assert load_model(tmp_path / "run" / "last.safetensors").config == TINY
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "last.safetensors"]


def test_focus_only_moves_the_head_alone_and_its_first_step_lowers_the_map_error(tmp_path, photos):
    """--focus-only: every weight outside the focus head stays as it was, and the step the
    head takes (with the map term) lowers its map's error against the rendered PSF radius
    on the batch it learned from."""
    from nrkdeblur.train import collate
    from nrkdeblur.weights import save_weights

    start = acting_model()
    save_weights(start, tmp_path / "base.safetensors")
    config = dataclasses.replace(TINY, focus_width=6)
    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=0, settings=MILD)
    train(config, settings(steps=1, batch_size=4, lr=1e-2, fft_weight=0.0, reblur_weight=0.0, ema=0.0,
                           radius_weight=RADIUS_W, focus_only=True, init=str(tmp_path / "base.safetensors")),
          data, None, tmp_path / "run")
    model = load_model(tmp_path / "run" / "last.safetensors")
    before = start.state_dict()
    for name, value in model.state_dict().items():
        if not name.startswith("focus."):
            assert torch.equal(value, before[name]), name
    batch = collate([data[i] for i in range(4)])  # step 0's batch

    def error(m: NRKNet) -> float:
        with torch.no_grad():
            out = m.eval()(batch["blur"], return_gamma=True)
            return (m.defocus_map(out, (32, 32)) - batch["radius"]).abs().mean().item()

    assert error(model) < error(start) - 5e-3  # from the kernels' map, where a new head starts: -0.008 px


def test_focus_only_needs_a_focus_head(tmp_path, photos):
    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=0, settings=MILD)
    with pytest.raises(ValueError, match="focus head"):
        train(TINY, settings(steps=2, focus_only=True), data, None, tmp_path / "run")
