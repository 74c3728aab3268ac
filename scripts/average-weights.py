"""Average two weights files of the same network, e.g. a run and the weights it started from:

    python scripts/average-weights.py A.safetensors B.safetensors T OUT.safetensors

writes (1 - T) * A + T * B, every tensor, with A's config. Two runs that start from the same
weights stay close enough that the average is a working network between the two.
"""

import sys

import torch

from nrkdeblur.weights import WeightsError, load_model, save_weights


def main(a: str, b: str, t: float, out: str) -> None:
    model, other = load_model(a), load_model(b)
    if model.config != other.config:
        sys.exit(f"{a} and {b} hold different networks")
    theirs = other.state_dict()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            tensor.copy_(torch.lerp(tensor.float(), theirs[name].float(), t).to(tensor.dtype))
    save_weights(model, out)
    print(out)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    try:
        main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4])
    except (WeightsError, ValueError) as e:
        sys.exit(str(e))
