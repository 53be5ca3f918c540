"""Cell-updates per second of one CA step in every implementation, same grid and steps, one run.

    .venv/bin/python scripts/bench_step.py [--model float] [--batch 8] [--steps 100] [--write docs/results/bench.md]

The workload: the first --batch test digits (28x28), run from their seed states for --steps
steps with the same fire masks (firmware_sim.prng); cell-updates = batch x 28 x 28 x steps
(every cell of the grid, as every implementation returns the whole next state). Timed: the
step calls only (encoding, masks and mutation are outside the clock). Single thread everywhere.

Implementations: firmware_sim (numpy integers; from the packed blob), TFLite int8 with the
optimized (XNNPACK) and the reference kernels (ai-edge-litert), TFLite float (litert), ONNX
Runtime float, PyTorch float (dense layout, the exported graph's formula).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import command, publish  # noqa: E402
os.environ.setdefault("OMP_NUM_THREADS", "1")

from export import export_model  # noqa: E402
from export.runtimes import OnnxRunner, TFLiteRunner, TorchRunner  # noqa: E402
from firmware_sim import blob, int8  # noqa: E402
from firmware_sim.prng import fire_mask  # noqa: E402
from nca_edge.checkpoint import load_checkpoint, resolve_model  # noqa: E402
from nca_edge.data import load_digits, to_float  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="float")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--write", type=Path, default=None)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    out = ROOT / "out" / "bench" / a.model
    files = {}
    for fmt, name in [("tflite-int8", "int8.tflite"), ("tflite", "float.tflite"), ("onnx", "float.onnx"),
                      ("packed", "step.ncap")]:
        files[fmt] = out / name
        export_model(a.model, fmt, files[fmt], force=True, batch=a.batch)
    d = load_digits()
    grey = d.test_x[: a.batch]
    masks = [fire_mask(0, np.arange(a.batch), t, 28, 28) for t in range(a.steps)]
    cells = a.batch * 28 * 28 * a.steps
    rows = []

    def timed(name, step, state):
        step(state, masks[0])  # warm-up
        t = time.perf_counter()
        for f in masks:
            state = step(state, f)
        dt = time.perf_counter() - t
        rows.append({"implementation": name, "seconds": round(dt, 3), "cell_updates_per_s": round(cells / dt)})
        print(rows[-1], flush=True)

    params, _ = blob.load(files["packed"])
    timed("firmware_sim (numpy int8)", lambda s, f: int8.step(params, s, f), int8.seed(params, grey))
    x = np.zeros((a.batch, 20, 28, 28), np.float32)
    x[:, 0] = to_float(grey)
    for name, runner in [("TFLite int8, optimized kernels (litert)", TFLiteRunner(files["tflite-int8"], "litert")),
                         ("TFLite int8, reference kernels (litert)", TFLiteRunner(files["tflite-int8"], "litert", reference=True)),
                         ("TFLite float (litert)", TFLiteRunner(files["tflite"], "litert")),
                         ("ONNX Runtime float", OnnxRunner(files["onnx"])),
                         ("PyTorch float", TorchRunner(load_checkpoint(resolve_model(a.model))[0]))]:
        timed(name, runner.step, runner.encode(x))
    sim = rows[0]["cell_updates_per_s"]
    ref = next(r for r in rows if "reference" in r["implementation"])["cell_updates_per_s"]
    cmd = command()
    lines = ["# Step throughput", "",
             f"Command: `{cmd.strip()}`; model {a.model}, {a.batch} digits x 28 x 28 x {a.steps} steps "
             f"= {cells:,} cell-updates each; one thread; {platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}.", "",
             "| implementation | seconds | cell-updates/s |", "|---|---:|---:|"]
    lines += [f"| {r['implementation']} | {r['seconds']} | {r['cell_updates_per_s']:,} |" for r in rows]
    lines += ["", f"firmware_sim / TFLite reference kernels: {sim / ref:.2f} (goal: >= 0.5)."]
    text = "\n".join(lines) + "\n"
    publish(text, rows, a.write)


if __name__ == "__main__":
    main()
