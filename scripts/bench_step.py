"""Cell-updates per second of one CA step in every implementation, same grid and steps, one run.

    .venv/bin/python scripts/bench_step.py [--models float bnn] [--batch 8] [--steps 100] [--write docs/results/bench.md]

The workload: the first --batch test digits (28x28), run from their seed states for --steps
steps with the same fire masks (firmware_sim.prng); cell-updates = batch x 28 x 28 x steps
(every cell of the grid, as every implementation returns the whole next state). Timed: the
step calls only (encoding, masks and mutation are outside the clock), as processor time of this
process (time.process_time; the C driver's clock()), so other work on the machine does not skew
the comparison. Single thread everywhere.

Implementations: firmware_sim (numpy integers; from the packed blob), TFLite int8 with the
optimized (XNNPACK) and the reference kernels (ai-edge-litert), Larq Compute Engine (the ``lce``
file, batch 1, one call per digit: models with binary activations), TFLite float (litert), ONNX
Runtime float, PyTorch float (dense layout, the exported graph's formula), and the C firmware
(``--format c``, host -O2, the driver's benchmark mode: processor time of the steps alone,
computing only the cells that are alive and fire, as firmware_sim does).
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

from export.report import command, publish  # noqa: E402
os.environ.setdefault("OMP_NUM_THREADS", "1")

import subprocess  # noqa: E402
import tempfile  # noqa: E402

from export import export_model, supported_formats  # noqa: E402
from export.runtimes import LceRunner, OnnxRunner, TFLiteRunner, TorchRunner  # noqa: E402
from export.verify_c import build, toolchain_missing  # noqa: E402
from firmware_sim import blob, int8  # noqa: E402
from firmware_sim.prng import fire_mask, fire_threshold  # noqa: E402
from nca_edge.checkpoint import load_checkpoint, resolve_model  # noqa: E402
from nca_edge.data import load_digits, to_float  # noqa: E402


class _PerDigit:
    """A batch-1 runner stepped once per digit (LCE's Python interpreter feeds one sample per call)."""

    def __init__(self, runner):
        self.r = runner

    def encode(self, x):
        return [self.r.encode(x[i:i + 1]) for i in range(len(x))]

    def step(self, states, fire):
        return [self.r.step(s, fire[i:i + 1]) for i, s in enumerate(states)]


def bench_model(model: str, batch: int, steps: int) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    out = ROOT / "out" / "bench" / model
    formats = supported_formats(model)
    files = {}
    for fmt, name in [("tflite-int8", "int8.tflite"), ("tflite", "float.tflite"), ("onnx", "float.onnx"),
                      ("packed", "step.ncap"), ("lce", "lce.tflite")]:
        if fmt in formats:
            files[fmt] = out / name
            export_model(model, fmt, files[fmt], force=True, batch=1 if fmt == "lce" else batch)
    d = load_digits()
    grey = d.test_x[:batch]
    masks = [fire_mask(0, np.arange(batch), t, 28, 28) for t in range(steps)]
    cells = batch * 28 * 28 * steps
    rows = []

    def record(name, seconds):
        rows.append({"model": model, "implementation": name, "seconds": round(seconds, 3),
                     "cell_updates_per_s": round(cells / seconds)})
        print(rows[-1], flush=True)

    def timed(name, step, state):
        step(state, masks[0])  # warm-up
        t = time.process_time()
        for f in masks:
            state = step(state, f)
        record(name, time.process_time() - t)

    params, _ = blob.load(files["packed"])
    timed("firmware_sim (numpy int8)", lambda s, f: int8.step(params, s, f), int8.seed(params, grey))
    x = np.zeros((batch, 20, 28, 28), np.float32)
    x[:, 0] = to_float(grey)
    runners = [("TFLite int8, optimized kernels (litert)", TFLiteRunner(files["tflite-int8"], "litert")),
               ("TFLite int8, reference kernels (litert)", TFLiteRunner(files["tflite-int8"], "litert", reference=True))]
    if "lce" in files:
        runners.append(("Larq Compute Engine (lce, batch 1 per call)", _PerDigit(LceRunner(files["lce"]))))
    runners += [("TFLite float (litert)", TFLiteRunner(files["tflite"], "litert")),
                ("ONNX Runtime float", OnnxRunner(files["onnx"])),
                ("PyTorch float", TorchRunner(load_checkpoint(resolve_model(model))[0]))]
    for name, runner in runners:
        timed(name, runner.step, runner.encode(x))
    if "c" in formats and not toolchain_missing("host"):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            export_model(model, "c", work / "src")
            exe = build(work / "src", work)
            (work / "input.bin").write_bytes(np.ascontiguousarray(grey).tobytes())
            seconds = float(subprocess.run([str(exe), str(work), str(batch), str(steps), "28", "28", "0",
                                            str(fire_threshold(0.5)), "0", "-"],
                                           check=True, capture_output=True, text=True).stdout)
        record("C firmware (host, -O2)", seconds)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["float", "bnn"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--write", type=Path, default=None)
    a = ap.parse_args()
    rows = []
    for model in a.models:
        rows += bench_model(model, a.batch, a.steps)
    cells = a.batch * 28 * 28 * a.steps
    cmd = command()
    lines = ["# Step throughput", "",
             f"Command: `{cmd.strip()}`; {a.batch} digits x 28 x 28 x {a.steps} steps "
             f"= {cells:,} cell-updates each; one thread, processor time; {platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}. The same fire masks (rate 0.5) everywhere; the grid "
             "implementations compute every cell, firmware_sim and the C firmware only the cells that "
             "are alive and fire (a resting cell's next state is a table lookup: no bit differs).", "",
             "| model | implementation | seconds | cell-updates/s |", "|---|---|---:|---:|"]
    lines += [f"| {r['model']} | {r['implementation']} | {r['seconds']} | {r['cell_updates_per_s']:,} |" for r in rows]
    lines.append("")
    for model in a.models:
        mine = {r["implementation"]: r["cell_updates_per_s"] for r in rows if r["model"] == model}
        sim = mine["firmware_sim (numpy int8)"]
        ref = mine["TFLite int8, reference kernels (litert)"]
        line = f"{model}: firmware_sim / TFLite int8 reference kernels {sim / ref:.2f} (goal: >= 0.5)"
        if "C firmware (host, -O2)" in mine:
            opt = mine["TFLite int8, optimized kernels (litert)"]
            line += f"; C firmware / TFLite int8 optimized kernels {mine['C firmware (host, -O2)'] / opt:.2f}"
        lines.append(line + ".")
    text = "\n".join(lines) + "\n"
    publish(text, rows, a.write)


if __name__ == "__main__":
    main()
