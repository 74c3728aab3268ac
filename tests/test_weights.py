"""Weights files: self-describing safetensors, clear errors, the authors' checkpoints."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nrkdeblur.config import NRKConfig, preset
from nrkdeblur.model import NRKNet
from nrkdeblur.weights import CONFIG_KEY, WeightsError, convert_official, load_model, save_weights

TINY = NRKConfig(width=4, num_atoms=5, atoms_per_channel=True, mixing="conv")
REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def test_saved_file_reloads_into_an_identical_model(tmp_path):
    torch.manual_seed(0)
    model = NRKNet(TINY)
    with torch.no_grad():  # move BatchNorm statistics away from their defaults too
        model.head.bn.running_mean.uniform_()
    path = tmp_path / "m.safetensors"
    save_weights(model, path)
    again = load_model(path)
    assert again.config == TINY
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(model.eval()(x).image, again(x).image)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def test_missing_config_is_an_error(tmp_path):
    path = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in NRKNet(TINY).state_dict().items()}, str(path))
    with pytest.raises(WeightsError, match="no nrkdeblur config"):
        load_model(path)


def test_config_that_does_not_fit_the_tensors_is_an_error(tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(NRKNet(TINY), path)
    state = load_file(str(path))
    wrong = dataclasses.replace(TINY, width=8)
    save_file(state, str(path), metadata={CONFIG_KEY: wrong.to_json()})
    with pytest.raises(WeightsError, match="do not match"):
        load_model(path)


@pytest.mark.parametrize("meta", ["not json", json.dumps({"width": 4, "colour": 2}), json.dumps([1, 2]),
                                  json.dumps({"mixing": "magic"})])
def test_broken_config_is_an_error(tmp_path, meta):
    path = tmp_path / "m.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={CONFIG_KEY: meta})
    with pytest.raises(WeightsError, match="invalid nrkdeblur config"):
        load_model(path)


def test_corrupt_and_missing_files_are_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError, match="not a valid safetensors"):
        load_model(bad)
    with pytest.raises(WeightsError, match="no such weights file"):
        load_model(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_weights_damaged_into_non_finite_values_are_refused_in_one_line(tmp_path, value):
    """A NaN written over a tensor's bytes, as a bad disk or copy would, turned every pixel black."""
    import struct

    from click.testing import CliRunner
    from PIL import Image

    from nrkdeblur.cli import main

    path = tmp_path / "w.safetensors"
    save_weights(NRKNet(TINY), path)
    data = bytearray(path.read_bytes())
    header_size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + header_size])
    begin = 8 + header_size + header["unet.enc2.0.conv1.weight"]["data_offsets"][0]
    data[begin + 40 : begin + 44] = struct.pack("<f", value)
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="unet.enc2.0.conv1.weight holds non-finite values"):
        load_model(path)
    Image.new("RGB", (24, 16), "grey").save(tmp_path / "in.png")
    r = CliRunner().invoke(main, [str(tmp_path / "in.png"), "--weights", str(path)])
    assert r.exit_code == 1 and "non-finite values (NaN or infinity); the file is damaged" in r.stderr
    assert "Traceback" not in r.output and not (tmp_path / "in_sharp.png").exists()


def test_foreign_checkpoint_is_refused(tmp_path):
    src = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, src)
    with pytest.raises(WeightsError, match="authors' layout"):
        convert_official(src, tmp_path / "o.safetensors", preset("paper"))


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="needs ../shared/reference (the authors' checkpoint format)")
def test_authors_checkpoint_converts_and_reproduces_their_output(tmp_path):
    out = tmp_path / "paper.safetensors"
    convert_official(REFERENCE / "NRKNet_official_format_random.pth", out, preset("paper"))
    model = load_model(out)
    io = torch.load(REFERENCE / "official_io.pt", weights_only=True)
    with torch.no_grad():
        z = model(io["input"]).image
    assert (z - io["output"]).abs().max() < 1e-4


def test_average_weights_script_writes_the_blend_of_two_files(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "average-weights.py"
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"{seed}.safetensors")
        save_weights(NRKNet(TINY), paths[-1])
    subprocess.run([sys.executable, str(script), *map(str, paths), "0.25", str(tmp_path / "avg.safetensors")],
                   check=True, capture_output=True)
    a, b = (load_model(p).state_dict() for p in paths)
    avg = load_model(tmp_path / "avg.safetensors").state_dict()
    for k, v in avg.items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.75 * a[k] + 0.25 * b[k], atol=1e-6), k
    save_weights(NRKNet(dataclasses.replace(TINY, width=8)), tmp_path / "wide.safetensors")
    other = subprocess.run([sys.executable, str(script), str(paths[0]), str(tmp_path / "wide.safetensors"), "0.5",
                            str(tmp_path / "x.safetensors")], capture_output=True, text=True)
    assert other.returncode != 0 and "different networks" in other.stderr
    assert not (tmp_path / "x.safetensors").exists()
