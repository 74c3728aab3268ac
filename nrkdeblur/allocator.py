"""A memory allocator that keeps freed pages, switched on when the command starts.

Each tile's intermediates are blocks of tens to hundreds of MB. glibc's malloc serves
blocks that large with mmap and returns them to the kernel on free, so the next tile's
blocks are fresh pages the kernel must zero-fill on first touch: about a third of a 12 MP
photo's time (docs/performance-notes.md). An allocator that keeps freed pages mapped hands
the same pages to the next tile instead.

The one used is mimalloc (D. Leijen, B. Zorn, L. de Moura, "Mimalloc: Free List Sharding in
Action", APLAS 2019), from the `cmeel-mimalloc` wheel, a dependency on Linux. A process's
allocator can only be chosen before it starts, so the `nrkdeblur` command (launch.py)
starts itself once more with the library in LD_PRELOAD and mimalloc's purge delay set to
PURGE_DELAY_MS, before importing anything heavy. The new process puts LD_PRELOAD back as
the user had it, so programs it starts run as they would have.

It falls back to the system allocator, running exactly as before, when:
- NRKDEBLUR_ALLOCATOR=system is set;
- the platform is not Linux, or the library is not installed;
- the relaunch itself fails (then nothing has changed: the command goes on in-process).

Only the command line relaunches: `import nrkdeblur` (the Python API) changes nothing in the
caller's process, whose allocator is the caller's to choose.
"""

from __future__ import annotations

import functools
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping

CHOICE = "NRKDEBLUR_ALLOCATOR"  # "mimalloc" (the default) or "system"
MARK = "NRKDEBLUR_PRELOAD_WAS"  # set in the relaunched process: the user's own LD_PRELOAD
PURGE_DELAY_MS = "-1"  # never give freed pages back while the command runs (measured: README)
DISTRIBUTION = "cmeel-mimalloc"


def library() -> Path | None:
    """The mimalloc shared library the cmeel-mimalloc wheel installed, or None."""
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.startswith("libmimalloc.so"):
            path = Path(file.locate()).resolve()
            if path.is_file():
                return path
    return None


def relaunch_env(env: Mapping[str, str], lib: Path) -> dict[str, str]:
    """The environment of the relaunched command: the library first in LD_PRELOAD, the
    user's LD_PRELOAD kept in MARK to be put back, and the purge delay unless set."""
    new = dict(env)
    before = env.get("LD_PRELOAD", "")
    new[MARK] = before
    new["LD_PRELOAD"] = f"{lib} {before}".strip()
    new.setdefault("MIMALLOC_PURGE_DELAY", PURGE_DELAY_MS)
    return new


def wanted(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether this process should relaunch itself with the allocator."""
    return platform.startswith("linux") and env.get(CHOICE, "mimalloc") != "system" and MARK not in env


def switch_on(argv: list[str] | None = None, env: Mapping[str, str] | None = None,
              execve: Callable[..., None] = os.execve) -> None:
    """Relaunch this command with the allocator when wanted and installed (never returns
    then); in the relaunched process, put LD_PRELOAD back; otherwise do nothing."""
    env = os.environ if env is None else env
    if MARK in env:
        restore_preload()
        return
    lib = library() if wanted(env) else None
    if lib is None:
        return
    argv = list(sys.orig_argv if argv is None else argv)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        execve(sys.executable, [sys.executable, *argv[1:]], relaunch_env(env, lib))
    except OSError:
        return  # the system allocator, as before


def restore_preload() -> None:
    """Put the user's LD_PRELOAD back in this process's environment (children inherit it)."""
    before = os.environ.pop(MARK, "")
    if before:
        os.environ["LD_PRELOAD"] = before
    else:
        os.environ.pop("LD_PRELOAD", None)


@functools.cache
def active() -> str:
    """The allocator this process runs with: "mimalloc" when the library is mapped, else "system"."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "mimalloc" if "libmimalloc" in maps else "system"
