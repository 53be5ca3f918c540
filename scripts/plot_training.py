"""Plot a training run's loss curve (mean over windows of iterations) from its log.csv.

    python scripts/plot_training.py runs/float/log.csv --out docs/results/float/train_loss.png

``--until N`` plots iterations 1..N only (a snapshot's share of a longer run).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", type=Path, help="log.csv files (iteration,loss,lr,elapsed_s)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--window", type=int, default=500, help="iterations per averaged point")
    ap.add_argument("--until", type=int, default=None, help="last iteration to plot (default: all)")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for log in args.logs:
        with open(log) as f:
            rows = [(int(r["iteration"]), float(r["loss"])) for r in csv.DictReader(f)]
        if args.until is not None:
            rows = [r for r in rows if r[0] <= args.until]
        it = np.array([r[0] for r in rows])
        loss = np.array([r[1] for r in rows])
        n = len(loss) // args.window
        if n == 0:
            continue
        x = it[: n * args.window].reshape(n, -1).mean(1)
        y = loss[: n * args.window].reshape(n, -1).mean(1)
        ax.plot(x, y, label=str(log.parent.name))
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"training loss (mean over {args.window} iterations)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
