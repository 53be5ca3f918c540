"""What binarizing a trained model's kernels costs before any retraining.

Takes a checkpoint with binary activations (e.g. the shipped ban), copies its weights into the
same architecture with some kernels binary (sign(W) x mean |W[o]| per output channel, as
``--quant bnn`` trains them), and evaluates each on the first DIGITS test digits, STEPS steps,
no mutation (accuracy / agreement at the last step). A diagnostic for docs/experiments, not a
test: it tells which layers a warm start from the model can binarize cheaply.

    python experiments/binarize_probe.py ban --digits 200
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from nca_edge.checkpoint import load_checkpoint, resolve_model
from nca_edge.config import LAYERS
from nca_edge.data import load_digits
from nca_edge.errors import NCAEdgeError
from nca_edge.evaluate import evaluate
from nca_edge.model import CAModel

CHOICES = (("update2",), ("update1",), ("perceive",), ("update1", "update2"), ("perceive", "update1", "update2"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a checkpoint with binary activations (ban)")
    ap.add_argument("--digits", type=int, default=200)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = load_digits()
    try:
        src, _, _ = load_checkpoint(resolve_model(args.model))
    except NCAEdgeError as e:
        raise SystemExit(f"error: {e}")
    if not src.cfg.binary_activations:
        raise SystemExit(f"{args.model}: needs binary activations (a ban checkpoint)")

    def row(model: CAModel, label: str) -> None:
        r = evaluate(model.eval(), d.test_x[: args.digits], d.test_y[: args.digits], steps=args.steps, mutate_at=None)
        print(f"| {label} | {r.accuracy[-1]:.1f} | {r.agreement[-1]:.1f} |")

    print(f"| binary kernels ({args.digits} digits, step {args.steps}) | accuracy | agreement |")
    print("|---|---:|---:|")
    row(src, f"none ({args.model} as trained)")
    for binary in CHOICES:
        real = [name for name in LAYERS if name not in binary]
        try:
            model = CAModel(dataclasses.replace(src.cfg, quant="bnn", real_weights=real, learned_scale=False))
        except ValueError as e:  # e.g. a depthwise perception must stay real
            print(f"| {', '.join(binary)} | – | – ({e}) |")
            continue
        model.load_state_dict(src.state_dict(), strict=False)
        row(model, ", ".join(binary))


if __name__ == "__main__":
    main()
