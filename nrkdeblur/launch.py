"""The `nrkdeblur` console command: the allocator first (allocator.py), then the CLI.

The relaunch happens here, before the CLI imports torch, so that it costs only the
interpreter's start (about 0.1 s)."""

from __future__ import annotations


def main() -> None:
    from .allocator import switch_on

    switch_on()
    from .cli import main as cli

    cli()
