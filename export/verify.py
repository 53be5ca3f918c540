"""Verify an int8 artifact against the golden model: its runtime and ``firmware_sim`` side by side.

For each batch of test digits both start from the same int8 seed state (``firmware_sim.int8.seed``)
and run the article's protocol (mutation at ``mutate_at``, fire masks from ``firmware_sim.prng``)::

    for t in 0..steps-1:
        if t == mutate_at: both states <- firmware_sim.int8.mutate(state, new digit)
        fire = fire_mask(mask_seed, digit index, t, H, W)
        a = runtime.step(a, fire);  b = firmware_sim.int8.step(b, fire)
        compare a and b: every cell, every channel
        on a difference: count it, and go on from the runtime's state (b <- a), so every later
        step is still compared one step at a time

The first difference is located: the step is run again from the common state with the
runtime's intermediate tensors kept, and each layer is compared in graph order.

Run as a child process (``python -m export.verify``; ``verify_in_child``) so tflite-runtime never
shares a process with TensorFlow. Imports numpy, firmware_sim and the chosen runtime only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from firmware_sim import int8
from firmware_sim.prng import fire_mask
from firmware_sim.protocol import mutation_targets
from nca_edge.errors import NCAEdgeError

LAYERS = ("conv1", "conv2", "conv3", "mul1", "mul2", "add")


@dataclass
class VerifyResult:
    runtime: str
    kernels: str  # "reference" or "optimized"
    digits: int
    steps: int
    batch: int
    values_compared: int = 0
    values_differing: int = 0
    steps_compared: int = 0  # (digit, step) pairs
    steps_differing: int = 0
    first: dict | None = None  # step, digit, y, x, channel, runtime, simulator, layer
    meta: dict = field(default_factory=dict)

    @property
    def bit_exact(self) -> bool:
        return self.values_compared > 0 and self.values_differing == 0


def _interpreter(path: str, runtime: str, reference: bool, keep: bool = False):
    if runtime == "tflite-runtime":
        from tflite_runtime import interpreter as tfl
    elif runtime == "litert":
        from ai_edge_litert import interpreter as tfl
    else:
        raise NCAEdgeError(f"verify runs int8 TFLite files in tflite-runtime, litert or tflm, not {runtime!r}")
    kw = {"experimental_op_resolver_type": tfl.OpResolverType.BUILTIN_REF} if reference else {}
    if keep:
        kw["experimental_preserve_all_tensors"] = True
    it = tfl.Interpreter(model_path=str(path), num_threads=1, **kw)
    it.allocate_tensors()
    return it


class _TFLiteStep:
    def __init__(self, it):
        self.it = it
        ins = {d["name"]: d for d in it.get_input_details()}
        self.state = next(d for n, d in ins.items() if "state" in n)
        self.fire = next(d for n, d in ins.items() if "fire" in n)
        self.out = it.get_output_details()[0]
        if self.state["dtype"] != np.int8:
            raise NCAEdgeError("verify needs a full-integer (tflite-int8) artifact")
        self.batch = int(self.state["shape"][0])
        self.grid = tuple(int(v) for v in self.state["shape"][1:3])

    def __call__(self, s: np.ndarray, fire_q: np.ndarray) -> np.ndarray:
        self.it.set_tensor(self.state["index"], s)
        self.it.set_tensor(self.fire["index"], fire_q[..., None])
        self.it.invoke()
        return self.it.get_tensor(self.out["index"]).copy()


def verify(path: str, runtime: str = "litert", reference: bool = True, digits: int = 200, steps: int = 400,
           mutate_at: int | None = 200, mask_seed: int = 0, dataset: str = "mnist", progress=None) -> VerifyResult:
    from nca_edge.data import load_digits

    from .artifact import artifact_config
    from .int8_graph import quantization

    record = artifact_config(path)
    ca = record["config"]["ca"]
    if runtime == "tflm":  # TFLite Micro: reference kernels only; the parameters read with litert
        from .tflm import TFLMStep, arena_bytes

        rt, reader = TFLMStep(path), "litert"
    else:
        rt, reader = _TFLiteStep(_interpreter(path, runtime, reference)), runtime
    params = int8.derive(quantization(_interpreter(path, reader, reference=True)))  # the file's parameters
    d = load_digits(dataset)
    images = d.test_x[:digits]
    n = len(images)
    targets = mutation_targets(n, mask_seed)
    mutate_at = mutate_at if mutate_at and mutate_at < steps else None
    h, w = rt.grid
    if images.shape[1:] != (h, w):
        raise NCAEdgeError(f"{path} is exported for a {h}x{w} grid; the test digits are {images.shape[1]}x{images.shape[2]}")
    res = VerifyResult(runtime=runtime, kernels="reference" if reference else "optimized", digits=n, steps=steps,
                       batch=rt.batch, meta={"variant": ca["quant"], "alive_min": params.alive_min})
    if runtime == "tflm":
        res.meta["arena_bytes"] = arena_bytes(path)
    bsz = rt.batch
    for start in range(0, n, bsz):
        ids = np.arange(start, min(start + bsz, n))
        real = len(ids)
        streams = np.concatenate([ids, np.arange(n, n + bsz - real)])  # padding rows: blank grids
        grey = _pad(images[ids], bsz)
        a = int8.seed(params, grey)
        b = a.copy()
        for t in range(steps):
            if t == mutate_at:
                new = _pad(images[targets[ids]], bsz)
                a, b = int8.mutate(params, a, new), int8.mutate(params, b, new)
            fire = fire_mask(mask_seed, streams, t, h, w, ca["fire_rate"])
            fire_q = np.where(fire, params.fire_on, params.fire_off).astype(np.int8)
            prev = a
            a = rt(prev, fire_q)
            b = int8.step(params, b, fire)
            diff = _count(res, a[:real], b[:real])
            if diff is not None:
                if res.first is None:
                    res.first = _mismatch(diff, a, b, ids, t)
                    res.first["layer"] = ("not located (TFLM's arena reuses intermediate tensors)" if runtime == "tflm"
                                          else _diverging_layer(path, runtime, reference, params, prev, fire, fire_q))
                b = a.copy()
            if progress is not None:
                progress(real)
    return res


def verify_packed(path: str, digits: int = 200, steps: int = 400, mutate_at: int | None = 200, mask_seed: int = 0,
                  dataset: str = "mnist", h: int = 28, w: int = 28, progress=None) -> VerifyResult:
    """A packed blob's device arithmetic (``firmware_sim.xnor``: bits, thresholds on accumulators,
    popcounts) against the int8 definition (``firmware_sim.int8``), the same protocol as ``verify``.
    Numpy only: runs in this process."""
    from firmware_sim import blob, xnor
    from firmware_sim.packed import PackedFormatError
    from nca_edge.data import load_digits

    try:
        params, b = blob.load(path)
    except PackedFormatError as e:
        raise NCAEdgeError(f"{path}: {e}") from None
    fire_rate = 0.5
    if "record" in b.tensors:  # the exporter's record: the model's fire rate
        from .artifact import decode_record, record_fire_rate

        fire_rate = record_fire_rate(decode_record(b.tensors["record"].astype(np.uint8).tobytes(), path), path)
    d = load_digits(dataset)
    images = d.test_x[:digits]
    n = len(images)
    targets = mutation_targets(n, mask_seed)
    mutate_at = mutate_at if mutate_at and mutate_at < steps else None
    res = VerifyResult(runtime="packed path (firmware_sim.xnor)", kernels="bits", digits=n, steps=steps, batch=n,
                       meta={"variant": b.variant, "alive_min": params.alive_min})
    a = int8.seed(params, images)
    ref = a.copy()
    for t in range(steps):
        if t == mutate_at:
            a, ref = int8.mutate(params, a, images[targets]), int8.mutate(params, ref, images[targets])
        fire = fire_mask(mask_seed, np.arange(n), t, h, w, fire_rate)
        a, ref = xnor.step(params, a, fire), int8.step(params, ref, fire)
        diff = _count(res, a, ref)
        if diff is not None:
            if res.first is None:
                res.first = _mismatch(diff, a, ref, np.arange(n), t) | {"layer": "the firing update (conv1..mul2)"}
            ref = a.copy()
        if progress is not None:
            progress(n)
    return res


def _count(res: VerifyResult, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Count one step's comparison (a: the artifact's states, b: the golden model's, one row per
    digit) into ``res``; the mask of differing values, or None when they agree."""
    diff = a != b
    res.values_compared += diff.size
    res.steps_compared += len(a)
    if not diff.any():
        return None
    res.values_differing += int(diff.sum())
    res.steps_differing += int(diff.reshape(len(a), -1).any(1).sum())
    return diff


def _mismatch(diff: np.ndarray, a: np.ndarray, b: np.ndarray, ids: np.ndarray, t: int) -> dict:
    """The first differing value: step, digit, cell, channel and both values."""
    i, y, x, c = (int(v) for v in np.argwhere(diff)[0])
    return {"step": t, "digit": int(ids[i]), "y": y, "x": x, "channel": c, "runtime": int(a[i, y, x, c]),
            "simulator": int(b[i, y, x, c])}


def _diverging_layer(path, runtime, reference, params, prev, fire, fire_q) -> str:
    it = _interpreter(path, runtime, reference, keep=True)
    _TFLiteStep(it)(prev, fire_q)
    trace: dict = {}
    int8.step(params, prev, fire, trace)
    from .int8_graph import step_ops

    roles = step_ops(it)
    tiled = roles["ds"] != int(roles["layers"][2]["outputs"][0])  # row bands: conv1, conv2 exist per band only
    outs = {"conv3": it.get_tensor(roles["ds"]), "mul1": it.get_tensor(int(roles["muls"][0]["outputs"][0])),
            "mul2": it.get_tensor(int(roles["muls"][1]["outputs"][0])), "add": it.get_tensor(int(roles["add"]["outputs"][0]))}
    if not tiled:
        outs.update(conv1=it.get_tensor(int(roles["layers"][0]["outputs"][0])),
                    conv2=it.get_tensor(int(roles["layers"][1]["outputs"][0])))
    cells = trace.get("cells")
    for name in LAYERS:
        ours = trace.get(name)
        if ours is None or name not in outs:
            continue
        theirs = outs[name]
        if name in ("conv1", "conv2", "conv3", "mul1"):
            theirs = theirs[cells]  # only the computed (alive, firing) cells
        if not np.array_equal(np.asarray(theirs, np.int32), np.asarray(ours, np.int32)):
            return name
    return "none (the layers agree; the difference is in the final concatenation)"


def _pad(a: np.ndarray, bsz: int) -> np.ndarray:
    if len(a) == bsz:
        return a
    return np.concatenate([a, np.zeros((bsz - len(a),) + a.shape[1:], a.dtype)])


def verify_in_child(path, runtime: str, reference: bool, digits: int, steps: int, mutate_at: int | None,
                    mask_seed: int = 0, dataset: str = "mnist") -> VerifyResult:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "verify.json"
        args = [sys.executable, "-m", "export.verify", str(path), "--runtime", runtime, "--digits", str(digits),
                "--steps", str(steps), "--mutate-at", str(mutate_at or 0), "--mask-seed", str(mask_seed),
                "--dataset", dataset, "--out", str(out)]
        if not reference:
            args.append("--optimized")
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode != 0:
            tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise NCAEdgeError(f"{runtime} could not verify {path}: {tail}")
        return VerifyResult(**json.loads(out.read_text()))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m export.verify", description=__doc__.splitlines()[0])
    ap.add_argument("artifact")
    ap.add_argument("--runtime", default="litert")
    ap.add_argument("--optimized", action="store_true")
    ap.add_argument("--digits", type=int, default=200)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--mutate-at", type=int, default=200)
    ap.add_argument("--mask-seed", type=int, default=0)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        r = verify(a.artifact, a.runtime, not a.optimized, a.digits, a.steps, a.mutate_at, a.mask_seed, a.dataset)
    except NCAEdgeError as e:
        sys.exit(str(e))
    Path(a.out).write_text(json.dumps(asdict(r)))


if __name__ == "__main__":
    main()
