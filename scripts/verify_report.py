"""Bit-exactness of every shipped int8 export against firmware_sim, in both TFLite runtimes.

    .venv/bin/python scripts/verify_report.py [--models float bwn] [--digits 200] [--steps 400] \
        [--jobs 2] [--write docs/results/verify.md]

For each model with a packed export: `nca-edge verify out/verify/MODEL.ncap` (the blob's device
arithmetic against the int8 definition, numpy). For each model with a tflite-int8 export (batch 8,
28x28, into out/verify/MODEL.tflite):
`nca-edge verify` in tflite-runtime 2.14 and ai-edge-litert, with the reference kernels
(BUILTIN_REF: must be bit-exact) and with the default optimized kernels (XNNPACK: how often a
step differs from the reference semantics, each step compared from the runtime's own previous
state); kind tflm: `nca-edge verify --runtime tflm` (TensorFlow Lite Micro, batch 1 files, with
the arena it needs). The table goes to --write and its JSON beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export.report import command, publish  # noqa: E402

from export import export_model, supported_formats  # noqa: E402
from export.verify import verify_in_child, verify_packed  # noqa: E402
from nca_edge.checkpoint import default_models  # noqa: E402


ORDER = {"float": 0, "bwn": 1, "ban": 2, "bnn": 3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--digits", type=int, default=200)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--optimized-digits", type=int, default=50, help="digits for the optimized-kernel rows")
    ap.add_argument("--jobs", type=int, default=1, help="rows run at once (each in its own child process)")
    ap.add_argument("--kinds", nargs="+", choices=["tflite", "packed", "tflm"], default=["tflite", "packed", "tflm"],
                    help="tflite: the int8 files in both runtimes; packed: the packed blobs' device arithmetic "
                         "(firmware_sim.xnor) against the int8 definition; tflm: the batch-1 int8 file in "
                         "TensorFlow Lite Micro")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of --write's JSON that this run does not recompute")
    ap.add_argument("--write", type=Path, default=None)
    a = ap.parse_args()
    tasks = []
    for name in a.models or default_models():
        if "tflite-int8" not in supported_formats(name):
            print(f"{name}: no tflite-int8 export, skipped", flush=True)
            continue
        if "tflite" in a.kinds:
            path = ROOT / "out" / "verify" / f"{name}.tflite"
            export_model(name, "tflite-int8", path, force=True, batch=8)
            tasks += [(name, path, reference, runtime) for reference in (True, False) for runtime in ("tflite-runtime", "litert")]
        if "tflm" in a.kinds:
            path = ROOT / "out" / "verify" / f"{name}-batch1.tflite"
            export_model(name, "tflite-int8", path, force=True, batch=1)
            tasks.append((name, path, True, "tflm"))
        if "packed" in a.kinds:
            path = ROOT / "out" / "verify" / f"{name}.ncap"
            export_model(name, "packed", path, force=True)
            tasks.append((name, path, True, "packed"))
    cmd = command().strip()

    def run(task) -> dict:
        name, path, reference, runtime = task
        t = time.time()
        digits = a.digits if reference else a.optimized_digits
        if runtime == "packed":
            r = verify_packed(str(path), digits, a.steps, mutate_at=a.steps // 2)
        else:
            r = verify_in_child(path, runtime, reference, digits, a.steps, mutate_at=a.steps // 2)
        f = r.first
        row = {"model": name, "runtime": runtime, "kernels": r.kernels, "digits": r.digits, "steps": r.steps,
               "values_compared": r.values_compared, "values_differing": r.values_differing,
               "steps_compared": r.steps_compared, "steps_differing": r.steps_differing,
               "result": ("bit-exact" if r.bit_exact else f"differs (first: step {f['step']}, layer {f['layer']})")
               + (f"; arena {r.meta['arena_bytes']:,} B" if "arena_bytes" in r.meta else ""),
               "seconds": round(time.time() - t, 1), "command": cmd}
        print(row, flush=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:  # the work is in child processes
        rows = list(pool.map(run, tasks))
    if a.merge and a.write and a.write.with_suffix(".json").is_file():
        new = {(r["model"], r["runtime"], r["kernels"]) for r in rows}
        old = [r for r in json.loads(a.write.with_suffix(".json").read_text()) if (r["model"], r["runtime"], r["kernels"]) not in new]
        rows = old + rows
    rows = sorted(rows, key=lambda r: (ORDER.get(r["model"], 9), r["runtime"] == "packed", r["runtime"] == "tflm",
                                       r["kernels"] != "reference"))
    # rows of a run made before rows recorded their command: that run's command (tflite rows only then)
    commands = list(dict.fromkeys(r.get("command", "python scripts/verify_report.py --digits 200 --optimized-digits 20 "
                                                    "--jobs 2 --write docs/results/verify.md") for r in rows))
    lines = ["# int8 exports and packed blobs vs firmware_sim (bit-exactness)", "",
             "Commands: " + "; ".join(f"`{c}`" for c in commands) + ". Each tflite row is `nca-edge verify "
             f"out/verify/MODEL.tflite --digits N --steps {a.steps} --runtime RUNTIME [--optimized]`, each packed "
             f"row `nca-edge verify out/verify/MODEL.ncap --digits N --steps {a.steps}` (the blob's device "
             "arithmetic, firmware_sim.xnor: binary activations as bits, thresholds on accumulators, XNOR/popcount; "
             f"against the int8 definition); mutation at step {a.steps // 2}. The optimized "
             "rows compare each step from the runtime's previous state, so they count per-step differences.", "",
             "| model | runtime | kernels | digits x steps | values compared | values differing | digit-steps differing (%) | result | seconds |",
             "|---|---|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        share = 100.0 * r["steps_differing"] / max(r["steps_compared"], 1)
        lines.append(f"| {r['model']} | {r['runtime']} | {r['kernels']} | {r['digits']} x {r['steps']} | {r['values_compared']:,} | "
                     f"{r['values_differing']:,} | {share:.2f} | {r['result']} | {r['seconds']} |")
    text = "\n".join(lines) + "\n"
    publish(text, rows, a.write)


if __name__ == "__main__":
    main()
