"""Which files to read and where to write them: pure path logic for the deblur command.

Rules (README, "Usage"):
- a file with `-o FILE` (a name with an extension) is written to FILE; several inputs,
  a folder, or an -o without extension (or an existing folder) write into `-o DIR`;
- a folder keeps its files' paths relative to it inside DIR (subfolders with -r);
- with no `-o`, each file is written beside itself as <stem>_sharp<ext>;
- the extension is kept unless a format is given; RAW files become 16-bit TIFF;
- an output that is also an input, or the output of an earlier job, is refused, and so
  is one that cannot be written (a format nothing writes, such as .gif; a parent that is
  a file; a name too long; a photo too large for the format; a map folder that cannot be
  made): before any work, so no photo is deblurred only to fail at the end;
- the tool's outputs are never its inputs: a re-run of the same command resumes;
- a path named twice is one input.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import NamedTuple

from .atomic import os_reason
from .imageio import RAW_EXTENSIONS, ImageError, check_folder, check_output, list_images

EXTENSION_OF_FORMAT = {"jpeg": ".jpg", "png": ".png", "tiff": ".tiff", "webp": ".webp", "bmp": ".bmp"}


class Job(NamedTuple):
    source: Path
    output: Path
    relative: Path  # the source's path relative to its input folder (its name for a file)


class Problem(NamedTuple):
    path: Path
    reason: str


def output_name(relative: Path, format: str | None, suffix: str = "") -> Path:
    ext = relative.suffix
    if format is not None:
        ext = EXTENSION_OF_FORMAT[format]
    elif ext.lower() in RAW_EXTENSIONS:
        ext = ".tiff"
    return relative.with_name(relative.stem + suffix + ext)


def plan(inputs: list[Path], output: Path | None, recursive: bool = False, format: str | None = None,
         map_dirs: tuple[Path, ...] = (), overwrite: bool = False) -> tuple[list[Job], list[Problem]]:
    """Expand inputs into jobs; inputs that cannot be used become problems. map_dirs: the
    folders the maps go to (their subfolders must be creatable; two inputs whose maps would
    share a name, a.jpg and a.png, are a problem). A path named twice counts once.

    The tool's own outputs are never inputs of the same command, so a re-run resumes: files
    under an -o folder inside an input folder are left out, and so is a file of an input
    folder that is where another input's output goes (`DIR -o DIR --format png` run twice),
    except with `overwrite`, where it stays an input that nothing may overwrite.
    """
    first: dict[Path, Path] = {}
    for path in inputs:
        first.setdefault(path.resolve(), path)
    inputs = list(first.values())
    one_file = len(inputs) == 1 and _is_file(inputs[0])
    to_file = (output is not None and one_file and not _is_dir(output) and output.suffix != ""
               and not str(output).endswith(("/", "\\")))
    sources, problems = _expand(inputs, recursive, None if to_file else output)
    if output is None and any(_is_dir(p) for p in inputs):
        return [], problems + [Problem(p, "a folder needs -o OUTPUT_DIR") for p in inputs if _is_dir(p)]
    targets = [_destination(src, rel, output, to_file, format) for src, rel, _ in sources]
    if not overwrite:
        earlier = _earlier_outputs(sources, targets)
        keep = [i for i in range(len(sources)) if i not in earlier]
        sources, targets = [sources[i] for i in keep], [targets[i] for i in keep]
    taken = {src.resolve() for src, _, _ in sources}
    jobs: list[Job] = []
    written: set[Path] = set()
    map_names: set[str] = set()
    for (src, rel, _), dst in zip(sources, targets):
        key = dst.resolve()
        try:
            check_output(dst, format, source=src)
        except ImageError as e:
            problems.append(Problem(src, f"output {e}"))
            continue
        try:
            for root in map_dirs:
                check_folder(root / rel.parent, root / rel.parent)
        except ImageError as e:
            problems.append(Problem(src, f"maps {e}"))
            continue
        if key in taken:
            problems.append(Problem(src, f"output {dst} would overwrite an input; choose another -o"))
        elif key in written:
            problems.append(Problem(src, f"output {dst} is already the output of another input"))
        elif map_dirs and rel.with_suffix("").as_posix() in map_names:
            problems.append(Problem(src, f"its maps would overwrite those of another input named {rel.stem}"))
        else:
            written.add(key)
            map_names.add(rel.with_suffix("").as_posix())
            jobs.append(Job(src, dst, rel))
    return jobs, problems


Source = tuple[Path, Path, bool]  # a photo file, its path relative to its input, whether the user named it


def _expand(inputs: list[Path], recursive: bool, output_dir: Path | None) -> tuple[list[Source], list[Problem]]:
    """(file, path relative to its input, named by the user) of every photo the inputs hold,
    each file once; files under output_dir, where it lies inside an input folder, are left out."""
    out = None if output_dir is None else output_dir.resolve()
    sources: dict[Path, Source] = {}
    problems = []
    for path in inputs:
        if _is_dir(path):
            root = path.resolve()
            found = [f for f in list_images(path, recursive)
                     if out is None or out == root or not f.resolve().is_relative_to(out)]
            if not found:
                hint = "" if recursive else " (use -r for subfolders)"
                problems.append(Problem(path, f"no images found{hint}"))
            for f in found:
                sources.setdefault(f.resolve(), (f, f.relative_to(path), False))
        elif _is_file(path):
            sources.setdefault(path.resolve(), (path, Path(path.name), True))
        else:
            problems.append(Problem(path, _not_a_photo(path)))
    return list(sources.values()), problems


def _earlier_outputs(sources: list[Source], targets: list[Path]) -> set[int]:
    """The sources found in input folders (not named) that are where another source's output goes."""
    producers: dict[Path, set[int]] = {}
    for i, dst in enumerate(targets):
        producers.setdefault(dst.resolve(), set()).add(i)
    return {i for i, (src, _, named) in enumerate(sources) if not named and producers.get(src.resolve(), set()) - {i}}


def _is_dir(path: Path) -> bool:
    """Path.is_dir, False where the path cannot even be looked at (a name too long)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _not_a_photo(path: Path) -> str:
    """Why a path that is neither a file nor a folder cannot be read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file or folder"
    except OSError as e:
        return f"cannot read: {os_reason(e)}"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), not a photo file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a photo file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a photo file"
    return "not a regular file"


def _destination(src: Path, rel: Path, output: Path | None, to_file: bool, format: str | None) -> Path:
    if to_file:
        return output if format is None else output.with_suffix(EXTENSION_OF_FORMAT[format])
    if output is None:
        return src.parent / output_name(Path(src.name), format, "_sharp")
    return output / output_name(rel, format)
