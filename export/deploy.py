"""What each variant costs on the stacks a microcontroller user deploys to (``nca-edge deploy-report``).

For a model's ``tflite-int8`` step (28x28, batch 1) and its C export:

* the file: bytes, and the tensors that are not integers (must be none: ``export.integer_only``);
* TensorFlow Lite for Microcontrollers: the tensor arena it needs (``export.tflm.arena_bytes``);
* Arm Ethos-U55-128 through vela (pip ``ethos-u-vela``, its default Ethos_U55_High_End_Embedded
  system config, 500 MHz): operators on the NPU and on the CPU, SRAM and flash it uses, NPU
  cycles per CA step and per classification (200 steps), and that time at vela's clock;
* the C firmware on a Cortex-M4 (``arm-none-eabi-gcc -O2``): flash and RAM for a 28x28 grid.

Each part is optional: a tool that is not installed gives ``None`` cells and a note naming its
install command, never an error.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from nca_edge.errors import NCAEdgeError

STEPS_PER_CLASSIFICATION = 200  # the article's protocol reads the vote at step 200
GRID_FLAGS = "-DNCA_MAX_WIDTH=28 -DNCA_MAX_CHANNELS=20"
VELA_ACCELERATOR = "ethos-u55-128"
VELA_INSTALL = "pip install ethos-u-vela"
ARM_INSTALL = "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi"


def non_integer_tensors(path) -> list[str]:
    """Names and types of the file's tensors that are not int8 / int16 / int32."""
    from ai_edge_litert.interpreter import Interpreter

    from nca_edge.larq_mirror import quiet_stderr

    import numpy as np

    with quiet_stderr():
        it = Interpreter(model_path=str(path))
    return [f"{t['name']} ({np.dtype(t['dtype']).name})" for t in it.get_tensor_details()
            if np.dtype(t["dtype"]) not in (np.int8, np.int16, np.int32)]


def vela_available() -> bool:
    return shutil.which("vela") is not None


def vela_report(path) -> dict:
    """vela's compilation of the file for an Ethos-U55-128: its summary numbers."""
    if not vela_available():
        raise NCAEdgeError(f"vela is not installed ({VELA_INSTALL})")
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run(["vela", "--accelerator-config", VELA_ACCELERATOR, str(path), "--output-dir", tmp],
                           capture_output=True, text=True)
        if p.returncode != 0:
            tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise NCAEdgeError(f"vela could not compile {path}: {tail}")
        try:
            (summary,) = Path(tmp).glob("*_summary_*.csv")
            row = next(csv.DictReader(summary.open()))
            cycles = int(float(row["cycles_total"]))
            clock = float(re.search(r"Accelerator clock\s+(\d+) MHz", p.stdout).group(1)) * 1e6
            sram, flash = float(row["sram_memory_used"]), float(row["off_chip_flash_memory_used"])
        except (ValueError, KeyError, AttributeError, StopIteration) as e:
            raise NCAEdgeError(f"vela's summary for {path} is not the one nca-edge reads ({type(e).__name__})") from None
    npu = re.search(r"NPU operators = (\d+)", p.stdout)
    cpu = re.search(r"CPU operators = (\d+)", p.stdout)
    return {"npu_ops": int(npu.group(1)) if npu else None, "cpu_ops": int(cpu.group(1)) if cpu else None,
            "sram_kib": round(sram, 2), "flash_kib": round(flash, 2),
            "cycles_per_step": cycles, "cycles_per_classification": cycles * STEPS_PER_CLASSIFICATION,
            "ms_per_classification": round(cycles * STEPS_PER_CLASSIFICATION / clock * 1e3, 2),
            "clock_mhz": clock / 1e6}


def m4_footprint(src: Path, channels: int) -> dict:
    """Flash and RAM of a C export's step on a Cortex-M4 (arm-none-eabi-gcc -O2, 28x28 grid).

    flash: text + rodata + data of nca_step.o and nca_model.o; RAM: the state (28 x 28 x C bytes)
    + .bss + .data + the sum of every function's frame in nca_step.c (-fstack-usage; an upper
    bound, since nothing recurses)."""
    if shutil.which("arm-none-eabi-gcc") is None:
        raise NCAEdgeError(f"arm-none-eabi-gcc is not installed ({ARM_INSTALL})")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for f in Path(src).iterdir():
            if f.is_file():
                shutil.copy(f, tmp / f.name)
        flags = ("-mcpu=cortex-m4 -mthumb -mfloat-abi=soft -std=c99 -Wall -Wextra -Werror -O2 -ffunction-sections "
                 f"-fdata-sections -fstack-usage {GRID_FLAGS}").split()
        for name in ("nca_step", "nca_model"):
            p = subprocess.run(["arm-none-eabi-gcc", *flags, "-c", f"{name}.c", "-o", f"{name}.o"], cwd=tmp,
                               capture_output=True, text=True)
            if p.returncode != 0:
                tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise NCAEdgeError(f"arm-none-eabi-gcc could not build {name}.c: {tail}")
        out = subprocess.run(["arm-none-eabi-size", "-A", "nca_step.o", "nca_model.o"], cwd=tmp, check=True,
                             capture_output=True, text=True).stdout
        sizes = {"text": 0, "rodata": 0, "bss": 0, "data": 0}
        for line in out.splitlines():
            m = re.match(r"\.(text|rodata|bss|data)\S*\s+(\d+)", line.strip())
            if m:
                sizes[m.group(1)] += int(m.group(2))
        frames = [int(v.split("\t")[1]) for v in (tmp / "nca_step.su").read_text().splitlines() if v.strip()]
    state = 28 * 28 * channels
    return {"flash_bytes": sizes["text"] + sizes["rodata"] + sizes["data"], "text": sizes["text"],
            "rodata": sizes["rodata"], "bss": sizes["bss"], "stack_bound": sum(frames),
            "ram_28x28_bytes": state + sizes["bss"] + sizes["data"] + sum(frames)}


def deploy_row(model: str, progress=None) -> tuple[dict, list[str]]:
    """One variant's row (see the module docstring) and notes on what could not be measured."""
    from nca_edge.checkpoint import load_checkpoint, resolve_model

    from . import export_model
    from .tflm import arena_bytes
    from .tflm import available as tflm_available

    notes: list[str] = []
    _, config, _ = load_checkpoint(resolve_model(model))
    row: dict = {"model": model, "variant": config.ca.quant}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{model}-int8.tflite"
        export_model(model, "tflite-int8", path, batch=1)
        row["tflite_int8_bytes"] = path.stat().st_size
        row["non_integer_tensors"] = len(non_integer_tensors(path))
        row["tflm_arena_bytes"] = arena_bytes(path) if tflm_available() else None
        if row["tflm_arena_bytes"] is None:
            notes.append("TFLite Micro is not installed (pip install tflite-micro)")
        v = vela_report(path) if vela_available() else None
        if v is None:
            notes.append(f"vela is not installed ({VELA_INSTALL})")
        for k in ("npu_ops", "cpu_ops", "sram_kib", "flash_kib", "cycles_per_step", "cycles_per_classification",
                  "ms_per_classification"):
            row[f"vela_{k}"] = None if v is None else v[k]
        c_dir = Path(tmp) / f"{model}-c"
        fp = None
        if shutil.which("arm-none-eabi-gcc"):
            export_model(model, "c", c_dir)
            fp = m4_footprint(c_dir, config.ca.channels)
        else:
            notes.append(f"arm-none-eabi-gcc is not installed ({ARM_INSTALL})")
        row["c_m4_flash_bytes"] = None if fp is None else fp["flash_bytes"]
        row["c_m4_ram_bytes"] = None if fp is None else fp["ram_28x28_bytes"]
    if progress is not None:
        progress(1)
    return row, notes


COLUMNS = [("model", "model"), ("tflite_int8_bytes", "tflite-int8 bytes"), ("non_integer_tensors", "non-int tensors"),
           ("tflm_arena_bytes", "TFLM arena bytes"), ("vela_npu_ops", "NPU ops"), ("vela_cpu_ops", "CPU ops"),
           ("vela_sram_kib", "U55 SRAM KiB"), ("vela_flash_kib", "U55 flash KiB"),
           ("vela_cycles_per_step", "U55 cycles/step"), ("vela_ms_per_classification", "U55 ms/200 steps"),
           ("c_m4_flash_bytes", "C M4 flash bytes"), ("c_m4_ram_bytes", "C M4 RAM bytes")]


def cell(v) -> str:
    if v is None:
        return "-"
    return f"{v:,}" if isinstance(v, int) else str(v)


def render(rows: list[dict], fmt: str) -> str:
    """rows as a text table, Markdown, CSV or JSON (JSON and CSV keep every key)."""
    import io
    import json

    if fmt == "json":
        return json.dumps(rows, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().rstrip("\n")
    from .report import text_table

    return "\n".join(text_table([[h for _, h in COLUMNS]] + [[cell(r[k]) for k, _ in COLUMNS] for r in rows], fmt))
