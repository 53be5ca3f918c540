"""One step of each float artifact from PyTorch's own states: how many cells' updates differ.

Over 100 steps the float `tflite` of the binary-activation variants labels about 0.3% of alive
cells unlike PyTorch (docs/RESULTS.md, "Exported artifacts in their runtimes"). This separates
the step from the trajectory: along PyTorch's trajectory (first --digits test digits, --steps
steps, the protocol's masks), each step is also computed by the artifact from the same state,
and the cells whose next state differs by more than 1e-3 in any channel (a binary unit that
flipped) are counted, with the largest difference in all other cells.

    python scripts/float_step_diff.py --write docs/results/float_step.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from export.report import command, publish  # noqa: E402

from export import export_model  # noqa: E402
from export.runtimes import TFLiteRunner, TorchRunner  # noqa: E402
from firmware_sim.prng import fire_mask  # noqa: E402
from nca_edge.checkpoint import load_checkpoint, resolve_model  # noqa: E402
from nca_edge.data import load_digits  # noqa: E402


def measure(name: str, digits, n: int, steps: int) -> dict:
    path = ROOT / "out" / "float_step" / f"{name}.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    export_model(name, "tflite", path, force=True, batch=n)
    model, config, _ = load_checkpoint(resolve_model(name))
    ref, art = TorchRunner(model), TFLiteRunner(path, "litert")
    x = np.zeros((n, config.ca.channels, 28, 28), np.float32)
    x[:, 0] = digits.test_x[:n] / 255.0
    s = ref.encode(x)
    flipped = total = 0
    largest = 0.0
    for t in range(steps):
        fire = fire_mask(0, np.arange(n), t, 28, 28, config.ca.fire_rate)
        nxt = ref.step(s, fire)
        ours = art.decode(art.step(art.encode(ref.decode(s)), fire))
        diff = np.abs(ref.decode(nxt) - ours).max(axis=1)  # per cell
        big = diff > 1e-3
        flipped += int(big.sum())
        total += diff.size
        largest = max(largest, float(diff[~big].max()))
        s = nxt
    return {"model": name, "cells": total, "differ": flipped, "largest_other": largest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["ban", "bnn"])
    ap.add_argument("--digits", type=int, default=50)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--write", type=Path, default=None)
    a = ap.parse_args()
    d = load_digits()
    rows = [measure(m, d, a.digits, a.steps) for m in a.models]
    lines = ["# Float tflite: one step from PyTorch's states", "",
             "| model | cell-steps | cells whose update differs (> 1e-3) | share | largest difference elsewhere |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['cells']:,} | {r['differ']:,} | {r['differ'] / r['cells']:.1e} | {r['largest_other']:.1e} |"
              for r in rows]
    lines += ["", f"The first {a.digits} test digits, {a.steps} steps along PyTorch's trajectory (ai-edge-litert, batch "
              f"{a.digits}). A differing cell is a binary unit on the other side of its threshold; the trajectories "
              "part from there, which is what the 100-step label comparison measures.", "",
              f"Command: `{command().strip()}`", ""]
    publish("\n".join(lines), rows, a.write)


if __name__ == "__main__":
    main()
