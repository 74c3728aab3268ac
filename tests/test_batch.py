"""Planning a batch (batch.plan): which files are inputs, and which outputs cannot be written,
all found before the model loads and any photo is deblurred."""

import os
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from nrkdeblur.atomic import NAME_MAX, remove_stale_temp_files, temp_path
from test_cli import no_model, photo, run, weights  # noqa: F401  (fixtures)


def names(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_rerun_into_a_folder_inside_the_input_resumes(tmp_path, weights):
    shoot = tmp_path / "in"
    (shoot / "day").mkdir(parents=True)
    photo(shoot / "a.png")
    photo(shoot / "day" / "b.jpg", seed=1)
    command = [shoot, "-o", shoot / "sharp", "-r", "--weights", weights]
    first = run(*command)
    assert first.exit_code == 0 and "2 done, 0 skipped, 0 failed" in first.stderr, first.output
    stamps = {p: p.stat().st_mtime_ns for p in (shoot / "sharp").rglob("*")}
    again = run(*command)
    assert again.exit_code == 0 and "0 done, 2 skipped, 0 failed" in again.stderr, again.output
    assert names(shoot) == ["a.png", "day/b.jpg", "sharp/a.png", "sharp/day/b.jpg"]  # no sharp/sharp/
    assert {p: p.stat().st_mtime_ns for p in (shoot / "sharp").rglob("*")} == stamps
    replace = run(*command, "--overwrite")  # the -o folder is left out whole: its files are replaced
    assert replace.exit_code == 0 and "2 done, 0 skipped, 0 failed" in replace.stderr, replace.output
    assert names(shoot) == ["a.png", "day/b.jpg", "sharp/a.png", "sharp/day/b.jpg"]


def test_a_rerun_into_the_input_folder_in_another_format_resumes(tmp_path, weights):
    folder = tmp_path / "shoot"
    folder.mkdir()
    photo(folder / "a.jpg")
    photo(folder / "b.tif", seed=1)
    command = [folder, "-o", folder, "--format", "png", "--weights", weights]
    first = run(*command)
    assert first.exit_code == 0 and "2 done, 0 skipped, 0 failed" in first.stderr, first.output
    stamps = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = run(*command)
    assert again.exit_code == 0 and "0 done, 2 skipped, 0 failed" in again.stderr, again.output
    # --overwrite: the PNGs may be photos of their own, so they stay inputs, and nothing is overwritten
    replace = run(*command, "--overwrite")
    assert replace.exit_code == 1 and "would overwrite an input" in replace.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert names(folder) == ["a.jpg", "a.png", "b.png", "b.tif"]


def test_a_path_named_twice_is_one_input(tmp_path, weights):
    src = photo(tmp_path / "a.png")
    r = run(src, src, tmp_path / "." / "a.png", "-o", tmp_path / "out.png", "--weights", weights)
    assert r.exit_code == 0 and "1 done, 0 skipped, 0 failed" in r.stderr, r.output
    assert (tmp_path / "out.png").is_file()  # one input: -o names the file
    (tmp_path / "shoot").mkdir()
    inside = photo(tmp_path / "shoot" / "b.png", seed=1)
    r = run(tmp_path / "shoot", inside, "-o", tmp_path / "out", "--weights", weights)  # the folder holds it
    assert r.exit_code == 0 and "1 done, 0 skipped, 0 failed" in r.stderr, r.output
    assert names(tmp_path / "out") == ["b.png"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_reported_as_one(tmp_path, weights, no_model):
    os.mkfifo(tmp_path / "pipe.png")
    r = run(tmp_path / "pipe.png", "-o", tmp_path / "out.png", "--weights", weights)
    assert r.exit_code == 1 and f"{tmp_path / 'pipe.png'}: a named pipe (FIFO), not a photo file" in r.stderr
    assert no_model == [] and "Traceback" not in r.output


@pytest.mark.parametrize("name", ["a" * 241 + ".png", "é" * 125 + "x.png"])  # 245 and 255 bytes
def test_a_long_legal_name_is_written(tmp_path, weights, monkeypatch, name):
    assert len(os.fsencode(name)) <= NAME_MAX
    r = run(photo(tmp_path / "in.png"), "-o", tmp_path / "out" / name, "--weights", weights)
    assert r.exit_code == 0, r.output
    assert os.listdir(tmp_path / "out") == [name]  # and no temporary file left
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its process id now belongs to no process
    with monkeypatch.context() as m:
        m.setattr(os, "getpid", lambda: finished.pid)
        tmp = temp_path(tmp_path / "out" / name)  # as that process named its temporary file
    assert len(os.fsencode(tmp.name)) <= NAME_MAX and tmp.name.startswith("." + name[:100])
    tmp.write_bytes(b"left by a process that died")
    assert remove_stale_temp_files(tmp_path / "out") == [tmp]  # a cut name is still recognised


def test_a_name_too_long_is_refused_before_the_model_loads(tmp_path, weights, no_model):
    r = run(photo(tmp_path / "in.png"), "-o", tmp_path / ("a" * 252 + ".png"), "--weights", weights)
    assert r.exit_code == 1 and "file name too long" in r.stderr and no_model == []


def test_unwritable_maps_and_a_photo_too_wide_for_webp_are_refused_before_the_model_loads(tmp_path, weights, no_model):
    src = photo(tmp_path / "in.png")
    (tmp_path / "file").write_text("x")
    r = run(src, "-o", tmp_path / "o.png", "--defocus-map", tmp_path / "file" / "maps", "--weights", weights)
    assert r.exit_code == 1 and f"{tmp_path / 'file'} is not a folder" in r.stderr, r.output
    assert no_model == [] and not (tmp_path / "o.png").exists()
    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((2, 16_400, 3), np.uint8)).save(wide)  # WebP stores at most 16,383 px a side
    for output in (["-o", tmp_path / "w.webp"], ["--format", "webp"]):
        r = run(wide, *output, "--weights", weights)
        assert r.exit_code == 1 and "16400 x 2 is too large for WEBP (max 16383 px a side)" in r.stderr, r.output
    assert no_model == []
    assert run(wide, "-o", tmp_path / "w.png", "--weights", weights).exit_code == 0  # PNG holds it


def test_a_read_only_file_system_is_named_as_such(tmp_path, weights, monkeypatch, no_model):
    """os.access only says no; the file system's flags tell a read-only mount from a folder
    without permission."""
    import nrkdeblur.imageio as imageio

    src = photo(tmp_path / "in.png")
    monkeypatch.setattr(imageio.os, "access", lambda path, mode, **k: not mode & os.W_OK)
    monkeypatch.setattr(imageio.os, "statvfs", lambda path: types.SimpleNamespace(f_flag=os.ST_RDONLY))
    r = run(src, "-o", tmp_path / "o.png", "--weights", weights)
    assert r.exit_code == 1 and f"cannot write: read-only file system in {tmp_path}" in r.stderr, r.output
    monkeypatch.setattr(imageio.os, "statvfs", lambda path: types.SimpleNamespace(f_flag=0))
    r = run(src, "-o", tmp_path / "o.png", "--weights", weights)
    assert r.exit_code == 1 and f"cannot write: permission denied in {tmp_path}" in r.stderr
    assert no_model == []
