"""How well does a CA trained with random masks survive real asynchrony? (int8, firmware_sim)

    .venv/bin/python scripts/schedules_report.py [--models float bwn] [--digits 200] \
        [--schedules sync async stale:1 stale:2 stale:4] [--write docs/results/schedules.md]

For each shipped model with an int8 step: its packed export (built in memory), run by
``firmware_sim.protocol.run_int8`` on the first --digits test digits, 400 steps, mutation at
step 200, fire masks from firmware_sim.prng (mask seed 0), under each schedule
(firmware_sim/schedules.py). Accuracy and total agreement at steps 200 and 400.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export.report import command, publish  # noqa: E402

import export  # noqa: E402
from export.packed_export import int8_step_from_tflite  # noqa: E402
from firmware_sim import blob  # noqa: E402
from firmware_sim.protocol import run_int8  # noqa: E402
from nca_edge.checkpoint import default_models  # noqa: E402
from nca_edge.data import load_digits  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--digits", type=int, default=200)
    ap.add_argument("--schedules", nargs="*", default=["sync", "async", "stale:1", "stale:2", "stale:4"])
    ap.add_argument("--write", type=Path, default=None)
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of --write's JSON for the models not run now")
    a = ap.parse_args()
    cmd = command().strip()
    d = load_digits()
    rows = []
    for name in a.models or default_models():
        formats = export.supported_formats(name)
        if "packed" in formats:
            data, record = export.build(name, "packed")
            params, _ = blob.loads(data)
        elif "tflite-int8" in formats:  # binary activations: the int8 file's own parameters
            data, record = export.build(name, "tflite-int8")
            params = int8_step_from_tflite(data)
        else:
            print(f"{name}: no int8 step, skipped", flush=True)
            continue
        ca = record["config"]["ca"]
        for sch in a.schedules:
            t = time.time()
            r = run_int8(params, d.test_x[: a.digits], d.test_y[: a.digits], ca["n_classes"], 400, 200, 0, sch,
                         ca["fire_rate"])
            rows.append({"model": name, "schedule": sch, "accuracy_200": round(float(r["accuracy"][199]), 2),
                         "agreement_200": round(float(r["agreement"][199]), 2),
                         "accuracy_400": round(float(r["accuracy"][399]), 2),
                         "agreement_400": round(float(r["agreement"][399]), 2), "seconds": round(time.time() - t, 1),
                         "command": cmd})
            print(rows[-1], flush=True)
    if a.merge and a.write and a.write.with_suffix(".json").is_file():
        order = {m: i for i, m in enumerate(default_models())}
        run = {r["model"] for r in rows}
        old = [r for r in json.loads(a.write.with_suffix(".json").read_text()) if r["model"] not in run]
        rows = sorted(old + rows, key=lambda r: order.get(r["model"], len(order)))  # stable: schedules keep their order
    # rows of a run made before rows recorded their command: that run's command
    commands = list(dict.fromkeys(r.get("command", "python scripts/schedules_report.py --digits 50 "
                                                    "--write docs/results/schedules.md") for r in rows))
    lines = ["# Update schedules (int8, firmware_sim)", "",
             "Commands: " + "; ".join(f"`{c}`" for c in commands) + f"; first {a.digits} test digits, 400 steps, mutation at step 200, mask seed 0. "
             "sync = the trained random mask; async = the same firing cells one at a time in random order, each "
             "reading its neighbours' latest states; stale:K = neighbours seen K steps late.", "",
             "| model | schedule | accuracy@200 | agreement@200 | accuracy@400 | agreement@400 | seconds |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['schedule']} | {r['accuracy_200']:.2f} | {r['agreement_200']:.2f} | "
              f"{r['accuracy_400']:.2f} | {r['agreement_400']:.2f} | {r['seconds']} |" for r in rows]
    text = "\n".join(lines) + "\n"
    publish(text, rows, a.write)


if __name__ == "__main__":
    main()
