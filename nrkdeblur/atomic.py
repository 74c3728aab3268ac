"""Writing files so that no reader ever sees half of one: each file is written under a
hidden temporary name in its folder, synced, and renamed onto its name; the temporary files
of a process that died are removed by the next run."""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import ImageError

_OS_REASONS = {
    errno.ENOENT: "no such file or folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOSPC: "disk full",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a folder",
    errno.ENOTDIR: "a parent of the path is not a folder",
    errno.ENAMETOOLONG: "file name too long",
    errno.EIO: "input/output error",
    getattr(errno, "EDQUOT", -1): "disk quota exceeded",
}


def os_reason(e: OSError) -> str:
    """A short human reason for an OSError, e.g. "disk full"."""
    return _OS_REASONS.get(e.errno) or (e.strerror or str(e)).lower()


NAME_MAX = 255  # the longest file name, in bytes, of the usual Linux and macOS file systems


def temp_path(path: Path) -> Path:
    """The hidden temporary name of `path` in its folder, .NAME.tmp-PID-XXXXXXXX, with NAME
    cut by whole characters so that it fits in NAME_MAX bytes whenever path's name does."""
    suffix = f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
    name = path.name
    while len(os.fsencode(f".{name}{suffix}")) > NAME_MAX and len(name) > 1:
        name = name[:-1]
    return path.with_name(f".{name}{suffix}")


def atomic_write(path: Path, encode: Callable[[BinaryIO], None]) -> None:
    """Write through encode(file) to a temporary file, fsync it, then rename it onto path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ImageError(f"{path}: cannot create folder {path.parent}: {os_reason(e)}") from e
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as f:
            encode(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ImageError(f"{path}: cannot write: {os_reason(e)}") from e
        raise
    _sync_folder(path.parent)


# atomic_write's temporary files: .NAME.tmp-PID-XXXXXXXX, PID the writing process
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.tmp-(?P<pid>[0-9]+)-[0-9a-f]{8}")


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove the temporary files atomic_write left in `folder` when its process died
    (killed with SIGKILL, a power cut); returns them. A file whose process is still
    running is never touched, nor is anything not named like atomic_write's files. The
    process ids are this machine's: on a folder shared by several machines, a file of a
    process running elsewhere under a pid that is free here would be removed."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    for entry in entries:
        m = _TEMP_NAME.fullmatch(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False) or _process_alive(int(m["pid"])):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _process_alive(pid: int) -> bool:
    """True if a process with this id runs here (or if that cannot be told)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would send a signal on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists but belongs to another user
        return True
    return True


def _sync_folder(folder: Path) -> None:
    """Best effort: flush the folder entry of a renamed file to disk (POSIX only)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
