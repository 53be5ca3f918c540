"""Rank checkpoints (e.g. a run's snapshots) on the first N training or test digits.

Prints, per model, accuracy / agreement at step 200 (200 steps, no mutation, fire masks from the
shared PRNG: the same protocol as ``nca-edge eval MODEL --digits N --steps 200 --mutate-at 0``) and
the mean accuracy over steps 101-200. ``--split train`` uses the first N training digits, to
separate a model's fit from its generalisation; pick snapshots on those, report on the test set.

    python experiments/eval_snapshots.py --split train --digits 500 bwn runs/bwn-w2b/snapshots/model-001000
"""

from __future__ import annotations

import argparse

import torch

from checkpoint_cli import load  # experiments/ is on sys.path when run as a script
from nca_edge.data import load_digits
from nca_edge.evaluate import evaluate


def step200(name: str, model, x, y, split: str) -> str:
    """One report line: accuracy / agreement at step 200 and the mean accuracy over steps 101-200."""
    with torch.no_grad():
        r = evaluate(model.eval(), x, y, steps=200, mutate_at=None)
    return (f"{name}: {split}[:{len(y)}] step 200: {r.accuracy[-1]:.1f} / {r.agreement[-1]:.1f}; "
            f"mean accuracy over steps 101-200 {r.accuracy[100:].mean():.1f}")


def test_digits(n: int):
    """The first n test digits (images, labels), evaluated on one thread."""
    torch.set_num_threads(1)
    d = load_digits()
    return d.test_x[:n], d.test_y[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="checkpoint paths or shipped names")
    ap.add_argument("--split", choices=("train", "test"), default="test")
    ap.add_argument("--digits", type=int, default=500)
    args = ap.parse_args()
    if args.digits < 1:
        raise SystemExit("error: needs --digits >= 1")
    torch.set_num_threads(1)
    d = load_digits()
    x, y = (d.train_x, d.train_y) if args.split == "train" else (d.test_x, d.test_y)
    x, y = x[: args.digits], y[: args.digits]
    for name in args.models:
        model, _, meta = load(name)
        print(step200(f"{name} ({meta.get('iterations')} its)", model, x, y, args.split), flush=True)


if __name__ == "__main__":
    main()
