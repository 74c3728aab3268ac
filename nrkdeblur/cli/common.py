"""What every command shares: the console, the exit codes, the one error boundary, signals,
and the options that several commands take (defined once here).

Errors a user can cause (errors.NrkdeblurError, and OSError from the file system) end in
one line: a SettingsError as a usage error (exit status 2), the others with exit status 1.
Anything else is a bug and keeps its traceback. `--debug`, on every command, shows the
traceback of user errors too.
"""

from __future__ import annotations

import functools
import inspect
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console

from ..errors import NrkdeblurError, SettingsError

console = Console(stderr=True, soft_wrap=True)  # one message, one line: never wrapped

EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
EXIT_HUNG_UP = 128 + 1  # 129: SIGHUP, which Windows does not have
EXIT_STATUS = f"""\b
Exit status:
  0    all done (or nothing left to do)
  1    some files failed (each is named, the others are done) or the run failed
  2    usage error: a bad option, argument or combination of them
  {EXIT_INTERRUPTED:<4} interrupted (Ctrl-C); files finished so far are complete, none half-written
  {EXIT_TERMINATED:<4} terminated by SIGTERM (kill, timeout, a scheduler), cleaned up as for Ctrl-C
  {EXIT_HUNG_UP:<4} its terminal was closed (SIGHUP), cleaned up as for Ctrl-C
"""
# the signals that end a command as Ctrl-C does: (exit status, what the last line says)
ENDINGS = {signal.SIGTERM: (EXIT_TERMINATED, "terminated (SIGTERM)")}
if hasattr(signal, "SIGHUP"):
    ENDINGS[signal.SIGHUP] = (EXIT_HUNG_UP, "hung up (SIGHUP: the terminal was closed)")

LINEAR_HELP = ("The pixels are linear light (sensor data, a linear TIFF), not sRGB: they are "
               "sRGB-encoded for the network and its output is decoded back to linear. Not for "
               "camera RAW files, which are developed to sRGB.")


PROTECT_HELP = ("Leave regions whose measured blur (the defocus map's RMS radius) exceeds R px as they "
                "are (or keep the share K of the change there: --protect-keep), deblurring fully below "
                "R - 2 with a smooth step between: for intended bokeh (8 suggested: docs/restraint.md).")


PROTECT_KEEP_HELP = ("With --protect: the share of the network's change kept above R instead of none "
                     "(0.5 halves it there), to soften rather than freeze the deblurring of strong blur.")


def check_protect_options(protect: float | None, protect_keep: float) -> None:
    """--protect-keep means nothing without --protect: a usage error, named as the user typed it."""
    if protect_keep and protect is None:
        raise click.UsageError("--protect-keep is the share of change kept above --protect's R: give --protect too")


def protect_option(f):
    """--protect R and --protect-keep K (restraint.py)."""
    f = click.option("--protect-keep", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0,
                     show_default=True, metavar="K", help=PROTECT_KEEP_HELP)(f)
    return click.option("--protect", type=click.FloatRange(0, min_open=True), metavar="R", help=PROTECT_HELP)(f)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that it unwinds as for Ctrl-C."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Handle SIGTERM and SIGHUP like SIGINT, and end with one line and exit status 130,
    143 or 129 (EXIT_STATUS).

    While the command runs, either signal raises Terminated (a KeyboardInterrupt) in the
    main thread, so every `finally` and atomic_write's clean-up runs before the exit.
    """
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # a signal ignored already stays ignored: `nohup nrkdeblur ...` outlives its terminal
        previous = {s: signal.signal(s, _raise_terminated) for s in ENDINGS
                    if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    except KeyboardInterrupt as e:
        code, line = ENDINGS[e.signum] if isinstance(e, Terminated) else (EXIT_INTERRUPTED, "interrupted")
        console.print(line, style="red", highlight=False)
        raise click.exceptions.Exit(code) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


@contextmanager
def error_boundary(debug: bool = False) -> Iterator[None]:
    """The one place where errors become what the user sees (module docstring)."""
    try:
        yield
    except SettingsError as e:
        if debug:
            raise
        raise click.UsageError(str(e)) from None
    except (NrkdeblurError, OSError) as e:
        if debug:
            raise
        raise click.ClickException(str(e)) from None


def command(group: click.Group, **settings):
    """Register a command on `group` with --debug and the error boundary around it; the
    command's function receives `debug` only if it takes it."""
    def wrap(f):
        takes_debug = "debug" in inspect.signature(f).parameters

        @functools.wraps(f)
        def run(*args, debug: bool, **kwargs):
            with error_boundary(debug):
                return f(*args, **kwargs, **({"debug": debug} if takes_debug else {}))

        run = click.option("--debug", is_flag=True, help="Show tracebacks for errors.")(run)
        return group.command(**settings)(run)

    return wrap


def device_option(default: str = "auto"):
    return click.option("--device", default=default, show_default=True,
                        help="auto (CUDA if available, else CPU), cpu, cuda, cuda:1, mps.")


def shipped_models() -> str:
    """The shipped models, one line each, for an epilog (kept as written by click's \\b)."""
    from ..weights import SHIPPED

    width = max(len(m.name) for m in SHIPPED)
    lines = "\n".join(f"  {m.name:<{width}}  {m.summary}" for m in SHIPPED)
    return f"\b\nShipped models (--model NAME):\n{lines}\n"


def weights_option(f):
    """--model NAME|FILE (alias --weights): a shipped model's name or a weights file, passed
    on as the file's path (None: the default model)."""
    def to_path(ctx, param, value):
        from ..weights import WeightsError, model_weights

        try:
            return model_weights(value)
        except WeightsError as e:
            raise click.BadParameter(str(e)) from None

    return click.option("--model", "--weights", "weights", metavar="NAME|FILE", callback=to_path,
                        help="A shipped model (listed below) or a .safetensors from `nrkdeblur train` "
                             "or `convert`. Default: default.")(f)


def resolve_device(name: str):
    """The device named by --device, checked to exist here (a bad one is a usage error)."""
    from ..inference import resolve_device as resolve

    try:
        return resolve(name)
    except SettingsError as e:
        raise click.BadParameter(str(e), param_hint="'--device'") from None


def table_console() -> Console:
    """stdout, as wide as a terminal, or wide enough for the tables when piped to a file."""
    out = Console()
    return out if out.is_terminal else Console(width=200)
