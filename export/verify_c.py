"""Verify a C export (``nca-edge export MODEL --format c``) against firmware_sim, bit for bit.

The export directory is copied to a temporary build directory and built with its Makefile:
``make host`` (the system compiler, ``-std=c99 -Wall -Wextra -Werror -O2``, optionally with
``-fsanitize=address,undefined``) or ``make m4`` (arm-none-eabi-gcc, run under
``qemu-system-arm -M mps2-an386`` with semihosting). For each chunk of digits the driver reads
the grey images (and the mutation's), generates the fire masks with its own PRNG and writes
every state; firmware_sim (``firmware_sim.vectors.compute``, from the directory's model.ncap)
computes the same run, and every state of every step is compared.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from firmware_sim import blob, vectors
from firmware_sim.prng import fire_threshold
from firmware_sim.protocol import mutation_targets
from nca_edge.errors import NCAEdgeError

from .artifact import decode_record
from .verify import VerifyResult

SANITIZE = "-std=c99 -Wall -Wextra -Werror -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all"
QEMU = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting-config", "enable=on,target=native"]


def toolchain_missing(target: str) -> str | None:
    """None if the tools for ``target`` are installed, else what is missing."""
    need = {"host": ["make", "cc"], "m4": ["make", "arm-none-eabi-gcc", "qemu-system-arm"]}[target]
    missing = [t for t in need if shutil.which(t) is None]
    return ", ".join(missing) or None


def build(src: Path, work: Path, target: str = "host", sanitize: bool = False) -> Path:
    for f in src.iterdir():
        if f.is_file():
            shutil.copy(f, work / f.name)
    args = ["make", "-s", "host" if target == "host" else "m4"]
    if sanitize:
        args.append(f"CFLAGS={SANITIZE}")
    p = subprocess.run(args, cwd=work, capture_output=True, text=True)
    if p.returncode != 0:
        raise NCAEdgeError(f"building {src} ({target}) failed: {(p.stderr or p.stdout).strip()[-500:]}")
    return work / ("nca_host" if target == "host" else "nca_m4.elf")


def verify_c(src: str | Path, digits: int = 100, steps: int = 400, mutate_at: int | None = 200, mask_seed: int = 0,
             target: str = "host", sanitize: bool = False, chunk: int = 8, dataset: str = "mnist",
             progress=None) -> VerifyResult:
    from nca_edge.data import load_digits

    src = Path(src)
    if not (src / "Makefile").is_file() or not (src / "model.ncap").is_file():
        raise NCAEdgeError(f"{src}: not a C export (no Makefile / model.ncap); make one with --format c")
    missing = toolchain_missing(target)
    if missing:
        raise NCAEdgeError(f"cannot build for {target}: {missing} not installed")
    data = (src / "model.ncap").read_bytes()
    params, _ = blob.loads(data)
    ca = decode_record(data, src / "model.ncap")["config"]["ca"]
    d = load_digits(dataset)
    grey_all = d.test_x[:digits]
    n = len(grey_all)
    h, w = grey_all.shape[1:]
    mutate_at = mutate_at if mutate_at and mutate_at < steps else None
    targets = mutation_targets(n, mask_seed)
    res = VerifyResult(runtime=f"C ({target}{', sanitizers' if sanitize else ''})", kernels="reference", digits=n,
                       steps=steps, batch=chunk, meta={"variant": ca["quant"]})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        exe = build(src, tmp, target, sanitize)
        for start in range(0, n, chunk):
            ids = np.arange(start, min(start + chunk, n))
            grey = grey_all[ids]
            mgrey = grey_all[targets[ids]] if mutate_at is not None else None
            (tmp / "input.bin").write_bytes(np.ascontiguousarray(grey, np.uint8).tobytes())
            if mgrey is not None:
                (tmp / "mutate_input.bin").write_bytes(np.ascontiguousarray(mgrey, np.uint8).tobytes())
            out = tmp / "states_c.bin"
            args = [str(tmp), str(len(ids)), str(steps), str(h), str(w), str(mask_seed),
                    str(fire_threshold(ca["fire_rate"])), str(mutate_at or 0), str(out), str(start)]
            cmd = [str(exe), *args] if target == "host" else [*QEMU, "-kernel", str(exe), "-append", " ".join(args)]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
            except subprocess.TimeoutExpired:
                raise NCAEdgeError(f"the C step ({target}) did not finish {len(ids)} digits x {steps} steps within an hour") from None
            if p.returncode != 0 or not out.is_file():
                raise NCAEdgeError(f"the C step failed (exit {p.returncode}): {(p.stderr or p.stdout).strip()[-500:]}")
            got = np.fromfile(out, np.int8)
            want = vectors.compute(params, grey, steps, mask_seed, ca["fire_rate"], ca["n_classes"], mutate_at, mgrey,
                                   streams=ids)["states"]
            if got.size != want.size:
                raise NCAEdgeError(f"the C step wrote {got.size} values, expected {want.size}")
            got = got.reshape(want.shape)
            diff = got[:, 1:] != want[:, 1:]  # [:, 0] is the seed state (compared too, below)
            res.values_compared += diff.size
            res.steps_compared += len(ids) * steps
            bad = int(diff.sum()) + int((got[:, 0] != want[:, 0]).sum())
            if bad:
                res.values_differing += bad
                res.steps_differing += int(diff.reshape(len(ids), steps, -1).any(2).sum())
                if res.first is None:
                    i, t, y, x, c = (int(v) for v in np.argwhere(got != want)[0])
                    res.first = {"step": t - 1, "digit": int(ids[i]), "y": y, "x": x, "channel": c,
                                 "runtime": int(got[i, t, y, x, c]), "simulator": int(want[i, t, y, x, c]),
                                 "layer": "n/a (the C step exposes the state only)" if t else "the seed state"}
            if progress is not None:
                progress(len(ids))
    return res

