"""The `nrkdeblur` command through click's CliRunner (and one real subprocess)."""

import errno
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageCms
from safetensors.torch import load_file

from nrkdeblur.cli import main
from nrkdeblur.config import NRKConfig
from nrkdeblur.imageio import read_photo
from nrkdeblur.model import NRKNet
from nrkdeblur.weights import save_weights
from test_imageio import exif_with, make_dng, read_exif

TINY = NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum", identity_start=False)
REPO = Path(__file__).resolve().parents[1]
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(NRKNet(TINY), path)
    return path


def photo(path, size=(40, 56), mode="RGB", seed=0, **save):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    a = rng.integers(0, 256, (size[0], size[1], channels), dtype=np.uint8)
    Image.fromarray(a[..., 0] if channels == 1 else a, mode).save(path, **save)
    return path


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def test_single_file(tmp_path, weights):
    src = photo(tmp_path / "in.jpg")
    r = run(src, "-o", tmp_path / "out.jpg", "--weights", weights)
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "out.jpg").size == (56, 40)
    assert "1 done, 0 skipped, 0 failed" in r.stderr
    assert r.stdout == ""  # logs go to stderr


def test_default_output_is_beside_the_input(tmp_path, weights):
    src = photo(tmp_path / "a.png")
    assert run(src, "--weights", weights).exit_code == 0
    assert (tmp_path / "a_sharp.png").is_file()


def test_folder_keeps_nested_paths_and_needs_r_for_subfolders(tmp_path, weights):
    shoot = tmp_path / "shoot"
    (shoot / "day1").mkdir(parents=True)
    photo(shoot / "top.png")
    photo(shoot / "day1" / "x.jpg")
    photo(shoot / "day1" / "y.TIF", seed=2)
    (shoot / "notes.txt").write_text("not a photo")
    r = run(shoot, "-o", tmp_path / "flat", "--weights", weights)
    assert r.exit_code == 0, r.output
    assert sorted(p.relative_to(tmp_path / "flat").as_posix() for p in (tmp_path / "flat").rglob("*.*")) == ["top.png"]
    r = run(shoot, "-o", tmp_path / "sharp", "-r", "--weights", weights, "--format", "png")
    assert r.exit_code == 0, r.output
    got = sorted(p.relative_to(tmp_path / "sharp").as_posix() for p in (tmp_path / "sharp").rglob("*.*"))
    assert got == ["day1/x.png", "day1/y.png", "top.png"]


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, weights):
    src = photo(tmp_path / "in.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    r = run(src, "-o", out, "--weights", weights)
    assert r.exit_code == 0 and "1 skipped" in r.stderr and out.read_bytes() == b"old"
    r = run(src, "-o", out, "--weights", weights, "--overwrite")
    assert r.exit_code == 0 and Image.open(out).size == (56, 40)


def test_an_output_equal_to_an_input_is_refused(tmp_path, weights):
    src = photo(tmp_path / "in.png")
    before = src.read_bytes()
    r = run(src, "-o", src, "--weights", weights, "--overwrite")
    assert r.exit_code != 0 and "would overwrite an input" in r.stderr
    assert src.read_bytes() == before


def test_16_bit_png_stays_16_bit(tmp_path, weights):
    a = (np.random.default_rng(0).random((32, 48, 3)) * 65535).astype(np.uint16)
    from nrkdeblur.imageio import Photo, write_photo

    write_photo(tmp_path / "in16.png", Photo(a.astype(np.float32) / 65535, bit_depth=16))
    assert run(tmp_path / "in16.png", "-o", tmp_path / "out16.png", "--weights", weights).exit_code == 0
    out = read_photo(tmp_path / "out16.png")
    assert out.bit_depth == 16
    levels = np.round(out.pixels * 65535).astype(np.int64)
    assert len(np.unique(levels % 257)) > 10  # real 16-bit values, not 8-bit ones scaled


def test_linear_input_is_srgb_encoded_for_the_network_and_decoded_back(tmp_path, weights):
    from nrkdeblur.inference import deblur
    from nrkdeblur.srgb import linear_to_srgb, srgb_to_linear
    from nrkdeblur.weights import load_model

    src = photo(tmp_path / "lin.png", size=(48, 64))
    x = read_photo(src).pixels
    for flag, name in (([], "plain.png"), (["--linear"], "linear.png")):
        assert run(src, "-o", tmp_path / name, "--weights", weights, *flag).exit_code == 0
    plain, linear = (np.asarray(Image.open(tmp_path / n), dtype=np.float64) for n in ("plain.png", "linear.png"))
    model = load_model(weights)
    expected = srgb_to_linear(deblur(model, linear_to_srgb(x)).image) * 255
    assert np.abs(linear - expected).max() <= 1  # 8-bit rounding
    assert np.abs(linear - plain).mean() > 1  # the flag changes what the network sees
    assert np.allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-6)  # the two curves invert each other


def test_exif_orientation_and_icc_profile_are_kept(tmp_path, weights):
    src = photo(tmp_path / "o.jpg", size=(30, 50), exif=exif_with(6), icc_profile=SRGB_ICC, quality=95)
    r = run(src, "-o", tmp_path / "out.jpg", "--weights", weights)
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (30, 50)  # rotated upright on read
        assert im.info.get("icc_profile") == SRGB_ICC
        assert read_exif(im.info.get("exif"))[0x0112] == 1


def test_rgba_alpha_passes_through_untouched(tmp_path, weights):
    src = photo(tmp_path / "a.png", mode="RGBA")
    assert run(src, "-o", tmp_path / "b.png", "--weights", weights).exit_code == 0
    a, b = np.asarray(Image.open(src)), np.asarray(Image.open(tmp_path / "b.png"))
    assert b.shape == a.shape and np.array_equal(a[..., 3], b[..., 3])


def test_grey_stays_grey(tmp_path, weights):
    src = photo(tmp_path / "g.png", mode="L")
    assert run(src, "-o", tmp_path / "h.png", "--weights", weights).exit_code == 0
    assert Image.open(tmp_path / "h.png").mode == "L"


def test_raw_file_becomes_16_bit_tiff(tmp_path, weights):
    cfa = (np.random.default_rng(1).random((32, 48)) * 3000 + 500).astype(np.uint16)
    (tmp_path / "shot.dng").write_bytes(make_dng(cfa))
    r = run(tmp_path / "shot.dng", "-o", tmp_path / "out", "--weights", weights)
    assert r.exit_code == 0, r.output
    out = read_photo(tmp_path / "out" / "shot.tiff")
    assert out.bit_depth == 16 and out.pixels.shape[2] == 3


def test_maps_have_the_right_sizes_and_values(tmp_path, weights):
    src = photo(tmp_path / "p.png", size=(45, 70))
    r = run(src, "-o", tmp_path / "o.png", "--weights", weights, "--defocus-map", tmp_path / "maps",
            "--coefficients", tmp_path / "coef")
    assert r.exit_code == 0, r.output
    heat = Image.open(tmp_path / "maps" / "p_defocus.png")
    assert heat.mode == "RGB" and heat.size[1] == 45 and heat.size[0] > 70  # the colour bar is on the right
    radius = np.asarray(Image.open(tmp_path / "maps" / "p_defocus.tiff"))
    assert radius.dtype == np.float32 and radius.shape == (45, 70)
    assert np.isfinite(radius).all() and radius.min() >= 0 and radius.max() < 2 * TINY.num_atoms * 4
    coef = load_file(str(tmp_path / "coef" / "p_coefficients.safetensors"))
    J = TINY.num_atoms
    assert coef["gamma_scale1"].shape == (J, 45, 70)
    assert coef["gamma_scale2"].shape == (J, 23, 35)
    assert coef["gamma_scale3"].shape == (J, 12, 18)
    assert coef["atoms"].shape == (1, J, 2 * J - 1, 2 * J - 1)
    assert torch.allclose(coef["atoms"].sum((-1, -2)), torch.ones(1, J), atol=1e-5)
    assert Image.open(tmp_path / "coef" / "p_atoms.png").size[0] > 0


def test_tile_options_reach_the_model_and_a_single_tile_is_exact(tmp_path, weights, monkeypatch):
    import nrkdeblur.inference as inference

    tiles = []  # (tile, overlap, shapes of the tiles the network saw) of every tiled photo
    real = inference.run_tiled

    def spy(fn, x, tile, overlap, on_tile=None, align=1):
        seen = []
        tiles.append((tile, overlap, seen))
        return real(lambda t: seen.append(tuple(t.shape[-2:])) or fn(t), x, tile, overlap, on_tile, align)

    monkeypatch.setattr(inference, "run_tiled", spy)
    src = photo(tmp_path / "p.png", size=(64, 800))
    common = ["-o", tmp_path / "o", "--weights", weights, "--format", "tiff", "--overwrite"]
    assert run(src, *common, "--defocus-map", tmp_path / "m0").exit_code == 0
    assert tiles == []  # small enough to run whole
    whole = read_photo(tmp_path / "o" / "p.tiff").pixels
    whole_map = np.asarray(Image.open(tmp_path / "m0" / "p_defocus.tiff"))

    r = run(src, *common, "--defocus-map", tmp_path / "m1", "--tile", 384, "--tile-overlap", 64)
    assert r.exit_code == 0, r.output
    (tile, overlap, seen), = tiles
    assert (tile, overlap) == ((384, 384), 64) and seen == [(64, 384)] * 3  # three tiles across
    tiled = read_photo(tmp_path / "o" / "p.tiff").pixels
    assert tiled.shape == whole.shape and not np.array_equal(tiled, whole)
    assert np.abs(tiled - whole).mean() * 255 < 0.5  # blended seams, close to the whole photo
    tiled_map = np.asarray(Image.open(tmp_path / "m1" / "p_defocus.tiff"))
    assert tiled_map.shape == (64, 800) and np.abs(tiled_map - whole_map).mean() < 0.1

    assert run(src, *common, "--tile", 384, "--tile-overlap", 192).exit_code == 0
    assert tiles[-1][1] == 192 and len(tiles[-1][2]) == 4  # more overlap, one more tile

    small = photo(tmp_path / "s.png", size=(150, 170))
    assert run(small, *common).exit_code == 0
    alone = read_photo(tmp_path / "o" / "s.tiff").pixels
    assert run(small, *common, "--tile", 384, "--tile-overlap", 64).exit_code == 0
    assert np.array_equal(read_photo(tmp_path / "o" / "s.tiff").pixels, alone)  # fits one tile: identical


def test_bad_inputs_fail_one_line_each_and_the_batch_goes_on(tmp_path, weights):
    good = photo(tmp_path / "good.png")
    (tmp_path / "text.jpg").write_text("hello, not a JPEG")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty").mkdir()
    r = run(good, tmp_path / "text.jpg", tmp_path / "cut.png", tmp_path / "missing.png", tmp_path / "empty",
            "-o", tmp_path / "out", "--weights", weights)
    assert r.exit_code == 1
    assert (tmp_path / "out" / "good.png").is_file()
    assert "1 done, 0 skipped, 4 failed" in r.stderr
    tail = r.stderr.split("4 failed:")[1]
    assert "text.jpg: not an image file" in tail
    assert "cut.png: truncated or corrupt" in tail
    assert "missing.png: no such file or folder" in tail
    assert "empty: no images found" in tail
    assert "Traceback" not in r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]  # no temp files left


def test_unwritable_output_and_full_disk(tmp_path, weights, monkeypatch):
    src = photo(tmp_path / "in.png")
    (tmp_path / "file").write_text("x")
    r = run(src, "-o", tmp_path / "file" / "out.png", "--weights", weights)  # parent is a file
    assert r.exit_code == 1 and "in.png" in r.stderr and "cannot" in r.stderr and "Traceback" not in r.output

    import nrkdeblur.imageio as imageio

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imageio.os, "fsync", full)
    r = run(src, "-o", tmp_path / "o2.png", "--weights", weights)
    assert r.exit_code == 1 and "disk full" in r.stderr
    assert not (tmp_path / "o2.png").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("content, message, code", [(b"garbage" * 9, "not a valid safetensors", 1),
                                                    (None, "does not exist", 2)])
def test_bad_weights_file_is_one_clear_line(tmp_path, content, message, code):
    src = photo(tmp_path / "in.png")
    w = tmp_path / "w.safetensors"
    if content is not None:
        w.write_bytes(content)
    r = run(src, "--weights", w)
    assert r.exit_code == code and message in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "in_sharp.png").exists()


def test_mismatched_weights_file(tmp_path, weights):
    from safetensors.torch import save_file

    state = load_file(str(weights))
    state.pop("rkr.taps")
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata={"nrkdeblur.config": TINY.to_json()})
    r = run(photo(tmp_path / "in.png"), "--weights", bad)
    assert r.exit_code == 1 and "do not match" in r.stderr


def test_the_confidence_map_is_black_where_the_photo_is_flat(tmp_path, weights):
    """NAME_confidence.png beside the map: 0 where the photo has no texture (the map there
    is its neighbours' guess), bright where it has."""
    a = np.full((48, 96, 3), 128, np.uint8)
    a[:, 48:] = np.random.default_rng(0).integers(0, 256, (48, 48, 3))
    Image.fromarray(a).save(tmp_path / "p.png")
    r = run(tmp_path / "p.png", "-o", tmp_path / "o.png", "--weights", weights, "--defocus-map", tmp_path / "maps")
    assert r.exit_code == 0, r.output
    conf = Image.open(tmp_path / "maps" / "p_confidence.png")
    assert conf.mode == "L" and conf.size == (96, 48)
    conf = np.asarray(conf)
    assert conf[:, :36].max() == 0 and conf[:, 60:].mean() > 80  # measured 115


def test_model_takes_a_shipped_name_or_a_file_and_help_lists_the_shipped_models(tmp_path, weights):
    from nrkdeblur.weights import SHIPPED

    src = photo(tmp_path / "in.png", size=(48, 64))
    outputs = {}
    for option, model in (("--model", "default"), ("--model", weights), ("--weights", weights)):
        out = tmp_path / f"{option}-{Path(str(model)).stem}.png"
        r = run(src, "-o", out, option, model)
        assert r.exit_code == 0, r.output
        outputs[option, model] = np.asarray(Image.open(out))
    assert np.array_equal(outputs["--model", weights], outputs["--weights", weights])
    assert not np.array_equal(outputs["--model", "default"], outputs["--model", weights])  # two networks
    r = run(src, "--model", "fastest")
    assert r.exit_code == 2 and "no shipped model has that name (default)" in r.stderr
    for command in ([], ["deblur"], ["eval"]):
        help_lines = run(*command, "--help").output.splitlines()
        for m in SHIPPED:
            assert any(line.split() == [m.name, *m.summary.split()] for line in help_lines), (command, m.name)


def test_quiet_prints_nothing_on_success(tmp_path, weights):
    r = run(photo(tmp_path / "in.png"), "-q", "--weights", weights)
    assert r.exit_code == 0 and r.output == ""


def test_cuda_asked_for_but_absent(tmp_path, weights):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = run(photo(tmp_path / "in.png"), "--device", "cuda", "--weights", weights)
    assert r.exit_code != 0 and "no CUDA GPU" in r.stderr


@pytest.mark.parametrize("command", [[], ["deblur"], ["train"], ["convert"], ["eval"], ["render"], ["bench"]])
def test_every_command_has_help_with_examples(command):
    r = run(*command, "--help")
    assert r.exit_code == 0 and "Example" in r.output


def test_python_m_and_the_debug_flag_show_a_traceback(tmp_path):
    photo(tmp_path / "in.png")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage" * 9)
    r = subprocess.run([sys.executable, "-m", "nrkdeblur", str(tmp_path / "in.png"), "--weights",
                        str(tmp_path / "bad.safetensors"), "--debug"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_maps_of_two_inputs_never_share_a_name(tmp_path, weights):
    photo(tmp_path / "a.jpg")
    photo(tmp_path / "a.png", seed=3)
    r = run(tmp_path / "a.jpg", tmp_path / "a.png", "-o", tmp_path / "out", "--format", "tiff",
            "--weights", weights, "--defocus-map", tmp_path / "maps")
    assert r.exit_code == 1 and ("already the output of another input" in r.stderr or "maps would overwrite" in r.stderr)
    r = run(tmp_path / "a.jpg", tmp_path / "a.png", "-o", tmp_path / "out2", "--weights", weights,
            "--defocus-map", tmp_path / "maps2")
    assert r.exit_code == 1 and "maps would overwrite" in r.stderr
    assert len(list((tmp_path / "maps2").glob("a_defocus.png"))) == 1


@pytest.fixture
def no_model(monkeypatch):
    """Record every model load; a test that expects none asserts the list stays empty."""
    import nrkdeblur.pipeline as pipeline

    loads = []
    real = pipeline.open_default_weights
    monkeypatch.setattr(pipeline, "open_default_weights", lambda *a: loads.append(a) or real(*a))
    return loads


def test_an_output_nothing_can_write_is_refused_before_the_model_loads(tmp_path, weights, no_model):
    src = photo(tmp_path / "in.png")
    r = run(src, "-o", tmp_path / "x.xyz", "--weights", weights)
    assert r.exit_code == 1 and no_model == []
    assert "in.png: output" in r.stderr and "cannot write .xyz files" in r.stderr and "Traceback" not in r.output
    gif = photo(tmp_path / "still.gif")  # readable, but its default output in_sharp.gif is not writable
    (tmp_path / "file").write_text("x")
    r = run(gif, "--weights", weights)
    assert r.exit_code == 1 and "cannot write .gif files" in r.stderr and no_model == []
    r = run(src, "-o", tmp_path / "file" / "out.png", "--weights", weights)  # a parent is a file
    assert r.exit_code == 1 and "is not a folder" in r.stderr and no_model == []
    # in a batch the others go on, and the refusal comes first, before the model loads
    r = run(src, gif, "-o", tmp_path / "out", "--weights", weights)
    assert r.exit_code == 1 and "1 done, 0 skipped, 1 failed" in r.stderr and len(no_model) == 1
    assert r.stderr.index("cannot write .gif") < r.stderr.index("1 done")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["in.png"]
    r = run(gif, "--format", "png", "--weights", weights)  # the way out the message names
    assert r.exit_code == 0 and (tmp_path / "still_sharp.png").is_file()


def test_animations_and_multi_page_files_are_refused_not_cut(tmp_path, weights):
    frames = [Image.fromarray(np.full((16, 20, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    photo(tmp_path / "good.png")
    r = run(tmp_path / "anim.gif", tmp_path / "pages.tif", tmp_path / "good.png", "-o", tmp_path / "out",
            "--format", "png", "--weights", weights)
    assert r.exit_code == 1 and "1 done, 0 skipped, 2 failed" in r.stderr
    assert "anim.gif: has 3 frames (an animation)" in r.stderr
    assert "pages.tif: has 3 frames (a multi-page file)" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


SLOW_WRITE = """
import sys, time
import nrkdeblur.imageio as imageio

def slow(f, *args):  # write part of the file, say so, then wait to be stopped
    f.write(bytes(4096))
    f.flush()
    print("writing", flush=True)
    time.sleep(60)

imageio._write_with_pillow = slow
from nrkdeblur.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("sig, code, message", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                (signal.SIGINT, 130, "interrupted"),
                                                (getattr(signal, "SIGHUP", None), 129, "hung up (SIGHUP")])
def test_a_signal_mid_write_leaves_nothing_behind(tmp_path, weights, sig, code, message):
    if sig is None:
        pytest.skip("no SIGHUP on this system")
    src = photo(tmp_path / "in.png")
    out = tmp_path / "out"
    # the child gets Ctrl-C's default action even where this test runs in a background job, which ignores SIGINT
    child = subprocess.Popen([sys.executable, "-c", SLOW_WRITE, str(src), "-o", str(out / "o.png"), "--weights",
                              str(weights)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert child.stdout.readline() == "writing\n", child.stderr.read()
        (tmp,) = out.iterdir()  # the half-written temporary file, named with the writer's process id
        assert re.fullmatch(rf"\.o\.png\.tmp-{child.pid}-[0-9a-f]{{8}}", tmp.name) and tmp.stat().st_size == 4096
        child.send_signal(sig)
        assert child.wait(timeout=60) == code
    finally:
        child.kill()
    stderr = child.stderr.read()
    assert message in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []


def test_the_next_run_removes_stale_temporary_files_of_dead_processes_only(tmp_path, weights):
    out = tmp_path / "out"
    out.mkdir()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its process id now belongs to no process
    dead = out / f".o.png.tmp-{finished.pid}-0123abcd"
    live = out / f".o.png.tmp-{os.getppid()}-0123abcd"  # pytest's parent: running
    other = out / ".o.png.tmp-notours"
    for p in (dead, live, other):
        p.write_bytes(b"partial")
    r = run(photo(tmp_path / "in.png"), "-o", out / "o.png", "--weights", weights)
    assert r.exit_code == 0, r.output
    assert f"removed {dead}" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, other.name, "o.png"])


def test_every_exit_code(tmp_path, weights, monkeypatch):
    handler = signal.getsignal(signal.SIGTERM)
    src = photo(tmp_path / "in.png")
    assert run(src, "-o", tmp_path / "a.png", "--weights", weights).exit_code == 0
    assert run(src, "-o", tmp_path / "a.png", "--weights", weights).exit_code == 0  # nothing left to do
    assert run(src, tmp_path / "missing.png", "-o", tmp_path / "b", "--weights", weights).exit_code == 1
    usage = [["--strength", "1.5"], ["--strength", "-0.1"], ["--quality", "0"], ["--tile", "100"],
             ["--tile", "400", "--tile-overlap", "201"], ["--device", "tpu"], ["--format", "gif"], ["--no-such-flag"]]
    for flags in usage:
        r = run(src, "-o", tmp_path / "c.png", "--weights", weights, *flags)
        assert r.exit_code == 2, (flags, r.output)
        assert "Traceback" not in r.output and r.output.strip().splitlines()[-1].startswith("Error:")
    assert run().exit_code == 2  # no input at all
    assert run(src, "-o", src, "--weights", weights).exit_code == 1  # refused: would overwrite the input

    import nrkdeblur.pipeline as pipeline

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "process_one", ctrl_c)
    r = run(src, "-o", tmp_path / "d.png", "--weights", weights)
    assert r.exit_code == 130 and "interrupted" in r.stderr and "Aborted" not in r.output
    assert signal.getsignal(signal.SIGTERM) is handler  # the command's handler is put back
    helps = run("--help").output + run("deblur", "--help").output
    assert all(f"{code} " in helps for code in (0, 1, 2, 129, 130, 143)) and "Exit status" in helps


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this system")
def test_a_hang_up_ignored_by_nohup_stays_ignored(tmp_path, weights, monkeypatch):
    import nrkdeblur.pipeline as pipeline

    seen = []
    real = pipeline.process_one
    monkeypatch.setattr(pipeline, "process_one", lambda *a: seen.append(signal.getsignal(signal.SIGHUP)) or real(*a))
    inherited = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as `nohup nrkdeblur ...` starts it
    try:
        assert run(photo(tmp_path / "in.png"), "--weights", weights).exit_code == 0
        assert seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, inherited)


def test_strength_zero_returns_the_input(tmp_path, weights):
    src = photo(tmp_path / "in.png", size=(48, 64))
    r = run(src, "-o", tmp_path / "same.png", "--weights", weights, "--strength", 0)
    assert r.exit_code == 0, r.output
    a = np.asarray(Image.open(src), dtype=int)
    assert np.abs(np.asarray(Image.open(tmp_path / "same.png"), dtype=int) - a).max() <= 1
    assert run(src, "-o", tmp_path / "full.png", "--weights", weights).exit_code == 0
    assert np.abs(np.asarray(Image.open(tmp_path / "full.png"), dtype=int) - a).mean() > 1  # 1 changes it
    r = run(src, "-o", tmp_path / "x.png", "--weights", weights, "--strength", 2)
    assert r.exit_code == 2 and "--strength" in r.output


def test_the_speed_keeps_three_significant_digits_when_they_end_in_zeros():
    from nrkdeblur.report_data import rate

    assert rate(6.4e-5, 0.08) == " (0.000800 MP/s)"  # a round number keeps its digits
    assert rate(12.0, 1.0) == " (12.0 MP/s)" and rate(123.4, 1.0) == " (123 MP/s)" and rate(0, 1) == ""


def test_the_speed_of_a_tiny_photo_is_not_rounded_to_zero(tmp_path, weights):
    r = run(photo(tmp_path / "in.png", size=(8, 8)), "--weights", weights)
    assert r.exit_code == 0
    (speed,) = re.findall(r"\(([0-9.e+-]+) MP/s\)", r.stderr)
    assert float(speed) > 0 and len(speed.replace("0.", "").lstrip("0")) >= 3  # three significant digits
