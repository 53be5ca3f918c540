"""Where the fake-quant model and the file's integer semantics part, op by op, on identical inputs.

For each shipped model: the int8 CA runs in ``firmware_sim`` (the reference kernels' arithmetic)
for ``--steps`` steps on the first ``--digits`` test digits. Every ``--every`` steps, each op of
the firing cells' update is also computed by the fake-quant model (``export.fakequant``: the
file's constants in float, one round-half-to-even per quantized tensor) **from the integer
path's own input to that op**, and the two int8 outputs are compared. So each row is that op's
own difference, not one inherited from an earlier op. "fq > int" counts outputs where the
fake-quant code is the larger; for a binary activation, where the fake-quant unit is on and the
integer one off. Unequal counts on a threshold row mean the two roundings part in one direction
there: a bias in the trajectories, not noise.

    python scripts/int8_stages.py --write docs/results/int8_stages.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402
from export.report import command, publish  # noqa: E402

from export import export_model  # noqa: E402
from export.fakequant import FakeQuantRunner, quantize_code  # noqa: E402
from export.packed_export import int8_step_from_tflite  # noqa: E402
from firmware_sim import int8  # noqa: E402
from firmware_sim.prng import fire_mask  # noqa: E402
from nca_edge.checkpoint import load_checkpoint, resolve_model  # noqa: E402
from nca_edge.checkpoint import default_models  # noqa: E402
from nca_edge.data import load_digits  # noqa: E402


def codes(x: torch.Tensor, scale: float, zero: int) -> np.ndarray:
    """The fake-quant model's int8 code of a float tensor (export.fakequant.quantize_code)."""
    return quantize_code(x, scale, zero).to(torch.int32).numpy()


def stages(name: str, digits, n: int, steps: int, every: int) -> list[dict]:
    path = ROOT / "out" / "stages" / f"{name}-int8.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    export_model(name, "tflite-int8", path, force=True, batch=1)
    model, config, _ = load_checkpoint(resolve_model(name))
    fq = FakeQuantRunner(model, path)
    p = int8_step_from_tflite(path.read_bytes())
    convs, (m1, m2), add = fq.q["conv"], fq.q["mul"], fq.q["add"]
    s_state, z_state = fq.q["state"]
    acts = [p.act1, p.act2, None]
    counts: dict[str, list[int]] = {}

    def tally(op: str, ours: np.ndarray, theirs: np.ndarray) -> None:
        d = ours.astype(np.int64) - theirs.astype(np.int64)
        c = counts.setdefault(op, [0, 0, 0, 0])
        c[0] += d.size
        c[1] += int((d != 0).sum())
        c[2] += int((d > 0).sum())
        c[3] += int((d < 0).sum())

    ids = np.arange(n)
    q = int8.seed(p, digits.test_x[ids])
    for t in range(steps):
        trace: dict = {}
        nxt = int8.step(p, q, fire_mask(0, ids, t, q.shape[1], q.shape[2], config.ca.fire_rate), trace=trace)
        if t % every == 0 and "cells" in trace:
            b, y, x = trace["cells"]
            patches = int8._patches(q.astype(np.int32), b, y, x, p.conv1.input_zero).reshape(len(b), -1)
            inp = torch.from_numpy(((patches - z_state) * s_state).astype(np.float32))
            for k, act in enumerate(acts):
                out = trace[f"conv{k + 1}"]
                # the runner's own convolution (its output is on the int8 grid: the code is exact)
                ours = codes(fq._conv(k, inp, relu=k < 2 and not model.cfg.binary_activations), *convs[k])
                tally(f"conv{k + 1}", ours, out)
                if act is not None:
                    tally(f"binary activation {k + 1}", ours >= act.min_q, out >= act.min_q)
                    inp = torch.from_numpy((out >= act.min_q).astype(np.float32))
                else:
                    inp = torch.from_numpy(((out - convs[k][1]) * convs[k][0]).astype(np.float32))
            tally("mul (fire)", codes(inp, *m1), trace["mul1"])  # fire = 1 on these cells
            m = torch.from_numpy(((trace["mul1"] - m1[1]) * m1[0]).astype(np.float32))
            tally("mul (alive)", codes(m, *m2), trace["mul2"][b, y, x])
            m = torch.from_numpy(((trace["mul2"][b, y, x] - m2[1]) * m2[0]).astype(np.float32))
            old = torch.from_numpy(((q[b, y, x, 1:].astype(np.int32) - z_state) * s_state).astype(np.float32))
            tally("add", codes(old + m, *add), trace["add"][b, y, x])
        q = nxt
    return [{"model": name, "op": op, "outputs": c[0], "differ": c[1], "fq_greater": c[2], "fq_smaller": c[3]}
            for op, c in counts.items()]


def render(rows: list[dict], cmd: str, n: int, steps: int, every: int) -> str:
    lines = ["# Fake-quant model vs integer semantics, op by op", "",
             "| model | op | outputs compared | differ | share | fq > int | fq < int |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['op']} | {r['outputs']:,} | {r['differ']:,} | "
                     f"{r['differ'] / max(r['outputs'], 1):.2e} | {r['fq_greater']:,} | {r['fq_smaller']:,} |")
    lines += ["", f"The first {n} test digits, {steps} steps, compared every {every} steps on the cells that fire. "
              "Each op is computed by the fake-quant model from the integer path's own input to it (so a row is "
              "that op's own difference). For a binary activation, fq > int counts units on in the fake-quant "
              "model and off in the integer one. Integer side: firmware_sim (bit-exact with TFLite's reference "
              "kernels); fake-quant side: export/fakequant.py with its default rounding (one, ties to even) on the same batch-1 "
              "tflite-int8 file.", "",
              f"Command: `{cmd}`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None, help="default: every shipped model")
    ap.add_argument("--digits", type=int, default=50)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=5, help="compare the ops on every k-th step")
    ap.add_argument("--write", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    d = load_digits()
    rows = []
    for name in a.models or default_models():
        rows += stages(name, d, a.digits, a.steps, a.every)
        print("\n".join(str(r) for r in rows if r["model"] == name), flush=True)
    publish(render(rows, command().strip(), a.digits, a.steps, a.every), rows, a.write)


if __name__ == "__main__":
    main()
