"""What int4 kernels cost a trained model before any retraining.

Copies a checkpoint's weights into the same architecture with some real kernels int4
(``--int4``: per output channel, max |W[o]| / 7) and evaluates each choice on the first DIGITS
test digits, 200 steps, no mutation (accuracy / agreement at the last step). A diagnostic for
docs/experiments, not a test: it tells which layers can spend 4 bits a weight instead of 8.

    python experiments/int4_probe.py runs/bnn-p40-i8/snapshots/model-006000 --digits 200
"""

from __future__ import annotations

import argparse
import dataclasses

from checkpoint_cli import load  # experiments/ is on sys.path when run as a script
from eval_snapshots import step200, test_digits
from nca_edge.config import LAYERS
from nca_edge.model import CAModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a trained checkpoint (path or shipped name)")
    ap.add_argument("--digits", type=int, default=200)
    args = ap.parse_args()
    if args.digits < 1:
        raise SystemExit("error: needs --digits >= 1")
    src, _, _ = load(args.model)
    real = [n for n in LAYERS if not src.cfg.binary_kernel(n) and n not in src.cfg.int4]
    if not real:
        raise SystemExit(f"error: {args.model} has no real (int8) kernel to make int4")
    x, y = test_digits(args.digits)
    for int4 in [()] + [(n,) for n in real] + ([tuple(real)] if len(real) > 1 else []):
        model = CAModel(dataclasses.replace(src.cfg, int4=tuple(src.cfg.int4) + int4))
        model.load_state_dict(src.state_dict())
        print(step200(f"int4 {', '.join(int4) or 'none (as trained)'}", model, x, y, "test"), flush=True)


if __name__ == "__main__":
    main()
