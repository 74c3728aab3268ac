"""The `nrkdeblur` command: a small group, one module per command, each a few lines over
the library (parse, call, report). This package is the only one that imports click and rich.

Exit status (common.EXIT_STATUS, shown in `--help`): 0 all done, 1 some files failed or
the run failed, 2 usage error, 130 interrupted with Ctrl-C (SIGINT), 143 terminated with
SIGTERM (kill, timeout, a batch scheduler): 128 + the signal's number, what a shell
reports for a process the signal ends. SIGTERM is handled like SIGINT, so an interrupted
write leaves no temporary file behind.
"""

from __future__ import annotations

from . import bench, convert, deblur, evaluate, export, render, train  # noqa: F401  (they register themselves)
from .group import main

__all__ = ["main"]
