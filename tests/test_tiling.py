"""Tests for nrkdeblur.tiling: tile spans, feathering weights and tiled == untiled."""

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nrkdeblur.tiling import axis_weights, run_tiled, tile_spans


def grid(height: int, width: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int, int, int]]:
    """The tiles run_tiled processes: every row span with every column span."""
    return [(y0, y1, x0, x1) for y0, y1 in tile_spans(height, tile, overlap, align)
            for x0, x1 in tile_spans(width, tile, overlap, align)]


@pytest.mark.parametrize(
    "height, width, tile, overlap",
    [(97, 131, 32, 8), (97, 131, 48, 16), (512, 512, 256, 32), (513, 1000, 256, 32),
     (3000, 4000, 512, 64), (300, 40, 64, 63), (50, 50, 10, 0)],
)
def test_tiles_cover_the_image_with_enough_overlap(height, width, tile, overlap):
    count = torch.zeros(height, width, dtype=torch.int32)
    for y0, y1, x0, x1 in grid(height, width, tile, overlap):
        count[y0:y1, x0:x1] += 1
        # full size (shifted back at the border, never shrunk), inside the image
        assert (y1 - y0, x1 - x0) == (min(tile, height), min(tile, width))
        assert 0 <= y0 and y1 <= height and 0 <= x0 and x1 <= width
    assert (count >= 1).all()
    for size in (height, width):
        spans = tile_spans(size, tile, overlap)
        assert spans[0][0] == 0 and spans[-1][1] == size
        for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
            assert a0 < b0 and a1 - b0 >= overlap


def test_single_tile_when_the_image_fits():
    assert tile_spans(100, 128, 16) == [(0, 100)]
    assert tile_spans(128, 128, 16) == [(0, 128)]
    assert len(tile_spans(129, 128, 16)) == 2


@pytest.mark.parametrize("tile, overlap", [(0, 0), (16, 16), (16, 20), (16, -1)])
def test_bad_sizes_are_rejected(tile, overlap):
    with pytest.raises(ValueError):
        tile_spans(100, tile, overlap)


def test_weights_feather_inner_edges_only_and_sum_to_one():
    (a0, a1, w0), (b0, b1, w1) = axis_weights(112, 64, 16)  # two tiles sharing 16 px
    assert (a0, a1, b0, b1) == (0, 64, 48, 112)
    assert w0.dtype == torch.float32 and ((w0 >= 0) & (w0 <= 1)).all()
    assert (w0[:48] == 1).all() and (w1[16:] == 1).all()  # interior and the image border stay 1
    ramp = w1[:16]  # across the second tile's inner edge: 0 on the first quarter, then rises
    assert (ramp[:4] == 0).all() and (ramp[12:] == 1).all()
    assert (ramp[1:] >= ramp[:-1]).all() and (ramp[1:] - ramp[:-1]).max() < 0.3  # monotone, smooth
    assert torch.allclose(w0[48:] + ramp, torch.ones(16))  # the neighbours' weights sum to 1
    assert torch.allclose(w0[48:], ramp.flip(0))  # the same ramp, mirrored
    (only,) = axis_weights(10, 16, 4)
    assert only[:2] == (0, 10) and (only[2] == 1).all()  # a lone tile


def test_normalised_weights_sum_to_one():
    x = torch.rand(1, 2, 97, 131)
    ones = run_tiled(torch.ones_like, x, tile=32, overlap=12)
    assert torch.allclose(ones, torch.ones_like(ones), atol=1e-6, rtol=0)
    assert torch.allclose(run_tiled(lambda t: t, x, tile=40, overlap=10), x, atol=1e-6, rtol=0)


def conv9(t: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """A fixed 9x9 convolution with replicate padding (receptive radius 4)."""
    return F.conv2d(F.pad(t, (4, 4, 4, 4), mode="replicate"), kernel)


@pytest.mark.parametrize("height, width, tile", [(97, 131, 48), (64, 200, 40), (20, 30, 64)])
def test_tiled_convolution_equals_untiled(height, width, tile):
    torch.manual_seed(0)
    kernel = torch.randn(2, 3, 9, 9) / 9  # 3 channels in, 2 out
    x = torch.rand(1, 3, height, width)
    want = conv9(x, kernel)
    got = run_tiled(lambda t: conv9(t, kernel), x, tile=tile, overlap=16)  # radius 4 <= 16 // 4
    assert got.shape == (1, 2, height, width)
    assert (got - want).abs().max() < 1e-5


def test_tiled_cnn_equals_untiled():
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, padding_mode="replicate"), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="replicate"), nn.ReLU(),
        nn.Conv2d(8, 3, 3, padding=1, padding_mode="replicate"),
    ).eval()  # receptive radius 3
    x = torch.rand(1, 3, 97, 131)
    with torch.no_grad():
        want = net(x)
        got = run_tiled(net, x, tile=40, overlap=12)
    assert (got - want).abs().max() < 1e-5


def test_image_smaller_than_a_tile_is_one_call():
    calls = []
    x = torch.rand(1, 1, 20, 30)
    got = run_tiled(lambda t: calls.append(t.shape) or t * 3, x, tile=64, overlap=16)
    assert calls == [torch.Size([1, 1, 20, 30])]
    assert torch.equal(got, x * 3)


def test_progress_callback_and_output_on_cpu():
    seen = []
    x = torch.rand(1, 3, 97, 131, dtype=torch.float64)
    got = run_tiled(lambda t: t[:, :1], x, tile=32, overlap=8, on_tile=lambda d, n: seen.append((d, n)))
    total = len(grid(97, 131, 32, 8))
    assert seen == [(i, total) for i in range(1, total + 1)]
    assert got.dtype == torch.float32 and got.device.type == "cpu" and got.shape == (1, 1, 97, 131)


def test_errors_in_fn_propagate_and_bad_outputs_are_rejected():
    x = torch.rand(1, 1, 50, 50)

    def boom(t):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        run_tiled(boom, x, tile=32, overlap=8)
    with pytest.raises(ValueError):
        run_tiled(lambda t: t[:, :, 1:], x, tile=32, overlap=8)
    with pytest.raises(ValueError):
        run_tiled(lambda t: t, torch.rand(2, 1, 50, 50), tile=32, overlap=8)


def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def test_big_image_runs_in_bounded_memory():
    """Peak memory growth is about the output, not proportional to the number of tiles."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux)
    except OSError:
        pytest.skip("needs Linux /proc to measure peak memory")
    x = torch.rand(1, 1, 3000, 4000)
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_bytes("VmRSS")
    y = run_tiled(lambda t: t * 2, x, tile=512, overlap=32)
    growth = _rss_bytes("VmHWM") - before
    out_bytes = y.numel() * 4  # 48 MB; 63 tiles of 1 MB each
    assert len(grid(3000, 4000, 512, 32)) == 63
    assert growth < 1.5 * out_bytes, f"peak growth {growth / 2**20:.0f} MB"
    assert torch.allclose(y, 2 * x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size, tile, overlap, align", [(1000, 256, 64, 16), (4000, 1264, 128, 16), (500, 256, 128, 16)])
def test_aligned_tiles_start_on_the_grid_and_still_overlap(size, tile, overlap, align):
    ys = tile_spans(size, tile, overlap, align)
    assert ys[0][0] == 0 and ys[-1][1] == size
    assert all(y0 % align == 0 for y0, _ in ys)
    assert all(y1 - y0 <= tile + align - 1 for y0, y1 in ys)
    assert all(a1 - b0 >= overlap for (_, a1), (b0, _) in zip(ys, ys[1:]))


@pytest.mark.parametrize("size, tile, overlap", [(1000, 256, 64), (3003, 912, 192), (4000, 976, 192), (260, 256, 64)])
def test_aligned_tiles_padded_to_the_grid_all_have_one_shape(size, tile, overlap):
    """Tiles of a multiple of the grid end where the whole image's padding ends: padded to the
    grid as a network pads them, every tile has the same length (one shape per photo)."""
    spans = tile_spans(size, tile, overlap, 16)
    assert {-(-(b - a) // 16) * 16 for a, b in spans} == {tile}
    assert spans[-1][1] == size and all(b0 % 16 == 0 for b0, _ in spans)
    assert all(a1 - b0 >= overlap for (_, a1), (b0, _) in zip(spans, spans[1:]))
