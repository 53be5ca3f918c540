"""How concentrated each trained kernel is: why a binary kernel fits some layers and not others.

A binary kernel sign(W[o]) x mean |W[o]| gives every weight of an output channel the same
magnitude. A trained kernel that puts most of an output's energy (sum of W^2) into a few weights
is far from that. For every layer of each MODEL this prints the median over output channels of:

* top10: the share of the output's energy in its largest 10% of weights;
* channel: the share in its largest input channel (summed over the 3x3 taps for the perception);
* cosine: the cosine between W[o] and sign(W[o]) (1 = binary already; 1/sqrt(n) for one spike).

A diagnostic for docs/experiments, not a test.

    python scripts/kernel_energy.py float bwn ban bnn
"""

from __future__ import annotations

import argparse

import torch

from nca_edge.checkpoint import load_checkpoint, resolve_model
from nca_edge.config import LAYERS
from nca_edge.errors import NCAEdgeError


def layer_stats(w: torch.Tensor) -> tuple[float, float, float]:
    """w [O, I, kh, kw] -> medians over outputs of (top10 share, top channel share, cosine to sign)."""
    flat = w.flatten(1)
    e = flat.pow(2)
    total = e.sum(1).clamp_min(1e-30)
    k = max(1, round(0.1 * flat.shape[1]))
    top10 = e.sort(1, descending=True).values[:, :k].sum(1) / total
    channel = w.pow(2).sum((2, 3)).max(1).values / total
    cosine = flat.abs().sum(1) / (total.sqrt() * flat.shape[1] ** 0.5)
    return float(top10.median()), float(channel.median()), float(cosine.median())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="checkpoints (paths or shipped names)")
    args = ap.parse_args()
    print("| model | layer | kernel | top10 | channel | cosine |")
    print("|---|---|---|---:|---:|---:|")
    for name in args.models:
        try:
            model, config, _ = load_checkpoint(resolve_model(name))
        except NCAEdgeError as e:
            raise SystemExit(f"error: {e}")
        for layer, conv in zip(LAYERS, model.convs()):
            # the stored kernel (depthwise: its 3x3 taps; separable: its 1x1 part)
            w = conv.weight
            kind = "ternary" if layer in config.ca.ternary else "binary" if config.ca.binary_kernel(layer) else "real"
            top10, channel, cosine = layer_stats(w.detach())
            print(f"| {name} | {layer} | {kind} | {top10:.2f} | {channel:.2f} | {cosine:.2f} |")


if __name__ == "__main__":
    main()
