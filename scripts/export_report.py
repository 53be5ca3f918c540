"""Export every shipped model in every format and measure each artifact in its runtime.

    .venv/bin/python scripts/export_report.py [--models float bwn] [--digits 500] [--write docs/results/export.md]

For each model: `nca-edge export MODEL --all` (batch 50, 28x28) into out/export/MODEL/, then
* float formats (onnx in onnxruntime, tflite in tflite-runtime 2.14 and ai-edge-litert, lce in LCE's
  interpreter for the binary-activation variants):
  share of alive-cell labels equal to PyTorch's over 100 steps on the first 100 test digits
  (same masks), and accuracy/agreement at step 100;
* tflite-int8 (tflite-runtime 2.14 and ai-edge-litert) and onnx-qdq (onnxruntime): accuracy and agreement at step 200 on
  the first --digits test digits, next to the PyTorch fake-quant model's (export/fakequant.py).
The table goes to --write (a docs/results fragment) and its JSON beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import publish  # noqa: E402

from export import export_all, export_model  # noqa: E402
from export.fakequant import FakeQuantRunner  # noqa: E402
from export.packed_export import int8_step_from_tflite  # noqa: E402
from firmware_sim.protocol import run_int8  # noqa: E402
from export.host import run_protocol  # noqa: E402
from export.runtimes import TorchRunner, run_in_child  # noqa: E402
from nca_edge.checkpoint import load_checkpoint, resolve_model  # noqa: E402
from nca_edge.compare import default_models  # noqa: E402
from nca_edge.data import load_digits  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--digits", type=int, default=500)
    ap.add_argument("--write", type=Path, default=None)
    a = ap.parse_args()
    d = load_digits()
    rows = []
    for name in a.models or default_models():
        out = ROOT / "out" / "export" / name
        manifest = export_all(name, out, force=True, batch=50)
        files = {e["format"]: e for e in manifest["artifacts"]}
        model, config, _ = load_checkpoint(resolve_model(name))
        ca = config.ca.__dict__
        ref = run_protocol(TorchRunner(model), d.test_x[:100], d.test_y[:100], ca, steps=100, mutate_at=None,
                           record_labels=True)
        alive = ref.labels >= 0
        for fmt, runtime in [("onnx", "onnxruntime"), ("tflite", "tflite-runtime"), ("tflite", "litert"), ("lce", "lce")]:
            if fmt not in files:
                continue
            t = time.time()
            path = out / files[fmt]["file"]
            if fmt == "lce":  # LCE's Python interpreter feeds one sample per call: it runs batch-1 files only
                path = out / f"{name}-lce-batch1.tflite"
                export_model(name, "lce", path, force=True, batch=1)
            got = run_in_child(path, runtime, digits=100, steps=100, mutate_at=0, labels=True)
            rows.append({"model": name, "format": fmt, "runtime": runtime, "bytes": files[fmt]["bytes"],
                         "check": "labels equal to PyTorch (100 digits x 100 steps)",
                         "value": round(100 * float((got["labels"] == ref.labels)[alive].mean()), 3),
                         "accuracy": round(float(got["accuracy"][-1]), 2), "agreement": round(float(got["agreement"][-1]), 2),
                         "ref_accuracy": round(float(ref.accuracy[-1]), 2), "ref_agreement": round(float(ref.agreement[-1]), 2),
                         "step": 100, "seconds": round(time.time() - t, 1)})
            print(rows[-1], flush=True)
        int8 = out / files["tflite-int8"]["file"]
        fq = run_protocol(FakeQuantRunner(model, int8), d.test_x[: a.digits], d.test_y[: a.digits], ca, steps=200,
                          mutate_at=None)
        for fmt, runtime in (("tflite-int8", "tflite-runtime"), ("tflite-int8", "litert"), ("onnx-qdq", "onnxruntime")):
            if fmt not in files:
                continue
            t = time.time()
            got = run_in_child(out / files[fmt]["file"], runtime, digits=a.digits, steps=200, mutate_at=0)
            rows.append({"model": name, "format": fmt, "runtime": runtime, "bytes": files[fmt]["bytes"],
                         "check": f"vs fake-quant model ({a.digits} digits, step 200)", "value": None,
                         "accuracy": round(float(got["accuracy"][199]), 2), "agreement": round(float(got["agreement"][199]), 2),
                         "ref_accuracy": round(float(fq.accuracy[199]), 2), "ref_agreement": round(float(fq.agreement[199]), 2),
                         "step": 200, "seconds": round(time.time() - t, 1)})
            print(rows[-1], flush=True)
        if model.cfg.binary_activations:
            # XNNPACK's requantization rounds differently from the reference kernels, and a binary unit at its
            # threshold turns that into a different trajectory: also run the file's reference semantics
            # (firmware_sim, bit-exact with BUILTIN_REF: nca-edge verify), which is faster than BUILTIN_REF itself.
            t = time.time()
            got = run_int8(int8_step_from_tflite((out / files["tflite-int8"]["file"]).read_bytes()),
                           d.test_x[: a.digits], d.test_y[: a.digits], config.ca.n_classes, 200, None, 0, "sync",
                           config.ca.fire_rate)
            rows.append({"model": name, "format": "tflite-int8", "runtime": "firmware_sim (= reference kernels)",
                         "bytes": files["tflite-int8"]["bytes"], "check": f"vs fake-quant model ({a.digits} digits, step 200)",
                         "value": None, "accuracy": round(float(got["accuracy"][199]), 2),
                         "agreement": round(float(got["agreement"][199]), 2),
                         "ref_accuracy": round(float(fq.accuracy[199]), 2), "ref_agreement": round(float(fq.agreement[199]), 2),
                         "step": 200, "seconds": round(time.time() - t, 1)})
            print(rows[-1], flush=True)
    lines = ["# Exported artifacts in their runtimes", "",
             "| model | format | runtime | bytes | labels equal to PyTorch (%) | accuracy | agreement | reference accuracy | reference agreement | at step | seconds |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        eq = "" if r["value"] is None else f"{r['value']:.3f}"
        lines.append(f"| {r['model']} | {r['format']} | {r['runtime']} | {r['bytes']:,} | {eq} | {r['accuracy']:.2f} | "
                     f"{r['agreement']:.2f} | {r['ref_accuracy']:.2f} | {r['ref_agreement']:.2f} | {r['step']} | {r['seconds']} |")
    lines += ["", "Float formats (and lce): 100 test digits, 100 steps, no mutation, same masks as PyTorch; reference = PyTorch. "
              f"tflite-int8 and onnx-qdq: {a.digits} test digits, 200 steps; reference = the PyTorch fake-quant model with the file's "
              "quantization (export/fakequant.py); tflite-runtime and litert run their default (XNNPACK) kernels, and for the "
              "binary-activation variants the file's reference semantics also run (firmware_sim, bit-exact with the reference "
              "kernels). Artifacts exported with batch 50 on a 28x28 grid; seconds = the whole "
              "host loop in a child process, one thread.", "",
              f"Command: `.venv/bin/python scripts/export_report.py --digits {a.digits} --write docs/results/export.md` "
              "(every shipped model in every format it supports)", ""]
    text = "\n".join(lines)
    publish(text, rows, a.write)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
