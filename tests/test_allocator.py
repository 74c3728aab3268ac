"""The command starts itself once more with an allocator that keeps freed pages, and runs
exactly as before wherever that allocator is not available (allocator.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nrkdeblur import allocator

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "benchmarks" / "kodak24-defocus" / "blur" / "kodim05.png"
needs_library = pytest.mark.skipif(allocator.library() is None or not sys.platform.startswith("linux"),
                                   reason="cmeel-mimalloc is not installed here")

# what a relaunched process reports: its allocator, then LD_PRELOAD as its children see it
PROBE = ("from nrkdeblur import allocator; allocator.switch_on(); import os; "
         "print(allocator.active()); print(repr(os.environ.get('LD_PRELOAD')))")


def run(code_or_args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in (allocator.CHOICE, allocator.MARK, "LD_PRELOAD")}
    return subprocess.run([sys.executable, *code_or_args], env={**clean, **env}, capture_output=True, text=True,
                          timeout=300)


def test_the_relaunch_environment_puts_the_library_first_and_remembers_the_users_preload():
    lib = Path("/opt/lib/libmimalloc.so")
    env = allocator.relaunch_env({"LD_PRELOAD": "/usr/lib/libmine.so", "PATH": "/bin"}, lib)
    assert env["LD_PRELOAD"] == f"{lib} /usr/lib/libmine.so" and env[allocator.MARK] == "/usr/lib/libmine.so"
    assert env["MIMALLOC_PURGE_DELAY"] == allocator.PURGE_DELAY_MS and env["PATH"] == "/bin"
    env = allocator.relaunch_env({"MIMALLOC_PURGE_DELAY": "100"}, lib)
    assert env["LD_PRELOAD"] == str(lib) and env[allocator.MARK] == "" and env["MIMALLOC_PURGE_DELAY"] == "100"


def test_relaunch_only_on_linux_once_and_unless_the_user_says_system():
    assert allocator.wanted({}, "linux")
    assert not allocator.wanted({}, "darwin") and not allocator.wanted({}, "win32")
    assert not allocator.wanted({allocator.CHOICE: "system"}, "linux")
    assert not allocator.wanted({allocator.MARK: ""}, "linux")  # already relaunched: never a loop


def test_without_the_library_or_when_the_relaunch_fails_the_command_goes_on(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "library", lambda: None)
    allocator.switch_on(["nrkdeblur"], {}, execve=lambda *a: calls.append(a))
    assert calls == []  # nothing to preload: no relaunch

    def refuse(*args):
        calls.append(args)
        raise OSError("exec refused")

    monkeypatch.setattr(allocator, "library", lambda: Path("/opt/libmimalloc.so"))
    allocator.switch_on(["nrkdeblur", "a.jpg"], {}, execve=refuse)  # returns: the system allocator
    (executable, argv, env), = calls
    assert executable == sys.executable and argv == [sys.executable, "a.jpg"] and env["LD_PRELOAD"] == "/opt/libmimalloc.so"


@needs_library
def test_a_relaunched_process_runs_with_mimalloc_and_gives_children_the_users_preload():
    out = run(["-c", PROBE]).stdout.split()
    assert out == ["mimalloc", "None"]
    out = run(["-c", PROBE], LD_PRELOAD="").stdout.split()
    assert out[0] == "mimalloc"
    out = run(["-c", PROBE], **{allocator.CHOICE: "system"}).stdout.split()
    assert out == ["system", "None"]


@needs_library
def test_the_command_writes_the_same_photo_with_either_allocator(tmp_path):
    outputs = {}
    for choice in ("mimalloc", "system"):
        out = tmp_path / f"{choice}.png"
        done = run(["-m", "nrkdeblur", str(PHOTO), "-o", str(out), "-q", "--tile", "384"],
                   **{allocator.CHOICE: choice})
        assert done.returncode == 0, done.stderr
        outputs[choice] = out.read_bytes()
    assert outputs["mimalloc"] == outputs["system"]


def test_tiles_are_smaller_where_the_allocator_keeps_freed_pages(monkeypatch):
    """Its peak for the tiles glibc fits in the budget was 1.39x glibc's (inference.py)."""
    import torch

    from nrkdeblur import inference
    from nrkdeblur.config import preset
    from nrkdeblur.model import NRKNet

    model, cpu = NRKNet(preset("cpu")), torch.device("cpu")
    tiles, onnx_tiles = {}, {}
    for name in ("system", "mimalloc"):
        monkeypatch.setattr(inference, "active_allocator", lambda name=name: name)
        tiles[name] = inference.choose_tile(model, 3000, 4000, cpu, budget=1 << 30)
        onnx_tiles[name] = inference.choose_tile(model, 3000, 4000, cpu, budget=1 << 30, backend="onnxruntime")
    assert onnx_tiles["system"] == onnx_tiles["mimalloc"]  # ONNX Runtime has its own arena
    area = {k: h * w for k, (h, w) in tiles.items()}
    per_pixel = inference.bytes_per_pixel(model)
    assert area["system"] * per_pixel <= 1 << 30 and area["mimalloc"] * per_pixel * inference.KEEPING_ALLOCATOR_MEMORY <= 1 << 30
    assert area["mimalloc"] < area["system"]
