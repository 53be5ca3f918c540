"""How far the pre-activations of each binary activation sit from the sign's jump at 0.

Runs each model for STEPS CA steps on the first DIGITS test digits (fire masks from the shared
PRNG), then, over the alive cells, prints per layer whose output is binarized the median |x|
and the share of |x| below 2 sigma (sigma: the model's training --act-noise), where a stochastic
binary unit still flips and passes a gradient; far from 0 the gradient of E[sign(x + sigma n)]
vanishes. A diagnostic for docs/experiments, not a test.

    python experiments/preactivations.py ban bnn runs/bnn-m2/model
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from firmware_sim.prng import fire_mask
from nca_edge.ca import ca_step, seed_state
from nca_edge.checkpoint import load_checkpoint, resolve_model
from nca_edge.data import load_digits, to_float


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--digits", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    digits = load_digits()
    pixels = torch.from_numpy(to_float(digits.test_x[: args.digits]))
    print("| model | layer | median abs(x) | share abs(x) < 2 sigma | sigma |")
    print("|---|---|---:|---:|---:|")
    for name in args.models:
        model, cfg, meta = load_checkpoint(resolve_model(name))
        if not model.cfg.binary_activations:
            continue
        sigma = float(cfg.train.act_noise) if hasattr(cfg, "train") else 0.0
        state = seed_state(pixels, model.cfg)
        with torch.no_grad():
            for step in range(args.steps):
                fire = torch.from_numpy(fire_mask(0, np.arange(len(pixels)), step, 28, 28))
                state = ca_step(model, state, fire)
            alive = state[:, 0] > model.cfg.alive_threshold
            pre, hid = (v[alive] for v in model.preactivations(state))
        for layer, v in (("perceive", pre), ("update1", hid)):
            a = v.abs()
            share = (a < 2 * sigma).float().mean().item() if sigma > 0 else float("nan")
            print(f"| {name} | {layer} | {a.median().item():.3f} | {share:.3f} | {sigma:g} |")


if __name__ == "__main__":
    main()
