"""The C firmware's footprint and speed per shipped variant, next to firmware_sim and TFLite int8.

    .venv/bin/python scripts/firmware_report.py [--models float bwn] [--digits 100] [--write docs/results/firmware.md]

For each model with a C export (`nca-edge export MODEL --format c`, into out/firmware/MODEL/):
* bit-exactness: `nca-edge verify out/firmware/MODEL --digits N` (host, -O2; 400 steps, mutation
  at 200) and `--target m4` on 2 digits (QEMU mps2-an386), when the tools are installed;
* flash: text + rodata of the step and the model constants (`make m4-size`, arm-none-eabi-gcc
  -O2, built for a 28x28 grid: -DNCA_MAX_WIDTH=28 -DNCA_MAX_CHANNELS=20);
* RAM for a 28x28 grid: the state (28 x 28 x C bytes) + the step's static buffers and tables
  (.bss) + the stack: the sum of every function's frame in nca_step.c (-fstack-usage; an upper
  bound, since nothing recurses);
* instructions per cell-step on the host: valgrind --tool=callgrind, counting inside nca_step
  only (--toggle-collect), / (S x 784 cells), one digit, S = 50 steps;
* cell-updates/s on the host, C (-O2; the driver's benchmark mode: processor time of the steps
  alone, masks made before) vs firmware_sim (numpy) vs TFLite int8 (litert, XNNPACK and
  reference kernels), same 8 digits x 100 steps, one thread, one run, processor time.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export.report import command, publish  # noqa: E402

import export  # noqa: E402
from export.runtimes import TFLiteRunner  # noqa: E402
from export.deploy import GRID_FLAGS, m4_footprint  # noqa: E402
from export.verify_c import build, toolchain_missing, verify_c  # noqa: E402
from firmware_sim import blob, int8  # noqa: E402
from firmware_sim.prng import fire_mask, fire_threshold  # noqa: E402
from nca_edge.checkpoint import default_models  # noqa: E402
from nca_edge.data import load_digits, to_float  # noqa: E402

def callgrind_per_cell(exe: Path, work: Path, channels: int, steps: int = 50) -> float:
    out = work / "cg.out"
    subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=nca_step", f"--callgrind-out-file={out}", str(exe),
                    str(work), "1", str(steps), "28", "28", "0", str(fire_threshold(0.5)), "0", "-"],
                   check=True, capture_output=True)
    text = out.read_text()
    m = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(r"^totals:\s+(\d+)", text, re.M)
    return int(m.group(1)) / (steps * 28 * 28)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--digits", type=int, default=100)
    ap.add_argument("--write", type=Path, default=None)
    a = ap.parse_args()
    d = load_digits()
    rows = []
    for name in a.models or default_models():
        if "c" not in export.supported_formats(name):
            print(f"{name}: no C export, skipped", flush=True)
            continue
        src = ROOT / "out" / "firmware" / name
        export.export_model(name, "c", src, force=True)
        params, _ = blob.load(src / "model.ncap")
        row = {"model": name}
        t = time.time()
        r = verify_c(src, digits=a.digits, steps=400, mutate_at=200)
        row["host_verify"] = f"{'bit-exact' if r.bit_exact else 'DIFFERS'} ({r.digits} digits x 400 steps, {time.time() - t:.0f} s)"
        if not toolchain_missing("m4"):
            r = verify_c(src, digits=2, steps=400, mutate_at=200, target="m4")
            row["m4_verify"] = f"{'bit-exact' if r.bit_exact else 'DIFFERS'} (2 digits x 400 steps)"
            row.update(m4_footprint(src, params.channels))
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            exe = build(src, work)
            grey = d.test_x[:8]
            (work / "input.bin").write_bytes(np.ascontiguousarray(grey[:1]).tobytes())
            if shutil.which("valgrind"):
                row["instructions_per_cell_step"] = round(callgrind_per_cell(exe, work, params.channels))
            (work / "input.bin").write_bytes(np.ascontiguousarray(grey).tobytes())
            cells = 8 * 28 * 28 * 100
            seconds = float(subprocess.run([str(exe), str(work), "8", "100", "28", "28", "0", str(fire_threshold(0.5)), "0",
                                            "-"], check=True, capture_output=True, text=True).stdout)
            row["c_cell_updates_per_s"] = round(cells / seconds)
            masks = [fire_mask(0, np.arange(8), s, 28, 28) for s in range(100)]
            s = int8.seed(params, grey)
            t = time.process_time()
            for f in masks:
                s = int8.step(params, s, f)
            row["firmware_sim_cell_updates_per_s"] = round(cells / (time.process_time() - t))
            tfl = work / "m.tflite"
            export.export_model(name, "tflite-int8", tfl, batch=8)
            for label, ref in (("tflite_int8_xnnpack", False), ("tflite_int8_reference", True)):
                runner = TFLiteRunner(tfl, "litert", reference=ref)
                x = np.zeros((8, params.channels, 28, 28), np.float32)
                x[:, 0] = to_float(grey)
                st = runner.encode(x)
                t = time.process_time()
                for f in masks:
                    st = runner.step(st, f)
                row[f"{label}_cell_updates_per_s"] = round(cells / (time.process_time() - t))
        rows.append(row)
        print(row, flush=True)
    cmd = command()
    lines = ["# C firmware: footprint and speed", "",
             f"Command: `{cmd.strip()}`; host {platform.machine()}, {os.cpu_count()} cores, "
             f"{subprocess.run(['cc', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}; "
             "Cortex-M4 figures from arm-none-eabi-gcc -O2 (flash = text + rodata + data of the step and the model; "
             "RAM for 28x28 = state + static buffers and tables + stack bound (every frame in nca_step.c summed); "
             "C speed from the driver's benchmark mode: processor time of the steps alone).", "",
             "| model | host bit-exact | Cortex-M4 (QEMU) bit-exact | flash (B) | RAM 28x28 (B) | instructions / cell-step | "
             "C cell-updates/s | firmware_sim | TFLite int8 XNNPACK | TFLite int8 reference |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['host_verify']} | {r.get('m4_verify', 'not run')} | {r.get('flash_bytes', '')} | "
                     f"{r.get('ram_28x28_bytes', '')} | {r.get('instructions_per_cell_step', '')} | "
                     f"{r['c_cell_updates_per_s']:,} | {r['firmware_sim_cell_updates_per_s']:,} | "
                     f"{r['tflite_int8_xnnpack_cell_updates_per_s']:,} | {r['tflite_int8_reference_cell_updates_per_s']:,} |")
    text = "\n".join(lines) + "\n"
    publish(text, rows, a.write)


if __name__ == "__main__":
    main()
