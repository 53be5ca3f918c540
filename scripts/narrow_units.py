"""Narrow a trained model's perception and hidden layers (a warm start for ``--perception P --hidden H``).

Drops the perception features and hidden units whose loss costs the next layer least, folding
each dropped unit's mean activation into the next layer's bias (``nca_edge.warm_start.narrow``);
the activation statistics come from the model's own rollouts on the first ``--digits`` training
digits. Writes OUT.safetensors + OUT.json; train on with ``nca-edge train --perception P
--hidden H --init OUT ...``. ``--eval-digits N`` evaluates the narrowed model as it is (no
retraining) on the first N test digits, 200 steps, no mutation.

    python scripts/narrow_units.py runs/ban-sep4/model --perception 40 --hidden 64 --out runs/sep4-p40-init/model --eval-digits 200
"""

from __future__ import annotations

import argparse

import torch

from checkpoint_cli import load, write_start  # scripts/ is on sys.path when run as a script
from nca_edge.data import load_digits, to_float
from nca_edge.warm_start import activation_stats, narrow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a trained checkpoint (path or shipped name, e.g. ban)")
    ap.add_argument("--perception", type=int, required=True, help="perception features to keep")
    ap.add_argument("--hidden", type=int, required=True, help="hidden units to keep")
    ap.add_argument("--digits", type=int, default=64, help="training digits for the activation statistics")
    ap.add_argument("--steps", type=int, default=60, help="CA steps of those rollouts")
    ap.add_argument("--out", required=True, help="output checkpoint path (without extension)")
    ap.add_argument("--eval-digits", type=int, default=0, help="evaluate the narrowed model on N test digits")
    args = ap.parse_args()
    src, config, _ = load(args.model)
    if not (1 <= args.perception <= src.cfg.perception and 1 <= args.hidden <= src.cfg.hidden):
        raise SystemExit(f"error: needs 1 <= --perception <= {src.cfg.perception} and 1 <= --hidden <= {src.cfg.hidden}")
    if args.digits < 1 or args.steps < 1:
        raise SystemExit("error: needs --digits >= 1 and --steps >= 1")
    if src.cfg.depthwise:
        raise SystemExit("error: a depthwise perception cannot be narrowed")
    torch.set_num_threads(1)
    pixels = torch.from_numpy(to_float(load_digits().train_x[: args.digits]))
    model = narrow(src, args.perception, args.hidden, activation_stats(src.eval(), pixels, args.steps))
    print(f"perception {src.cfg.perception} -> {args.perception}, hidden {src.cfg.hidden} -> {args.hidden}")
    write_start(args.out, model, config, "untrained narrowed model", args.eval_digits, narrowed_from=args.model,
                narrowing={"perception": args.perception, "hidden": args.hidden, "digits": args.digits, "steps": args.steps})


if __name__ == "__main__":
    main()
