"""`nrkdeblur eval`: PSNR / SSIM against sharp references and the defocus map against the
true blur, per image and per set, as tables (and CSV / JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..atomic import atomic_write
from .group import main
from .common import (LINEAR_HELP, check_protect_options, command, device_option, protect_option, resolve_device,
                     shipped_models, table_console, weights_option)


@command(main, name="eval", epilog=shipped_models())
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--pred", "pred_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Score existing predictions (matched by name) instead of running a method (one set only).")
@click.option("--method", type=click.Choice(["nrknet", "unsharp", "richardson-lucy", "identity"]), default="nrknet",
              show_default=True, help="What restores the blurry images (classical ones need scikit-image).")
@weights_option
@click.option("--strength", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
              help="For nrknet: how much of the network's change to keep (as for deblurring).")
@protect_option
@click.option("--linear", is_flag=True, help=LINEAR_HELP + " Applies to every --method (not to --pred).")
@click.option("--map-method", type=click.Choice(["network", "classical"]), default="network", show_default=True,
              help="Which defocus map is scored: nrknet's, or the classical Zhuo & Sim estimate from the "
                   "blurry image's edges (with any --method; needs scikit-image).")
@device_option()
@click.option("--per-image/--summary-only", default=True, show_default=True, help="Print each image's scores too.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the rows as CSV.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the rows as JSON.")
def evaluate_command(folders, pred_dir, method, weights, strength, protect, protect_keep, linear, map_method, device,
                     per_image, csv_path, json_path) -> None:
    """Measure PSNR and SSIM against sharp references, and the defocus map against the true blur.

    FOLDERS are evaluation sets, each a folder with blur/ and sharp/ (and radius/, the true
    blur radius maps written by `nrkdeblur render`), or one BLUR_DIR SHARP_DIR pair.
    Pairs are matched by file name (stem). Scores are on 8-bit RGB, data range 255, no
    border crop; SSIM is scikit-image's structural_similarity (7x7 window, channel_axis).
    Per set: mean PSNR and SSIM of input and output, the worst image's PSNR gain; on a
    set that has radius/, the PSNR gain over the pixels blurred by more than 8 px (their
    share and their gain, pooled; docs/restraint.md) and, with nrknet, the defocus map's
    Spearman rank correlation with the true radius on all and on textured pixels, its
    mean absolute error in pixels as it is and after one scale fitted per set, and the
    error of the best constant map (docs/map-scores.md). --map-method classical scores the Zhuo & Sim map instead.

    \b
    Examples:
      nrkdeblur eval benchmarks/kodak24-defocus benchmarks/out-of-recipe benchmarks/natural-dof
      nrkdeblur eval pairs/blur pairs/sharp --method richardson-lucy --csv rl.csv
      nrkdeblur eval blur/ sharp/ --pred my_outputs/ --json scores.json
      nrkdeblur eval pixel4/blur pixel4/sharp --linear    pairs stored without a tone curve
      nrkdeblur eval benchmarks/natural-dof --method identity --map-method classical
      nrkdeblur eval benchmarks/kodak24-defocus benchmarks/natural-dof --protect 8
      nrkdeblur eval benchmarks/natural-dof --protect 8 --protect-keep 0.5
    """
    from ..eval_sets import find_sets, restorer
    from ..evaluate import evaluate, mean_row, summarize, with_map

    if linear and pred_dir is not None:
        raise click.UsageError("--linear tells a method how to read the inputs; --pred scores finished outputs")
    if protect is not None and (method != "nrknet" or pred_dir is not None):
        raise click.UsageError("--protect reads nrknet's defocus map: it is for --method nrknet")
    check_protect_options(protect, protect_keep)
    sets = find_sets(list(folders))
    if pred_dir is not None and len(sets) > 1:
        raise click.UsageError("--pred scores one set at a time")
    title = describe_method(method, pred_dir, linear, strength, protect, protect_keep)
    title += ", classical map" if map_method == "classical" else ""
    restore = restorer(method, pred_dir, weights, str(resolve_device(device)), linear, strength, protect, protect_keep)
    if map_method == "classical":
        from ..zhuo_sim import defocus_map

        restore = with_map(restore, defocus_map)
    records, summaries = [], []
    for name, pairs in sets:
        rows = evaluate(pairs, restore)
        summaries.append(summarize(name, rows))
        rows.append(mean_row(rows))
        records.extend({**r._asdict(), "set": name} for r in rows)
        if per_image:
            write_rows(rows, f"{name}: {title}")
    write_summaries(summaries, title)
    write_records(records, csv_path, json_path)


def describe_method(method: str, pred_dir: Path | None, linear: bool, strength: float,
                    protect: float | None = None, protect_keep: float = 0.0) -> str:
    if pred_dir is not None:
        return f"predictions in {pred_dir}"
    return (method + (" --linear" if linear else "") + (f" --strength {strength:g}" if strength != 1 else "")
            + (f" --protect {protect:g}" if protect is not None else "")
            + (f" --protect-keep {protect_keep:g}" if protect_keep else ""))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# the defocus map's scores (docs/map-scores.md): Spearman on all / textured pixels, MAE px
# as it is, the set's scale s, MAE of s * map, MAE of the best constant map
MAP_COLUMNS = ["map rho", "rho tex", "MAE px", "scale", "fit MAE", "const MAE"]


def map_cells(r) -> list[str]:
    """A row's or a set summary's defocus-map scores, formatted for MAP_COLUMNS."""
    return [_fmt(r.map_spearman, ".3f"), _fmt(r.map_spearman_textured, ".3f"), _fmt(r.map_mae, ".2f"),
            _fmt(r.map_scale, ".2f"), _fmt(r.map_mae_fit, ".2f"), _fmt(r.map_mae_constant, ".2f")]


# over the pixels whose true radius exceeds evaluate.STRONG_BLUR (8 px): their share of the
# set's pixels, and the PSNR gain there (pooled over the set)
STRONG_COLUMNS = ["r>8 share", "r>8 gain"]


def strong_cells(m) -> list[str]:
    gain = None if m.strong_psnr_in is None else m.strong_psnr_out - m.strong_psnr_in
    return [_fmt(m.strong_share, ".1%"), _fmt(gain, "+.2f")]


def write_rows(rows, title: str) -> None:
    from rich.table import Table

    maps = any(r.map_spearman is not None or r.map_mae is not None for r in rows)
    table = Table(title=f"PSNR (dB) / SSIM: {title}")
    columns = ["image", "PSNR in", "PSNR out", "gain", "SSIM in", "SSIM out", "gain"] + (MAP_COLUMNS if maps else [])
    for col in columns:
        table.add_column(col, justify="left" if col == "image" else "right")
    for r in rows:
        cells = [r.name, f"{r.psnr_in:.2f}", f"{r.psnr_out:.2f}", f"{r.psnr_out - r.psnr_in:+.2f}",
                 f"{r.ssim_in:.4f}", f"{r.ssim_out:.4f}", f"{r.ssim_out - r.ssim_in:+.4f}"]
        if maps:
            cells += map_cells(r)
        table.add_row(*cells, style="bold" if r.name == "mean" else None)
    table_console().print(table)


def write_summaries(summaries, title: str) -> None:
    from rich.table import Table

    table = Table(title=f"Per set: {title}")
    widest = {"set": max(len(m.name) for m in summaries),  # names are never cut
              "worst image": max(len(m.worst_image) for m in summaries)}
    for col in ("set", "images", "PSNR in", "PSNR out", "gain", "worst gain", "worst image", "SSIM gain",
                *STRONG_COLUMNS, *MAP_COLUMNS):
        table.add_column(col, justify="left" if col in widest else "right", min_width=widest.get(col))
    for m in summaries:
        table.add_row(m.name, str(m.images), f"{m.psnr_in:.2f}", f"{m.psnr_out:.2f}", f"{m.psnr_out - m.psnr_in:+.2f}",
                      f"{m.worst_gain:+.2f}", m.worst_image, f"{m.ssim_out - m.ssim_in:+.4f}", *strong_cells(m),
                      *map_cells(m))
    table_console().print(table)


def write_records(records: list[dict], csv_path: Path | None, json_path: Path | None) -> None:
    if csv_path is not None:
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
        atomic_write(csv_path, lambda f: f.write(buffer.getvalue().encode()))
    if json_path is not None:
        atomic_write(json_path, lambda f: f.write(json.dumps(records, indent=1).encode()))
