"""Export every shipped model in every format and measure each artifact in its runtime.

    .venv/bin/python scripts/export_report.py [--models float bwn] [--digits 500] [--jobs 2] [--merge]
        [--runtimes tflite-runtime firmware_sim] [--write docs/results/export.md] [--render-only]

For each model: `nca-edge export MODEL --all` (batch 50, 28x28) into out/export/MODEL/, then
* float formats (onnx in onnxruntime, tflite in tflite-runtime 2.14 and ai-edge-litert, lce in LCE's
  interpreter for the binary-activation variants):
  share of alive-cell labels equal to PyTorch's over 100 steps on the first 100 test digits
  (same masks), and accuracy/agreement at step 100;
* tflite-int8 (tflite-runtime 2.14 and ai-edge-litert) and onnx-qdq (onnxruntime): accuracy and agreement at step 200 on
  the first --digits test digits, and the same for the file's reference semantics (firmware_sim),
  next to the PyTorch fake-quant model's (export/fakequant.py) with the runtime's rounding, with
  the digits whose total agreement at step 200 differs between the two runs (paired counts).
The table goes to --write (a docs/results fragment) and its JSON beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export.report import command, publish  # noqa: E402

from export import export_all, export_model  # noqa: E402
from export.fakequant import FakeQuantRunner  # noqa: E402
from export.packed_export import int8_step_from_tflite  # noqa: E402
from firmware_sim.protocol import run_int8  # noqa: E402
from export.host import run_protocol  # noqa: E402
from export.runtimes import TorchRunner, run_in_child  # noqa: E402
from nca_edge.checkpoint import load_checkpoint, resolve_model  # noqa: E402
from nca_edge.checkpoint import default_models  # noqa: E402
from nca_edge.data import load_digits  # noqa: E402


ORDER = {"float": 0, "bwn": 1, "ban": 2, "bnn": 3}
# How each runtime rounds a requantized value: XNNPACK (litert) and onnxruntime once, in float;
# TFLite's fixed-point kernels twice (firmware_sim: the reference kernels; tflite-runtime 2.14's
# built-in kernels measure alike, docs/export.md). The fake-quant reference follows suit.
ROUNDING = {"tflite-runtime": "tflite", "firmware_sim (= reference kernels)": "tflite"}
REF_NAMES = {"half-even": "one rounding", "tflite": "TFLite rounding"}
FIRST_COMMAND = "python scripts/export_report.py --digits 500 --write docs/results/export.md"  # rows recorded before rows had one


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--digits", type=int, default=500, help="test digits for the int8 comparisons")
    ap.add_argument("--jobs", type=int, default=1, help="runtime rows run at once (each in its own child process)")
    ap.add_argument("--merge", action="store_true", help="keep the rows of --write's JSON of the models not run now")
    ap.add_argument("--runtimes", nargs="+", default=None, choices=["float", "tflite-runtime", "litert", "onnxruntime", "firmware_sim"],
                    help="measure only these int8 rows ('float': the float formats' rows); with --merge the other rows "
                         "of --write's JSON stay as they are")
    ap.add_argument("--rounding", choices=["auto", "half-even", "tflite"], default="auto",
                    help="the fake-quant reference's rounding: 'auto' (default) as each runtime's kernels round, or one "
                         "for every row (to see what the other rounding gives)")
    ap.add_argument("--write", type=Path, default=None)
    ap.add_argument("--render-only", action="store_true",
                    help="measure nothing: render --write's JSON rows again (after a change to the table's layout)")
    a = ap.parse_args()
    if a.render_only:
        if not (a.write and a.write.with_suffix(".json").is_file()):
            raise SystemExit("--render-only needs --write PATH with its rows in PATH's .json beside it")
        rows = json.loads(a.write.with_suffix(".json").read_text())
        publish(render(rows), rows, a.write)
        return
    def rounding_of(runtime: str) -> str:  # the fake-quant reference's rounding for a runtime's row
        return ROUNDING.get(runtime, "half-even") if a.rounding == "auto" else a.rounding

    d = load_digits()
    cmd = command().strip()
    rows = []
    pool = ThreadPoolExecutor(max_workers=max(1, a.jobs))  # the runtimes work in child processes
    for name in a.models or default_models():
        out = ROOT / "out" / "export" / name
        manifest = export_all(name, out, force=True, batch=50)
        files = {e["format"]: e for e in manifest["artifacts"]}
        model, config, _ = load_checkpoint(resolve_model(name))
        ca = config.ca.__dict__
        ref = run_protocol(TorchRunner(model), d.test_x[:100], d.test_y[:100], ca, steps=100, mutate_at=None,
                           record_labels=True)
        alive = ref.labels >= 0

        def float_row(fmt, runtime):
            t = time.time()
            path = out / files[fmt]["file"]
            if fmt == "lce":  # LCE's Python interpreter feeds one sample per call: it runs batch-1 files only
                path = out / f"{name}-lce-batch1.tflite"
                export_model(name, "lce", path, force=True, batch=1)
            got = run_in_child(path, runtime, digits=100, steps=100, mutate_at=0, labels=True)
            return {"model": name, "format": fmt, "runtime": runtime, "bytes": files[fmt]["bytes"], "digits": 100,
                    "check": "labels equal to PyTorch (100 digits x 100 steps)",
                    "value": round(100 * float((got["labels"] == ref.labels)[alive].mean()), 3),
                    "accuracy": round(float(got["accuracy"][-1]), 2), "agreement": round(float(got["agreement"][-1]), 2),
                    "ref_accuracy": round(float(ref.accuracy[-1]), 2), "ref_agreement": round(float(ref.agreement[-1]), 2),
                    "ref_only": None, "runtime_only": None, "step": 100, "seconds": round(time.time() - t, 1), "command": cmd}

        int8 = out / files["tflite-int8"]["file"]

        def int8_row(fmt, runtime):
            t = time.time()
            got = run_in_child(out / files[fmt]["file"], runtime, digits=a.digits, steps=200, mutate_at=0)
            return {"format": fmt, "runtime": runtime, "bytes": files[fmt]["bytes"], "got": got, "seconds": round(time.time() - t, 1)}

        wanted = set(a.runtimes or ["float", "tflite-runtime", "litert", "onnxruntime", "firmware_sim"])
        jobs = [pool.submit(float_row, fmt, rt) for fmt, rt in
                [("onnx", "onnxruntime"), ("tflite", "tflite-runtime"), ("tflite", "litert"), ("lce", "lce")]
                if fmt in files and "float" in wanted]
        jobs += [pool.submit(int8_row, fmt, rt) for fmt, rt in
                 [("tflite-int8", "tflite-runtime"), ("tflite-int8", "litert"), ("onnx-qdq", "onnxruntime")]
                 if fmt in files and rt in wanted]
        sim = "firmware_sim" in wanted
        # each runtime against the fake-quant model with its requantization's rounding (export/fakequant.py)
        roundings = {rounding_of(rt) for rt in ("tflite-runtime", "litert", "onnxruntime") if rt in wanted}
        roundings |= {rounding_of("firmware_sim (= reference kernels)")} if sim else set()
        fqs = {r: run_protocol(FakeQuantRunner(model, int8, rounding=r), d.test_x[: a.digits], d.test_y[: a.digits], ca,
                               steps=200, mutate_at=None) for r in sorted(roundings)}
        results = []
        if sim:
            # XNNPACK's requantization rounds differently from the reference kernels (docs/export.md): also run
            # the file's reference semantics (firmware_sim, bit-exact with BUILTIN_REF: nca-edge verify), which
            # is faster than BUILTIN_REF itself.
            t = time.time()
            got = run_int8(int8_step_from_tflite(int8.read_bytes()), d.test_x[: a.digits], d.test_y[: a.digits],
                           config.ca.n_classes, 200, None, 0, "sync", config.ca.fire_rate)
            results.append({"format": "tflite-int8", "runtime": "firmware_sim (= reference kernels)",
                            "bytes": files["tflite-int8"]["bytes"], "got": got, "seconds": round(time.time() - t, 1)})
        for job in jobs:
            r = job.result()
            if "got" in r:
                results.insert(len(results) - (1 if sim else 0), r)
            else:
                rows.append(r)
                print(r, flush=True)
        for r in results:  # vs the fake-quant model: the metrics at step 200, and the digits whose agreement differs
            got = r.pop("got")
            rounding = rounding_of(r["runtime"])
            fq = fqs[rounding]
            r.update({"ref_rounding": rounding, "model": name, "digits": a.digits, "check": f"vs fake-quant model ({a.digits} digits, step 200)",
                      "value": None, "accuracy": round(float(got["accuracy"][199]), 2),
                      "agreement": round(float(got["agreement"][199]), 2),
                      "ref_accuracy": round(float(fq.accuracy[199]), 2), "ref_agreement": round(float(fq.agreement[199]), 2),
                      "ref_only": int((fq.agree_last & ~got["agree_last"]).sum()),
                      "runtime_only": int((~fq.agree_last & got["agree_last"]).sum()), "step": 200, "command": cmd})
            rows.append(r)
            print(r, flush=True)
    pool.shutdown()
    if a.merge and a.write and a.write.with_suffix(".json").is_file():
        if a.runtimes:  # replace only the rows measured now, in place
            new = {(r["model"], r["format"], r["runtime"]): r for r in rows}
            old = json.loads(a.write.with_suffix(".json").read_text())
            kept = {(r["model"], r["format"], r["runtime"]) for r in old}
            rows = [new.get((r["model"], r["format"], r["runtime"]), r) for r in old] + \
                [r for k, r in new.items() if k not in kept]
        else:
            done = {r["model"] for r in rows}
            rows = [r for r in json.loads(a.write.with_suffix(".json").read_text()) if r["model"] not in done] + rows
    publish(render(rows), rows, a.write)


def sign_test_p(a: int, b: int) -> float:
    """Exact two-sided sign (McNemar) test on the discordant pairs: P(a split at least this uneven)
    if each of the a + b digits were equally likely to agree in either run alone."""
    n, k = a + b, min(a, b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def render(rows: list[dict]) -> str:
    rows = sorted(rows, key=lambda r: ORDER.get(r["model"], 9))  # stable: each model's rows keep their order
    for r in rows:  # rows recorded before rows carried their digits, paired counts and command
        r.setdefault("digits", int(re.search(r"\((\d+) digits", r["check"]).group(1)))
        r.setdefault("ref_only", None)
        r.setdefault("runtime_only", None)
        r.setdefault("command", FIRST_COMMAND)
        r.setdefault("ref_rounding", "half-even")  # rows measured before the reference followed the runtime
    commands = list(dict.fromkeys(r["command"] for r in rows))
    lines = ["# Exported artifacts in their runtimes", "",
             "| model | format | runtime | bytes | digits | labels equal to PyTorch (%) | accuracy | agreement | reference | reference accuracy | "
             "reference agreement | agreeing: reference only / runtime only | sign test p | at step | seconds |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        eq = "" if r["value"] is None else f"{r['value']:.3f}"
        paired = "" if r["ref_only"] is None else f"{r['ref_only']} / {r['runtime_only']}"
        p = "" if r["ref_only"] is None else f"{sign_test_p(r['ref_only'], r['runtime_only']):.2f}"
        ref = "PyTorch" if r["value"] is not None else f"fake-quant, {REF_NAMES[r['ref_rounding']]}"
        lines.append(f"| {r['model']} | {r['format']} | {r['runtime']} | {r['bytes']:,} | {r['digits']} | {eq} | {r['accuracy']:.2f} | "
                     f"{r['agreement']:.2f} | {ref} | {r['ref_accuracy']:.2f} | {r['ref_agreement']:.2f} | {paired} | {p} | {r['step']} | "
                     f"{r['seconds']} |")
    lines += ["", "Float formats (and lce): the first 100 test digits, 100 steps, no mutation, same masks as PyTorch; "
              "reference = PyTorch. tflite-int8 and onnx-qdq: the first N test digits (the digits column), 200 steps; "
              "reference = the PyTorch fake-quant model with the file's quantization (export/fakequant.py), rounding as the "
              "runtime requantizes: \"one rounding\" (to nearest, ties to even, in float: litert's XNNPACK kernels and "
              "onnxruntime) or \"TFLite rounding\" (TFLite's fixed-point requantization, two roundings: the reference "
              "kernels, and tflite-runtime 2.14's built-in kernels, which measure alike; docs/export.md). The file's "
              "reference semantics also run (firmware_sim, bit-exact with the reference kernels). "
              "\"agreeing: reference only / runtime only\": the digits whose alive cells all agree at step 200 in one run "
              "and not in the other; their difference over the digits is the agreement difference, their sum shows how "
              "much of it is chance (two executions whose integers differ in one rounding follow different trajectories "
              "from there on; with binary activations that happens on about one digit in ten). "
              "\"sign test p\": the exact two-sided sign test (McNemar) on those two counts, the chance of a split at least "
              "that uneven if each such digit were equally likely to fall either way: a small p (below 0.01, say) marks a "
              "systematic difference, a larger one a gap within what equally correct executions produce. Artifacts exported with "
              "batch 50 on a 28x28 grid; seconds = the whole host loop, in a child process on one thread (with --jobs, rows run at once).", "",
              "Commands: " + "; ".join(f"`{c}`" for c in commands) + " (every shipped model in every format it supports)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
