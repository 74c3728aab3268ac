"""`--engine ray` on a real Ray cluster of two nodes on this machine (ray.cluster_utils.Cluster,
one CPU each, started once for this file): the local engine's outputs, with default and
non-default options, and with workers killed mid-photo."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

import nrkdeblur  # noqa: E402
from nrkdeblur.cluster import ClusterError, Placement, place  # noqa: E402
from nrkdeblur.imageio import Photo, read_photo, write_photo  # noqa: E402
from nrkdeblur.pipeline import DeblurOptions  # noqa: E402
from test_cli import REPO, photo, run, weights  # noqa: E402,F401  (weights: the tiny model fixture)
from test_imageio import exif_with, read_exif  # noqa: E402

PACKAGE_ROOT = str(Path(nrkdeblur.__file__).parents[1])  # the workers import the nrkdeblur under test


def worker_hooks(marker_dir: str):
    """A worker process setup hook. In every Ray worker, the process exits (as a kill or the
    OOM killer would) on photos named poison*, always, and on flaky*, the first time only,
    as process_one starts; on midway*, the first time only, at the photo's second tile.
    Every tiled run and every run of an ONNX Runtime InferenceSession is written, one line each, to a
    file in marker_dir: "NAME tiled HxW OVERLAP" and "NAME onnxruntime"."""

    def hook():
        import nrkdeblur.inference as inference
        import nrkdeblur.pipeline as pipeline

        log, current = Path(marker_dir) / f"calls-{os.getpid()}.txt", [""]

        def note(line: str) -> None:
            with open(log, "a") as f:
                f.write(f"{current[0]} {line}\n")

        def first_time(name: str) -> bool:
            marker = Path(marker_dir) / name
            if marker.exists():
                return False
            marker.touch()
            return True

        real_one, real_tiled = pipeline.process_one, inference.run_tiled

        def process_one(model, job, options, report):
            current[0] = name = job.source.name
            if name.startswith("poison") or (name.startswith("flaky") and first_time(name)):
                os._exit(1)
            return real_one(model, job, options, report)

        def run_tiled(fn, x, tile, overlap, *args, **kwargs):
            note(f"tiled {tile[0]}x{tile[1]} {overlap}")
            tiles = []

            def each(t):
                tiles.append(t)
                if len(tiles) == 2 and current[0].startswith("midway") and first_time(current[0]):
                    os._exit(1)
                return fn(t)

            return real_tiled(each, x, tile, overlap, *args, **kwargs)

        pipeline.process_one, inference.run_tiled = process_one, run_tiled
        import onnxruntime

        session_run = onnxruntime.InferenceSession.run

        def run_session(self, *args, **kwargs):
            note("onnxruntime")
            return session_run(self, *args, **kwargs)

        onnxruntime.InferenceSession.run = run_session

    return hook


@pytest.fixture(scope="module", autouse=True)
def two_nodes(tmp_path_factory):
    """The cluster, its driver connected; yields the folder of the workers' notes."""
    markers = tmp_path_factory.mktemp("markers")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_worker_niceness", "0")  # as the engine's own local instance: not starved on a busy machine
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports, which look for a Prometheus server at exit
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        try:
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            workers_env = {"PYTHONPATH": PACKAGE_ROOT,
                           "NRKDEBLUR_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "onnx-cache")}
            ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR",
                     runtime_env={"worker_process_setup_hook": worker_hooks(str(markers)), "env_vars": workers_env})
            assert [n["Resources"]["CPU"] for n in ray.nodes() if n["Alive"]] == [1.0, 1.0]
            yield markers
        finally:
            ray.shutdown()
            cluster.shutdown()


def notes(markers: Path) -> dict[str, list[str]]:
    """What the workers noted, by photo name, in the order each worker ran it."""
    by_name: dict[str, list[str]] = {}
    for log in sorted(markers.glob("calls-*.txt")):
        for line in log.read_text().splitlines():
            name, what = line.split(" ", 1)
            by_name.setdefault(name, []).append(what)
    return by_name


@pytest.fixture(scope="module")
def shoot(tmp_path_factory):
    """Nested folders, 8- and 16-bit files, EXIF, and one corrupt JPEG."""
    root = tmp_path_factory.mktemp("shoot")
    (root / "day1" / "am").mkdir(parents=True)
    (root / "day2").mkdir()
    photo(root / "top.png", size=(40, 56))
    photo(root / "day1" / "a.jpg", size=(48, 40), seed=1, exif=exif_with(1), quality=95)
    photo(root / "day1" / "am" / "b.tif", size=(36, 52), seed=2)
    rng = np.random.default_rng(3)
    write_photo(root / "day2" / "deep.png", Photo(rng.random((32, 44, 3), dtype=np.float32), bit_depth=16))
    write_photo(root / "day2" / "deep.tiff", Photo(rng.random((30, 42, 3), dtype=np.float32), bit_depth=16))
    (root / "day2" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return root


@pytest.fixture(scope="module")
def both_engines(shoot, weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    local = run(shoot, "-o", out / "local", "-r", "--weights", weights)
    with pytest.MonkeyPatch.context() as m:
        m.chdir(out)  # a relative --report: the workers, whose folder is not the driver's, get it absolute
        remote = run(shoot, "-o", out / "ray", "-r", "--weights", weights, "--engine", "ray", "--workers", 2,
                     "--report", "ray-report.html")
    return out, local, remote


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_outputs_equal_the_local_engines_with_the_same_names(both_engines):
    out, local, remote = both_engines
    assert local.exit_code == remote.exit_code == 1
    names = files(out / "local")
    assert names == ["day1/a.jpg", "day1/am/b.tif", "day2/deep.png", "day2/deep.tiff", "top.png"]
    assert files(out / "ray") == names, remote.output  # and no temporary files
    for name in names:
        a, b = read_photo(out / "local" / name), read_photo(out / "ray" / name)
        assert a.pixels.shape == b.pixels.shape and a.bit_depth == b.bit_depth
        assert np.abs(a.pixels - b.pixels).max() <= 1 / 255 + 1e-6, name
    assert "5 done, 0 skipped, 1 failed" in remote.stderr


def test_the_corrupt_file_is_reported_by_name_and_the_exit_code_is_1(both_engines, shoot):
    _, local, remote = both_engines
    assert remote.exit_code == 1
    tail = remote.stderr.split("1 failed:")[1]
    assert f"{shoot / 'day2' / 'broken.jpg'}: " in tail
    assert tail.strip().splitlines() == local.stderr.split("1 failed:")[1].strip().splitlines()
    assert "Traceback" not in remote.output and remote.stdout == ""


def test_16_bit_stays_16_bit_and_exif_survives(both_engines):
    out, _, _ = both_engines
    for name in ("day2/deep.png", "day2/deep.tiff"):
        got = read_photo(out / "ray" / name)
        assert got.bit_depth == 16
        assert len(np.unique(np.round(got.pixels * 65535).astype(np.int64) % 257)) > 10, name
    with Image.open(out / "ray" / "day1" / "a.jpg") as im:
        exif = read_exif(im.info.get("exif"))
    assert exif[0x010F] == "Maker" and exif.get_ifd(0x8769)[0x829A] == 1 / 125


def test_the_driver_writes_the_report_from_what_the_workers_made(both_engines):
    """The workers write each photo's previews and record, with its time, beside the page
    (a record the driver has to make from the files has none); the driver writes the page."""
    out, _, _ = both_engines
    page = out / "ray-report.html"
    records = [json.loads(p.read_text()) for p in (out / "ray-report_files").glob("*.json")]
    assert len(records) == 5 and all(r["seconds"] > 0 for r in records)
    text = page.read_text()
    for name in ("day1/a.jpg", "day1/am/b.tif", "day2/deep.png", "day2/deep.tiff", "top.png"):
        assert f">{name}</a></h2>" in text
    assert re.search(r"<li><code>\.\./shoot\d*/day2/broken\.jpg</code>: \w+", text)
    urls = re.findall(r'(?:src|href)="([^"#][^"]*)"', text)
    assert len(urls) == 5 * 5 and all((out / unquote(u)).is_file() for u in urls)  # 3 previews, 2 links
    assert str(out) not in text


def test_a_rerun_skips_everything_before_sending_work(both_engines, shoot, weights):
    out, _, _ = both_engines
    before = {p: p.stat().st_mtime_ns for p in (out / "ray").rglob("*.*")}
    r = run(shoot, "-o", out / "ray", "-r", "--weights", weights, "--engine", "ray", "--workers", 2)
    assert "0 done, 5 skipped, 1 failed" in r.stderr and r.exit_code == 1
    assert {p: p.stat().st_mtime_ns for p in (out / "ray").rglob("*.*")} == before


def test_a_dead_worker_costs_only_its_photo(tmp_path, weights):
    """A worker process that exits mid-photo is restarted and the photo tried again; one
    that dies on every try is reported by name, and the rest of the batch is done."""
    (tmp_path / "in").mkdir()
    for seed, name in enumerate(("a.png", "flaky.png", "b.png", "poison.png", "c.png")):
        photo(tmp_path / "in" / name, seed=seed)
    r = run(tmp_path / "in", "-o", tmp_path / "out", "--weights", weights, "--engine", "ray", "--workers", 2)
    assert r.exit_code == 1, r.output
    assert files(tmp_path / "out") == ["a.png", "b.png", "c.png", "flaky.png"]
    assert "4 done, 0 skipped, 1 failed" in r.stderr
    tail = r.stderr.split("1 failed:")[1]
    assert f"{tmp_path / 'in' / 'poison.png'}: its worker died 3 times" in tail
    assert "Traceback" not in r.output and r.stdout == ""


def test_non_default_options_and_a_worker_killed_mid_photo_give_the_local_engines_outputs(tmp_path, two_nodes):
    """Every option reaches the workers: the outputs match the local engine's (format,
    JPEG tables, pixels), and the workers' notes show each photo tiled as asked and run
    by ONNX Runtime once per tile; the photo whose worker died at its second tile is run
    again whole on a new worker."""
    from test_inference import PLAIN, acting

    from nrkdeblur.weights import save_weights

    save_weights(acting(PLAIN), tmp_path / "w.safetensors")
    (tmp_path / "in").mkdir()
    for seed, name in enumerate(("a.png", "midway.png", "c.png")):
        photo(tmp_path / "in" / name, size=(64, 800), seed=seed)  # three tiles of 384 with an overlap of 64
    options = ["--format", "jpeg", "--quality", 60, "--tile", 384, "--tile-overlap", 64, "--strength", 0.5,
               "--linear", "--backend", "onnxruntime", "--weights", tmp_path / "w.safetensors"]
    local = run(tmp_path / "in", "-o", tmp_path / "local", *options)
    remote = run(tmp_path / "in", "-o", tmp_path / "ray", *options, "--engine", "ray", "--workers", 2)
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert "3 done, 0 skipped, 0 failed" in remote.stderr
    assert files(tmp_path / "ray") == files(tmp_path / "local") == ["a.jpg", "c.jpg", "midway.jpg"]
    for name in files(tmp_path / "local"):
        with Image.open(tmp_path / "local" / name) as a, Image.open(tmp_path / "ray" / name) as b:
            assert a.format == b.format == "JPEG" and a.quantization == b.quantization  # --quality 60
            assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 2, name
    seen = notes(two_nodes)
    for name in ("a.png", "c.png"):
        assert seen[name] == ["tiled 384x384 64"] + ["onnxruntime"] * 3
    assert sorted(seen["midway.png"]) == ["onnxruntime"] * 4 + ["tiled 384x384 64"] * 2  # 1 tile, then 3


def test_a_wrong_ray_address_fails_within_seconds_naming_it(tmp_path, weights):
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "nrkdeblur", str(photo(tmp_path / "in.png")), "--weights", str(weights),
                        "--engine", "ray", "--ray-address", "127.0.0.1:1"], capture_output=True, text=True,
                       cwd=REPO, timeout=60, env={**os.environ, "PYTHONPATH": PACKAGE_ROOT})
    assert r.returncode == 1 and "cannot join the Ray cluster at 127.0.0.1:1: connection refused" in r.stderr, r.stderr
    assert time.monotonic() - start < 30 and "Traceback" not in r.stderr
    assert not (tmp_path / "in_sharp.png").exists()


def test_workers_are_sized_to_the_cluster():
    cpu, auto = DeblurOptions.of(device="cpu"), DeblurOptions()
    assert place([2], 0, auto, 10) == Placement(1, 2, 0, "cpu")
    assert place([2], 0, DeblurOptions.of(workers=2), 10) == Placement(2, 1, 0, "cpu")
    assert place([8, 8], 0, DeblurOptions.of(workers=3), 10) == Placement(3, 4, 0, "cpu")  # 5 CPUs each would not fit
    assert place([16], 0, auto, 3) == Placement(3, 4, 0, "cpu")  # never more actors than photos
    assert place([16, 16], 4, auto, 100) == Placement(4, 1, 1, "cuda")
    assert place([16], 4, cpu, 100) == Placement(4, 4, 0, "cpu")
    with pytest.raises(ClusterError, match="has 2 CPUs"):
        place([2], 0, DeblurOptions.of(workers=3), 10)
    with pytest.raises(ClusterError, match="no GPU"):
        place([2], 0, DeblurOptions.of(device="cuda"), 10)
    with pytest.raises(ClusterError, match="has 4 GPUs"):
        place([16], 4, DeblurOptions.of(workers=5), 10)


def test_workers_without_the_ray_engine_is_a_usage_error(tmp_path, weights):
    r = run(photo(tmp_path / "in.png"), "--workers", 2, "--weights", weights)
    assert r.exit_code == 2 and "--workers is for --engine ray" in r.stderr


def test_mask_and_protect_reach_the_workers(tmp_path, weights, monkeypatch):
    """A relative --mask (the workers get it absolute) and --protect: Ray writes what the local
    engine writes, and both differ from the plain output and from the input."""
    (tmp_path / "in").mkdir()
    for seed, name in enumerate(("a.png", "b.png")):
        photo(tmp_path / "in" / name, size=(40, 56), seed=seed)
    ramp = np.tile(np.linspace(0, 255, 56).astype(np.uint8), (40, 1))
    Image.fromarray(ramp).save(tmp_path / "mask.png")
    monkeypatch.chdir(tmp_path)
    common = ["--weights", weights, "--protect", 5, "--mask", "mask.png"]
    assert run("in", "-o", "local", *common).exit_code == 0
    r = run("in", "-o", "ray", *common, "--engine", "ray", "--workers", 1)
    assert r.exit_code == 0, r.output
    assert run("in", "-o", "plain", "--weights", weights).exit_code == 0
    for name in ("a.png", "b.png"):
        local, remote = (np.asarray(Image.open(tmp_path / d / name), dtype=int) for d in ("local", "ray"))
        plain, source = (np.asarray(Image.open(tmp_path / d / name), dtype=int) for d in ("plain", "in"))
        assert np.abs(remote - local).max() <= 1  # threads differ: float rounding
        assert np.abs(local - plain).mean() > 1 and np.abs(local - source).mean() > 1
        assert np.abs(local[:, 0] - source[:, 0]).max() <= 1  # black column of the mask: the input
