"""Train a map head (nrkdeblur/map_head.py) on frozen weights, and write them with it.

    python scripts/train-map-head.py WEIGHTS OUT.safetensors [--cache DIR]

The recipe is this file: the training stream of recipes/6-focus-head.toml (its photos,
hold-outs, 256 px crops and renderer settings, seed 0), items 0-799 and 100000-100799,
is rendered once and passed through the frozen network; the map head's inputs (a quarter
of each crop's resolution) and the true radius averaged over the same 4 x 4 blocks are
kept (in DIR, reused by a rerun: 2 GB). Then HEAD_STEPS steps of Adam (lr 1e-3, cosine to
0) on batches of 16 crops drawn at random, each flipped at random left-right and up-down,
minimise map_head.laplace_loss. The head's input statistics (mean and standard deviation
per channel over the kept crops) are stored with it. Nothing else of WEIGHTS changes.

On 2 cores (2026-12-05) rendering and the frozen passes took 9 minutes, run as two
processes at once (`--part 0` and `--part 1`, then the training run), and training 12
minutes on one thread. The map head shipped in nrkdeblur-cpu.safetensors since 2026-12-05
was trained this way (docs/map-scores.md, "The map head").
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nrkdeblur.map_head import laplace_loss, map_inputs  # noqa: E402
from nrkdeblur.model import NRKNet, pad_to_multiple  # noqa: E402
from nrkdeblur.recipe import load_recipe  # noqa: E402
from nrkdeblur.train import open_train_data  # noqa: E402
from nrkdeblur.weights import load_model, read_metadata, save_weights  # noqa: E402

RECIPE = ROOT / "recipes" / "6-focus-head.toml"
PARTS = (0, 100_000)  # first item of each part
ITEMS = 800  # per part
HEAD_WIDTH, HEAD_STEPS, HEAD_BATCH, HEAD_LR = 32, 1200, 16, 1e-3


@torch.no_grad()
def cache_part(model: NRKNet, start: int, path: Path) -> None:
    """Render items start .. start + ITEMS - 1 and keep the map head's inputs and targets."""
    import os

    grab = {}
    model.focus.register_forward_hook(lambda m, args, out: grab.update(args=args, radius=out[0]))
    os.chdir(ROOT)  # the recipe's paths are relative to the project
    data = open_train_data(load_recipe(RECIPE))
    inputs, targets = [], []
    for b in range(start, start + ITEMS, 4):
        items = [data[i] for i in range(b, b + 4)]
        blurry = torch.stack([it["blur"] for it in items])
        model(blurry)
        feats, squares, kernel_radius, change = grab["args"]
        padded = pad_to_multiple(blurry, model.config.multiple)
        inputs.append(map_inputs(feats, squares, change, grab["radius"], kernel_radius, padded).half())
        targets.append(F.avg_pool2d(torch.stack([it["radius"] for it in items]), 4).half())
    torch.save({"x": torch.cat(inputs), "y": torch.cat(targets)}, path)


def train_head(model: NRKNet, cache: Path) -> NRKNet:
    parts = [torch.load(cache / f"part{k}.pt") for k in range(len(PARTS))]
    X, Y = torch.cat([p["x"] for p in parts]), torch.cat([p["y"] for p in parts])
    torch.manual_seed(0)
    net = NRKNet(replace(model.config, map_width=HEAD_WIDTH))
    net.load_state_dict(model.state_dict(), strict=False)
    head = net.map_head
    head.mean.copy_(X.float().mean((0, 2, 3), keepdim=True))
    head.std.copy_(X.float().std((0, 2, 3), keepdim=True) + 1e-3)
    torch.manual_seed(0)
    for module in head.modules():  # in the order a head built alone initialises them
        if isinstance(module, torch.nn.Conv2d):
            module.reset_parameters()
    optimiser = torch.optim.Adam(head.parameters(), HEAD_LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, HEAD_STEPS)
    for step in range(1, HEAD_STEPS + 1):
        idx = torch.randint(0, X.shape[0], (HEAD_BATCH,))
        x, y = X[idx].float(), Y[idx].float()
        if torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        if torch.rand(()) < 0.5:
            x, y = x.flip(-2), y.flip(-2)
        loss = laplace_loss(*head(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("map-head-cache"))
    parser.add_argument("--part", type=int, choices=range(len(PARTS)), help="only render and keep this part")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.weights).eval()
    if model.focus is None:
        sys.exit("the map head reads a focus head's radius: these weights have none")
    args.cache.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(PARTS):
        if (args.part is None or args.part == k) and not (args.cache / f"part{k}.pt").is_file():
            cache_part(model, start, args.cache / f"part{k}.pt")
    if args.part is not None:
        return
    net = train_head(model, args.cache)
    metadata = {k: v for k, v in read_metadata(args.weights).items() if k != "nrkdeblur.config"}
    save_weights(net, args.out, extra=metadata)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
