"""Starting from trained weights: a wider model computes what the narrow one did, and learns."""

import dataclasses

import pytest
import torch

from nrkdeblur.config import NRKConfig
from nrkdeblur.model import NRKNet
from nrkdeblur.widen import load_widened

NARROW = NRKConfig(width=4, num_atoms=6, atoms_per_channel=False, mixing="sum", head_batchnorm=False,
                   identity_start=True)


def trained_like(config: NRKConfig) -> NRKNet:
    """A model whose every weight is non-zero, as after training (identity_start zeroes some)."""
    torch.manual_seed(0)
    model = NRKNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("config", [NARROW, dataclasses.replace(NARROW, mixing="conv", atoms_per_channel=True,
                                                                  head_batchnorm=True, identity_start=False)])
@pytest.mark.parametrize("width", [4, 7])
def test_the_wider_model_computes_what_the_narrow_one_did(config, width):
    narrow = trained_like(config)
    wide = NRKNet(dataclasses.replace(config, width=width)).eval()
    load_widened(wide, narrow)
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        a, b = narrow(x, return_gamma=True), wide(x, return_gamma=True)
    torch.testing.assert_close(b.image, a.image, atol=1e-5, rtol=0)
    for ga, gb in zip(a.gammas, b.gammas):
        torch.testing.assert_close(gb, ga, atol=1e-5, rtol=0)


def test_the_new_channels_can_learn():
    narrow = trained_like(NARROW)
    wide = NRKNet(dataclasses.replace(NARROW, width=6))
    load_widened(wide, narrow)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    (wide(x).image - y).square().mean().backward()
    reads_new = wide.unet.dec1[0].conv2.weight.grad[:4, 4:]  # old outputs reading new channels: zero now
    assert wide.unet.dec1[0].conv2.weight[:4, 4:].abs().max() == 0 and reads_new.abs().max() > 0


@pytest.mark.parametrize("change, message", [(dict(width=3), "only the width may grow"),
                                             (dict(num_atoms=7), "only the width may grow")])
def test_refuses_anything_but_a_wider_copy(change, message):
    wide = NRKNet(dataclasses.replace(NARROW, **change))
    with pytest.raises(ValueError, match=message):
        load_widened(wide, trained_like(NARROW))


def test_a_model_with_a_focus_head_widens_too():
    config = dataclasses.replace(NARROW, focus_width=3)
    narrow = trained_like(config)
    wide = NRKNet(dataclasses.replace(config, width=7)).eval()
    load_widened(wide, narrow)
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        a, b = narrow(x), wide(x)
    torch.testing.assert_close(b.image, a.image, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.radius, a.radius, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="focus head"):  # a head of another width is not a copy
        load_widened(NRKNet(dataclasses.replace(config, focus_width=4)), narrow)


def test_a_map_head_is_left_behind_but_never_invented():
    """A run from weights with a map head trains without it (it measures frozen weights only);
    the image is the same. Starting a map head from weights without one is refused."""
    config = dataclasses.replace(NARROW, focus_width=3, map_width=4)
    source = trained_like(config)
    bare = NRKNet(dataclasses.replace(config, map_width=0)).eval()
    load_widened(bare, source)
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(bare(x).image, source(x).image, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="map head"):
        load_widened(NRKNet(config), trained_like(dataclasses.replace(config, map_width=0)))
    with pytest.raises(ValueError, match="map head"):
        load_widened(NRKNet(dataclasses.replace(config, map_width=5)), source)
