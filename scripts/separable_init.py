"""Factor a trained dense 3x3 perception into a separable one (a warm start for ``--separable M``).

For every state channel c, the dense kernel's slice W[:, c] ([P, 9]: every perception feature's
3x3 filter on channel c) is replaced by its best rank-M approximation (SVD):
W[:, c] ~ U_c S_c V_c^T, giving M depthwise filters dw[c*M + j] = S_c[j] V_c[j] (the spatial
patterns, scale included) and the 1x1 kernel pw[o, c*M + j] = U_c[o, j] (orthonormal columns, so
|pw| <= 1: latent binary weights are not clipped). M = 9 is exact. Every other tensor is copied.
Prints the median share of each slice's energy kept. Writes OUT.safetensors + OUT.json; train on
with ``nca-edge train --separable M --init OUT ...``. ``--eval-digits N`` also evaluates the factored
model as it is (no retraining) on the first N test digits, 200 steps, no mutation.

    python scripts/separable_init.py ban --m 4 --out runs/sep4-init/model --eval-digits 200
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from checkpoint_cli import load, write_start  # scripts/ is on sys.path when run as a script
from nca_edge.model import CAModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a checkpoint with a dense 3x3 perception (e.g. ban)")
    ap.add_argument("--m", type=int, required=True, help="depthwise filters per state channel (1..9)")
    ap.add_argument("--out", required=True, help="output checkpoint path (without extension)")
    ap.add_argument("--eval-digits", type=int, default=0, help="evaluate the factored model on N test digits")
    args = ap.parse_args()
    src, config, _ = load(args.model)
    if src.cfg.depthwise or src.cfg.separable or not 1 <= args.m <= 9:
        raise SystemExit("error: needs a dense 3x3 perception and 1 <= --m <= 9")
    cfg = dataclasses.replace(src.cfg, separable=args.m)
    model = CAModel(cfg)
    w = src.perceive.weight.detach()  # [P, C, 3, 3]
    p, c = w.shape[:2]
    u, s, vh = torch.linalg.svd(w.reshape(p, c, 9).permute(1, 0, 2), full_matrices=False)  # per channel
    kept = (s[:, : args.m] ** 2).sum(1) / (s**2).sum(1)
    print(f"median energy kept per channel slice: {kept.median().item():.3f} (min {kept.min().item():.3f})")
    dw = s[:, : args.m, None] * vh[:, : args.m, :]  # [C, M, 9]
    pw = u[:, :, : args.m].permute(1, 0, 2).reshape(p, c * args.m)  # [P, C*M]
    sd = {k: v for k, v in src.state_dict().items() if k != "perceive.weight"}
    sd["perceive.weight"] = pw.reshape(p, c * args.m, 1, 1)
    sd["perceive_dw.weight"] = dw.reshape(c * args.m, 1, 3, 3)
    model.load_state_dict(sd)
    err = (model.dense_perceive_weight() - w).norm() / w.norm()
    print(f"relative error of the composed kernel: {err.item():.4f}")
    write_start(args.out, model, config, "untrained factored model", args.eval_digits, factored_from=args.model)


if __name__ == "__main__":
    main()
