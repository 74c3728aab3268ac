"""Which files to read and where to write them: pure path logic for the deblur command.

Rules (README, "Usage"):
- a file with `-o FILE` (a name with an extension) is written to FILE; several inputs,
  a folder, or an -o without extension (or an existing folder) write into `-o DIR`;
- a folder keeps its files' paths relative to it inside DIR (subfolders with -r);
- with no `-o`, each file is written beside itself as <stem>_sharp<ext>;
- the extension is kept unless a format is given; RAW files become 16-bit TIFF;
- an output that is also an input, or the output of an earlier job, is refused, and so
  is one that cannot be written (a format nothing writes, such as .gif; a parent that is
  a file): before any work, so no photo is deblurred only to fail at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .imageio import RAW_EXTENSIONS, ImageError, check_output, list_images

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


def plan(inputs: list[Path], output: Path | None, recursive: bool = False,
         format: str | None = None, maps: bool = False) -> tuple[list[Job], list[Problem]]:
    """Expand inputs into jobs; inputs that cannot be used become problems. With `maps`,
    two inputs whose maps would share a name (a.jpg, a.png) are a problem too."""
    jobs: list[Job] = []
    problems: list[Problem] = []
    sources: list[tuple[Path, Path]] = []  # (file, relative)
    for path in inputs:
        if path.is_dir():
            found = list_images(path, recursive)
            if not found:
                hint = "" if recursive else " (use -r for subfolders)"
                problems.append(Problem(path, f"no images found{hint}"))
            sources.extend((f, f.relative_to(path)) for f in found)
        elif path.is_file():
            sources.append((path, Path(path.name)))
        else:
            problems.append(Problem(path, "no such file or folder"))

    one_file = len(inputs) == 1 and inputs[0].is_file()
    to_file = (output is not None and one_file and not output.is_dir() and output.suffix != ""
               and not str(output).endswith(("/", "\\")))
    if output is None and any(p.is_dir() for p in inputs):
        return [], problems + [Problem(p, "a folder needs -o OUTPUT_DIR") for p in inputs if p.is_dir()]

    taken = {src.resolve() for src, _ in sources}
    written: set[Path] = set()
    map_names: set[str] = set()
    for src, rel in sources:
        if to_file:
            dst = output if format is None else output.with_suffix(EXTENSION_OF_FORMAT[format])
        elif output is None:
            dst = src.parent / output_name(Path(src.name), format, "_sharp")
        else:
            dst = output / output_name(rel, format)
        key = dst.resolve()
        try:
            check_output(dst, format)
        except ImageError as e:
            problems.append(Problem(src, f"output {e}"))
            continue
        if key in taken:
            problems.append(Problem(src, f"output {dst} would overwrite an input; choose another -o"))
        elif key in written:
            problems.append(Problem(src, f"output {dst} is already the output of another input"))
        elif maps and rel.with_suffix("").as_posix() in map_names:
            problems.append(Problem(src, f"its maps would overwrite those of another input named {rel.stem}"))
        else:
            written.add(key)
            map_names.add(rel.with_suffix("").as_posix())
            jobs.append(Job(src, dst, rel))
    return jobs, problems
