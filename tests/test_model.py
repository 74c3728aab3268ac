"""NRKNet: presets, sizes, identity start, the Neumann fusion (eq. 10-11)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from nrkdeblur.config import PRESETS, NRKConfig, preset
from nrkdeblur.model import NRKNet, count_parameters, pyramid

TINY = NRKConfig(width=4, num_atoms=5, atoms_per_channel=False, mixing="sum", identity_start=True)


@pytest.mark.parametrize("name, count", [("paper", 6_094_107), ("cpu", 443_578)])
def test_presets_have_their_exact_parameter_counts(name, count):
    assert count_parameters(NRKNet(preset(name))) == count  # paper: the authors' 6.1 M


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_keeps_odd_shapes(name):
    torch.manual_seed(0)
    model = NRKNet(preset(name)).eval()
    x = torch.rand(1, 3, 97, 131)
    with torch.no_grad():
        out = model(x, return_gamma=True)
    assert out.image.shape == x.shape
    J = preset(name).num_atoms
    assert [tuple(g.shape) for g in out.gammas] == [(1, J, 25, 33), (1, J, 49, 66), (1, J, 97, 131)]
    assert torch.isfinite(out.image).all()


def test_tiny_sizes_are_padded_and_cropped_back():
    model = NRKNet(TINY).eval()
    for shape in [(1, 3, 5, 7), (2, 3, 16, 16), (1, 3, 33, 17)]:
        with torch.no_grad():
            assert model(torch.rand(shape)).image.shape == shape


def test_identity_start_returns_the_input_exactly():
    torch.manual_seed(0)
    model = NRKNet(preset("cpu"))
    x, y = torch.rand(2, 3, 64, 48), torch.rand(2, 3, 64, 48)
    out = model(x, y)  # training mode
    assert torch.equal(out.image, x)
    for d, xt in zip(out.reblurred, out.sharp):  # D = I
        assert torch.allclose(d, xt, atol=1e-6)
    # and the head still learns: gradients reach the ConvLSTM's candidate gate
    (out.image - y).pow(2).mean().backward()
    assert model.head.lstm.conv.weight.grad.abs().sum() > 0


def test_output_is_the_neumann_fusion_of_eq_10():
    """Z = Y + (I-D1)Y + up2((I-D2)^2 Y2) + up4((I-D3)^3 Y3), rebuilt from the gammas."""
    torch.manual_seed(1)
    model = NRKNet(dataclasses.replace(TINY, identity_start=False)).eval()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        out = model(x, return_gamma=True)
        ys = pyramid(x, 3)
        terms = []
        for t, (y, g) in enumerate(zip(ys, out.gammas)):
            for _ in range(3 - t):
                y = y - model.blur(y, g)
            terms.append(y)
        up = lambda z, s: F.interpolate(z, scale_factor=s, mode="bilinear")  # noqa: E731
        z = x + terms[2] + up(terms[1], 2) + up(terms[0], 4)
    assert torch.allclose(out.image, z, atol=1e-6)


def test_training_and_inference_share_one_forward():
    torch.manual_seed(2)
    model = NRKNet(dataclasses.replace(TINY, identity_start=False)).eval()
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x), model(x, y)
    assert torch.equal(a.image, b.image)
    assert len(b.scale_outputs) == len(b.reblurred) == 3
    assert a.scale_outputs is None and a.reblurred is None
    # the finest Neumann sum of order 1 is Y + (I - D1) Y
    assert b.scale_outputs[-1].shape == x.shape


def test_config_rejects_unknown_mixing():
    with pytest.raises(ValueError):
        NRKConfig(mixing="magic")


@pytest.mark.parametrize("shape", [(9, 200, 3), (5, 7, 1), (33, 17, 3)])
def test_maps_of_thin_and_tiny_photos(shape):
    import numpy as np

    from nrkdeblur.inference import deblur

    model = NRKNet(dataclasses.replace(TINY, identity_start=False)).eval()
    out = deblur(model, np.random.default_rng(0).random(shape, dtype=np.float32), defocus_map=True, coefficients=True)
    assert out.image.shape == shape and out.defocus_map.shape == shape[:2]
    H, W = shape[:2]
    assert [g.shape for g in out.gammas] == [(TINY.num_atoms, -(-H // f), -(-W // f)) for f in (4, 2, 1)]


def test_channels_last_inference_gives_the_same_numbers():
    torch.manual_seed(0)
    model = NRKNet(dataclasses.replace(TINY, identity_start=False)).eval()
    x = torch.rand(1, 3, 40, 56)
    with torch.inference_mode():
        want = model(x).image
        got = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last)).image
    assert (got - want).abs().max() < 1e-5


def test_the_focus_head_blends_input_and_network_and_measures_the_blur():
    """Z' = Y + keep (Z - Y) with keep = 2 sigmoid(c) in (0, 2), and the map relu(r_K + delta):
    (delta, c) computed here from the head's weights as its docstring defines them, never by
    calling the head."""
    torch.manual_seed(3)
    config = dataclasses.replace(TINY, identity_start=False, focus_width=6)
    model = NRKNet(config).eval()
    head = model.focus

    def conv3x3(x, conv):  # the head's convolutions reflect-pad by one pixel
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), conv.weight, conv.bias)

    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.3 * torch.randn_like(p))
        x = torch.rand(1, 3, 32, 48)
        feats = []  # the U-Net's features per scale, coarse to fine
        hook = model.unet.register_forward_hook(lambda m, i, o: feats.append(o))
        out = model(x, return_gamma=True)
        hook.remove()
        plain = NRKNet(dataclasses.replace(config, focus_width=0)).eval()
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("focus.")})
        z = plain(x).image
        squares = model.kernel_squares(out.gammas)  # q_t, input px^2
        r_k = model.kernel_radius(out.gammas, x.shape[-2:])
        h = F.conv2d(torch.log(1e-5 + (z - x).square().mean(1, keepdim=True)), head.change.weight, head.change.bias)
        for t, (f, q) in enumerate(zip(feats, squares)):
            scale = F.conv2d(torch.cat([f, torch.log1p(q)], dim=1), head.project[t].weight, head.project[t].bias)
            h = h + F.interpolate(scale, scale_factor=2.0 ** (2 - t), mode="bilinear")
        for conv in head.body:
            h = conv3x3(F.relu(h), conv)
        delta, c = conv3x3(F.relu(h), head.out).split(1, dim=1)
        keep = 2 * torch.sigmoid(c)
    assert 0 < keep.min() < 0.99 and 1.01 < keep.max() < 2  # it holds back somewhere, goes further elsewhere
    torch.testing.assert_close(out.image, x + keep * (z - x), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.radius, F.relu(r_k + delta), atol=1e-4, rtol=1e-5)
    assert (delta < -r_k).any() and (delta.abs() > 0.1).any()  # the relu and delta both matter here
    assert torch.equal(model.defocus_map(out, x.shape[-2:]), out.radius)


def test_the_focus_head_still_learns_where_it_keeps_more_than_the_change():
    """With c > 0 everywhere (keep > 1), the loss still moves c: a head pushed there early
    can come back and learn to hold back."""
    torch.manual_seed(5)
    model = NRKNet(dataclasses.replace(TINY, identity_start=False, focus_width=4))
    with torch.no_grad():
        model.focus.out.bias[1] = 2.0
    x, target = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    (model(x).image - target).square().mean().backward()
    assert model.focus.out.bias.grad[1].abs() > 1e-6


def test_a_new_focus_head_changes_nothing():
    torch.manual_seed(4)
    plain = NRKNet(dataclasses.replace(TINY, identity_start=False)).eval()
    with_head = NRKNet(dataclasses.replace(plain.config, focus_width=5)).eval()
    from nrkdeblur.widen import load_widened

    load_widened(with_head, plain)
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        a, b = plain(x, return_gamma=True), with_head(x, return_gamma=True)
    torch.testing.assert_close(b.image, a.image, atol=1e-6, rtol=0)
    torch.testing.assert_close(with_head.defocus_map(b, x.shape[-2:]), plain.defocus_map(a, x.shape[-2:]),
                               atol=1e-6, rtol=0)
    assert a.radius is None and b.radius.shape == (1, 1, 37, 29)
