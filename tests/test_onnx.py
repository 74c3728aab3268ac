"""ONNX export and the ONNX Runtime backend: checker, metadata, agreement with torch, the
cache, the command line, tiling."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from nrkdeblur.cli import main  # noqa: E402
from nrkdeblur.config import NRKConfig  # noqa: E402
from nrkdeblur.export import CACHE_ENV, ExportOptions, cached_onnx, export_onnx, read_onnx_config  # noqa: E402
from nrkdeblur.forward import forward_maps  # noqa: E402
from nrkdeblur.inference import InferenceOptions, deblur  # noqa: E402
from nrkdeblur.model import NRKNet  # noqa: E402
from nrkdeblur.runtime import resolve_backend, runner_for  # noqa: E402
from nrkdeblur.weights import CONFIG_KEY, save_weights  # noqa: E402

TINY = NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum", identity_start=False)
MIXED = NRKConfig(width=4, num_atoms=4, atoms_per_channel=True, symmetric_taps=False, mixing="conv",
                  head_batchnorm=True)  # asymmetric taps: the exported convolution must not mirror them
FOCUS = NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum", identity_start=False, focus_width=3)
MAPPED = NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum", identity_start=False, focus_width=3,
                   map_width=4)  # the defocus map from a map head


def tiny_model(config=TINY, seed=0):
    torch.manual_seed(seed)
    model = NRKNet(config).eval()
    if model.focus is not None:  # a head that acts, not the zero start
        with torch.no_grad():
            for p in model.focus.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(tiny_model(), path)
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_export_command_writes_a_checked_file_with_the_config(tmp_path, weights):
    out = tmp_path / "tiny.onnx"
    r = run("export", weights, "-o", out, "--defocus-map")
    assert r.exit_code == 0, r.output
    onnx.checker.check_model(str(out), full_check=True)
    meta = read_onnx_config(out)
    assert NRKConfig.from_json(meta[CONFIG_KEY]) == TINY
    names = [o.name for o in onnx.load(str(out)).graph.output]
    assert names == ["image", "defocus_map"]
    assert run("export", weights, "-o", weights).exit_code != 0  # never over the weights


@pytest.mark.parametrize("config, maps", [(TINY, False), (MIXED, True), (FOCUS, True), (MAPPED, True)])
def test_onnxruntime_matches_torch_on_odd_sizes(tmp_path, config, maps):
    model = tiny_model(config)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, ExportOptions(defocus_map=maps, coefficients=maps))
    graph = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in [(67, 45), (130, 98)]:
        x = torch.rand(1, 3, h, w)
        with torch.inference_mode():
            expected = forward_maps(model, x, maps, maps).numpy()
        got = np.concatenate(graph.run(None, {"input": x.numpy()}), axis=1)
        assert got.shape == expected.shape == (1, 3 + (1 + 3 * config.num_atoms) * maps, h, w)
        assert np.abs(got - expected).max() < 1e-4


def test_cli_onnxruntime_output_matches_torch_within_one_level(tmp_path, weights):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (45, 67, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    outs = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.png"
        r = run(tmp_path / "in.png", "-o", out, "--backend", backend, "-q", "--weights", weights)
        assert r.exit_code == 0, r.output
        outs[backend] = np.asarray(Image.open(out)).astype(int)
    assert np.abs(outs["torch"] - outs["onnxruntime"]).max() <= 1


def test_the_cache_exports_once_and_one_runner_serves_every_call(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    model = tiny_model(seed=1)
    path, exported = cached_onnx(model)
    assert exported and path.parent == tmp_path / "cache"
    stamp = path.stat().st_mtime_ns
    again, exported = cached_onnx(model)
    assert again == path and not exported and path.stat().st_mtime_ns == stamp
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    other, exported = cached_onnx(tiny_model(seed=2))  # other weights: another file
    assert exported and other != path
    first = runner_for(model, "onnxruntime", False, False, False)
    assert runner_for(model, "onnxruntime", False, False, False) is first
    assert resolve_backend("auto", torch.device("cpu")) == "torch"  # measured faster end to end
    with pytest.raises(ValueError):
        resolve_backend("tensorrt", torch.device("cpu"))


def test_tiled_equals_untiled_on_onnxruntime():
    model = tiny_model(seed=3)
    pixels = np.random.default_rng(0).random((20, 25, 3), dtype=np.float32).repeat(8, 0).repeat(8, 1)  # 160 x 200
    whole = deblur(model, pixels, InferenceOptions(backend="onnxruntime")).image
    tiled = deblur(model, pixels, InferenceOptions(tile=96, overlap=48, backend="onnxruntime")).image
    torch_whole = deblur(model, pixels, InferenceOptions(backend="torch")).image
    assert np.abs(np.clip(tiled, 0, 1) - np.clip(whole, 0, 1)).max() < 1 / 255
    assert np.abs(whole - torch_whole).max() < 1e-4


def test_onnxruntime_on_cuda_without_its_cuda_build_is_refused(monkeypatch):
    """ONNX Runtime's CPU build would run a --device cuda request on the CPU, silently."""
    from nrkdeblur.errors import SettingsError
    from nrkdeblur.runtime import resolve_backend

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(SettingsError, match="onnxruntime-gpu"):
        resolve_backend("onnxruntime", torch.device("cuda"))
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert resolve_backend("onnxruntime", torch.device("cuda")) == "onnxruntime"


def test_the_backend_option_runs_onnxruntime_once_per_tile_and_torch_not_at_all(tmp_path, weights, monkeypatch):
    """The agreement with torch above would hold if torch ran instead: count who runs."""
    import nrkdeblur.runtime as runtime

    graph_runs, torch_tiles = [], []
    session_run, torch_forward = ort.InferenceSession.run, runtime.forward_maps
    monkeypatch.setattr(ort.InferenceSession, "run", lambda self, *a, **k: graph_runs.append(1) or session_run(self, *a, **k))
    monkeypatch.setattr(runtime, "forward_maps", lambda *a, **k: torch_tiles.append(1) or torch_forward(*a, **k))
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 800, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    tiles = ["--tile", 384, "--tile-overlap", 64]  # three tiles across
    r = run(tmp_path / "in.png", "-o", tmp_path / "ort.png", "--backend", "onnxruntime", *tiles, "--weights", weights)
    assert r.exit_code == 0, r.output
    assert len(graph_runs) == 3 and torch_tiles == []
    r = run(tmp_path / "in.png", "-o", tmp_path / "torch.png", "--backend", "torch", *tiles, "--weights", weights)
    assert r.exit_code == 0 and len(graph_runs) == 3 and len(torch_tiles) == 3


def test_the_cache_keeps_one_export_per_set_of_outputs():
    """An export without the map must not serve a later call that asks for it."""
    model = tiny_model(FOCUS, seed=4)
    plain, _ = cached_onnx(model)
    with_map, exported = cached_onnx(model, ExportOptions(defocus_map=True))
    assert exported and with_map != plain
    assert [o.name for o in onnx.load(str(with_map)).graph.output] == ["image", "defocus_map"]
    pixels = np.random.default_rng(2).random((40, 56, 3), dtype=np.float32)
    deblur(model, pixels, InferenceOptions(backend="onnxruntime"))  # the image alone first
    got = deblur(model, pixels, InferenceOptions(backend="onnxruntime"), defocus_map=True)
    want = deblur(model, pixels, InferenceOptions(backend="torch"), defocus_map=True)
    assert np.abs(got.defocus_map - want.defocus_map).max() < 1e-4 and np.ptp(want.defocus_map) > 0.1


def test_a_damaged_cached_export_is_exported_again(tmp_path, weights, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (45, 67, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    command = [tmp_path / "in.png", "--backend", "onnxruntime", "-q", "--weights", weights, "-o"]
    assert run(*command, tmp_path / "first.png").exit_code == 0
    (cached,) = (tmp_path / "cache").iterdir()
    whole = cached.read_bytes()
    cached.write_bytes(whole[: len(whole) // 2])  # as a full disk or a killed copy leaves it
    r = run(*command, tmp_path / "again.png")
    assert r.exit_code == 0, r.output
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cached.name] and cached.stat().st_size == len(whole)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), np.asarray(Image.open(tmp_path / "first.png")))
