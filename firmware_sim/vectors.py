"""Hardware test vectors from the golden model (format: docs/test_vectors.md). numpy only.

``write(out_dir, params, packed_blob, grey, ...)`` runs the int8 step on each grid and writes::

    params.ncap     the packed blob the states were computed with
    input.bin       uint8 grey images        [N, H, W]
    masks.bin       uint8 fire bits (0/1)    [N, S, H, W]        (step t's mask at [:, t])
    states.bin      int8 states              [N, S + 1, H, W, C] ([:, 0] = the seed state,
                                                                  [:, t + 1] = after step t)
    labels.bin      int8 final labels        [N, H, W]          (-1 = dead cell)
    mutate_input.bin  uint8 [N, H, W]: the grids' new images at step ``mutate_at`` (only with a mutation)
    vectors.json    shapes, dtypes, seeds, schedule, the mutation (if any), SHA-256 of each file

and, with ``hex_files``, the same arrays as ``*.hex`` (one value per line, two hex digits,
two's complement: what Verilog's ``$readmemh`` reads).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import int8
from .prng import fire_mask
from .protocol import mutation_targets

FORMAT_VERSION = 1


def compute(params: int8.Int8Step, grey: np.ndarray, steps: int, mask_seed: int = 0, fire_rate: float = 0.5,
            n_classes: int = 10, mutate_at: int | None = None, mutate_grey: np.ndarray | None = None,
            streams=None) -> dict:
    """Every state of the protocol on the grids ``grey``; ``streams``: each grid's PRNG stream
    (default: 0..N-1, the grid index)."""
    n, h, w = grey.shape
    streams = np.arange(n) if streams is None else np.asarray(streams)
    s = int8.seed(params, grey)
    states = np.empty((n, steps + 1) + s.shape[1:], np.int8)
    masks = np.empty((n, steps, h, w), np.uint8)
    states[:, 0] = s
    for t in range(steps):
        if mutate_at is not None and t == mutate_at:
            s = int8.mutate(params, s, mutate_grey)
        f = fire_mask(mask_seed, streams, t, h, w, fire_rate)
        masks[:, t] = f
        s = int8.step(params, s, f)
        states[:, t + 1] = s
    alive = s[..., 0] >= params.alive_min
    labels = np.where(alive, int8.labels(params, s, n_classes), -1).astype(np.int8)
    return {"input": grey.astype(np.uint8), "masks": masks, "states": states, "labels": labels}


def write(out_dir: str | Path, params: int8.Int8Step, blob: bytes, grey: np.ndarray, steps: int, mask_seed: int = 0,
          fire_rate: float = 0.5, n_classes: int = 10, mutate_at: int | None = None, hex_files: bool = False,
          source: str = "", force: bool = False) -> dict:
    """Compute and write the vectors into ``out_dir`` (a new directory, created atomically)."""
    out_dir = Path(out_dir)
    mutate_grey = None
    if mutate_at is not None:
        mutate_grey = grey[mutation_targets(len(grey), mask_seed)]
    arrays = compute(params, grey, steps, mask_seed, fire_rate, n_classes, mutate_at, mutate_grey)
    if mutate_grey is not None:
        arrays["mutate_input"] = mutate_grey.astype(np.uint8)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix="." + out_dir.name))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)
    try:
        files = {"params.ncap": blob}
        for name, a in arrays.items():
            files[f"{name}.bin"] = np.ascontiguousarray(a).tobytes()
        if hex_files:
            for name, a in arrays.items():
                v = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
                files[f"{name}.hex"] = ("\n".join(f"{b:02x}" for b in v.tolist()) + "\n").encode()
        meta = {
            "format_version": FORMAT_VERSION,
            "source": source,
            "digits": int(len(grey)), "steps": steps, "height": int(grey.shape[1]), "width": int(grey.shape[2]),
            "channels": params.channels, "n_classes": n_classes,
            "mask_seed": mask_seed, "fire_rate": fire_rate, "streams": "digit index 0..N-1", "schedule": "sync",
            "mutate_at": mutate_at,
            "arrays": {name: {"file": f"{name}.bin", "dtype": str(a.dtype), "shape": list(a.shape)} for name, a in arrays.items()},
            "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        }
        files["vectors.json"] = (json.dumps(meta, indent=2) + "\n").encode()
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        old = None
        if out_dir.exists():
            if not force:
                raise FileExistsError(f"{out_dir} exists")
            old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix="." + out_dir.name + ".old"))
            os.replace(out_dir, old / "x")
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp)
        raise
    return meta
