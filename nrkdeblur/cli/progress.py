"""Progress and per-file reports of a batch on the terminal (pipeline.Report)."""

from __future__ import annotations

from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .common import console


class Reporter:
    """Rich progress over files and, for tiled photos, over tiles; silent with --quiet."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=quiet,
                            transient=False)
        self.files = self.tiles = None

    def __enter__(self) -> "Reporter":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def start(self, total: int) -> None:
        self.files = self.bar.add_task("photos", total=total)

    def file_done(self) -> None:
        self.bar.advance(self.files)

    def tile(self, done: int, total: int) -> None:
        if total <= 1:
            return
        if self.tiles is None:
            self.tiles = self.bar.add_task("  tiles", total=total)
        self.bar.update(self.tiles, completed=done, total=total)
        if done == total:
            self.bar.remove_task(self.tiles)
            self.tiles = None

    def note(self, message: str) -> None:
        if not self.quiet:
            console.print(message, markup=False, highlight=False)

    def error(self, path: Path, reason: str) -> None:
        console.print(f"error: {path}: {reason}", markup=False, highlight=False, style="red")
