"""Training: it learns, it resumes exactly, it runs data-parallel under torchrun."""

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


RADIUS_STEPS, RADIUS_W = 120, 5.0  # a tiny model learns the map in a few seconds


def test_the_radius_term_teaches_the_defocus_map_the_true_blur(tmp_path, photos):
    """With the radius term the map's error against the rendered PSF radius falls;
    the term is the mean absolute error in pixels and has finite gradients at a Dirac."""
    from nrkdeblur.losses import nrk_loss

    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=0, settings=MILD)
    item = data[0]
    assert item["radius"].shape == (1, 32, 32) and item["radius"].max() <= MILD.max_coc_radius
    result = train(TINY, settings(steps=RADIUS_STEPS, lr=3e-3, fft_weight=0.0, reblur_weight=0.0, ema=0.0, radius_weight=RADIUS_W),
                   data, None, tmp_path / "run")
    model = load_model(tmp_path / "run" / "last.safetensors")
    fresh = NRKNet(TINY)  # identity start: every kernel a Dirac, map 0
    batch = [data[10_000 + i] for i in range(4)]
    blur, truth = torch.stack([b["blur"] for b in batch]), torch.stack([b["radius"] for b in batch])

    def error(m: NRKNet) -> float:
        with torch.no_grad():
            out = m(blur, return_gamma=True)
            return (m.defocus_map(out, blur.shape[-2:]) - truth).abs().mean().item()

    assert error(model) < 0.8 * error(fresh)
    out = fresh(blur, torch.stack([b["sharp"] for b in batch]), return_gamma=True)
    pred = fresh.defocus_map(out, blur.shape[-2:], eps=1e-4)
    terms = nrk_loss(out, torch.stack([b["sharp"] for b in batch]), 0.0, 0.0, radius=(pred, truth), radius_weight=1.0)
    assert terms.radius.item() == pytest.approx((pred - truth).abs().mean().item())
    terms.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in fresh.parameters() if p.grad is not None)
    assert result.step == RADIUS_STEPS


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
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_focus_only_trains_the_head_alone_and_it_learns_the_map(tmp_path, photos):
    """--focus-only: every weight outside the focus head stays as it was, and the head's
    map error against the rendered PSF radius falls below the kernels' own."""
    from nrkdeblur.weights import save_weights

    torch.manual_seed(0)
    start = NRKNet(TINY)
    with torch.no_grad():  # trained-like base weights, not the identity start
        for p in start.parameters():
            p.add_(0.02 * torch.randn_like(p))
    save_weights(start, tmp_path / "base.safetensors")
    config = dataclasses.replace(TINY, focus_width=6)
    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=0, settings=MILD)
    train(config, settings(steps=RADIUS_STEPS, lr=1e-2, fft_weight=0.0, reblur_weight=0.0, ema=0.0, radius_weight=RADIUS_W,
                           focus_only=True, init=str(tmp_path / "base.safetensors")), data, None, tmp_path / "run")
    model = load_model(tmp_path / "run" / "last.safetensors")
    before = start.state_dict()
    for name, value in model.state_dict().items():
        if not name.startswith("focus."):
            assert torch.equal(value, before[name]), name
    batch = [data[10_000 + i] for i in range(4)]
    blur, truth = torch.stack([b["blur"] for b in batch]), torch.stack([b["radius"] for b in batch])
    with torch.no_grad():
        learned = (model.defocus_map(model(blur), blur.shape[-2:]) - truth).abs().mean().item()
        out = start(blur, return_gamma=True)
        kernels = (start.defocus_map(out, blur.shape[-2:]) - truth).abs().mean().item()  # the head's start
    assert learned < 0.95 * kernels  # 120 steps on six photos: about 8 % better


def test_focus_only_needs_a_focus_head(tmp_path, photos):
    data = SyntheticDefocus(sorted(photos.glob("*.png")), crop=32, seed=0, settings=MILD)
    with pytest.raises(ValueError, match="focus head"):
        train(TINY, settings(steps=2, focus_only=True), data, None, tmp_path / "run")
