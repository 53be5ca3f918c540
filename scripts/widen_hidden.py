"""Widen a trained model's hidden layer by splitting units (a warm start for ``--hidden K*H``).

Every hidden unit becomes K copies sharing its outgoing weights (``nca_edge.warm_start``); with
``--noise 0`` the widened model computes exactly the original update. Writes OUT.safetensors + OUT.json;
train on with ``nca-edge train --hidden K*H --init OUT ...``. ``--eval-digits N`` evaluates the
widened model as it is (no retraining) on the first N test digits, 200 steps, no mutation.

    python scripts/widen_hidden.py bwn --factor 2 --noise 0.1 --out runs/bwn-w2-init/model --eval-digits 200
"""

from __future__ import annotations

import argparse

from checkpoint_cli import load, write_start  # scripts/ is on sys.path when run as a script
from nca_edge.warm_start import widen_hidden


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a trained checkpoint (path or shipped name, e.g. bwn)")
    ap.add_argument("--factor", type=int, default=2, help="copies of every hidden unit (>= 2)")
    ap.add_argument("--noise", type=float, default=0.1, help="latent-weight noise of each copy but the first, x row RMS")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output checkpoint path (without extension)")
    ap.add_argument("--eval-digits", type=int, default=0, help="evaluate the widened model on N test digits")
    args = ap.parse_args()
    src, config, _ = load(args.model)
    if args.factor < 2 or args.noise < 0:
        raise SystemExit("error: needs --factor >= 2 and --noise >= 0")
    model = widen_hidden(src, args.factor, args.noise, args.seed)
    print(f"hidden {src.cfg.hidden} -> {model.cfg.hidden}")
    write_start(args.out, model, config, "untrained widened model", args.eval_digits, widened_from=args.model,
                widening={"factor": args.factor, "noise": args.noise, "seed": args.seed})


if __name__ == "__main__":
    main()
