"""Runners: one exported CA step in the runtime named for its format, behind one interface.

A runner holds the step in its native layout and number type::

    runner.batch          fixed batch size of the artifact (None: any)
    runner.encode(x)      float state [B, C, H, W] -> the runtime's state (layout, dtype)
    runner.decode(s)      the runtime's state -> float state [B, C, H, W]
    runner.step(s, fire)  one CA step; fire: bool [B, H, W] (True = the cell fires)

``encode``/``decode`` are exact on the values a state can hold (for int8 artifacts: values on
the state's quantization grid), so a host loop may decode, mutate and encode again.

Runtimes (``RUNTIMES``): ``torch`` (the PyTorch model itself: the reference), ``onnxruntime``,
``tflite-runtime`` (2.14, as on many edge boards), ``litert`` (ai-edge-litert), ``tensorflow``
(tf.lite.Interpreter). ``reference=True`` asks a TFLite interpreter for its reference kernels
(``BUILTIN_REF``) instead of the optimized ones (XNNPACK).

tflite-runtime cannot share a process with TensorFlow (see ``export.tflite_export``):
``run_in_child`` runs a host loop in a fresh interpreter process, which is what the CLI and
the tests use for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from nca_edge.errors import NCAEdgeError

RUNTIMES = ("torch", "onnxruntime", "tflite-runtime", "litert", "tensorflow", "lce")


class TorchRunner:
    """The PyTorch model, dense layout: the reference every artifact is compared with."""

    batch = None

    def __init__(self, model):
        import torch

        self.torch = torch
        self.model = model.eval()

    def encode(self, x: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def decode(self, s) -> np.ndarray:
        return s.numpy()

    def step(self, s, fire: np.ndarray):
        from nca_edge.ca import ca_step

        with self.torch.inference_mode():
            return ca_step(self.model, s, self.torch.from_numpy(fire))


class OnnxRunner:
    batch = None

    def __init__(self, path: str | Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        if set(self.inputs) != {"state", "fire"}:
            raise NCAEdgeError(f"{path}: not an nca-edge step (inputs {sorted(self.inputs)})")
        self.batch = _fixed(self.inputs["state"].shape[0])

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float32)

    def decode(self, s: np.ndarray) -> np.ndarray:
        return s

    def step(self, s: np.ndarray, fire: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"state": s, "fire": fire[:, None].astype(np.float32)})[0]


class TFLiteRunner:
    """A .tflite step (NHWC) in tflite-runtime, ai-edge-litert or TensorFlow's interpreter."""

    def __init__(self, path: str | Path, runtime: str = "litert", reference: bool = False, threads: int = 1):
        content = Path(path).read_bytes()
        kind = None
        if runtime == "tflite-runtime":
            from tflite_runtime import interpreter as tfl
        elif runtime == "litert":
            from ai_edge_litert import interpreter as tfl
        elif runtime == "tensorflow":
            import tensorflow as tf

            tfl = tf.lite
        else:
            raise NCAEdgeError(f"unknown TFLite runtime {runtime!r}")
        if reference:
            kind = tfl.experimental.OpResolverType.BUILTIN_REF if runtime == "tensorflow" else tfl.OpResolverType.BUILTIN_REF
        kw = {"experimental_op_resolver_type": kind} if kind is not None else {}
        self.it = tfl.Interpreter(model_content=content, num_threads=threads, **kw)
        self.it.allocate_tensors()
        ins = {d["name"]: d for d in self.it.get_input_details()}
        self.state_in = _pick(ins, "state", path)
        self.fire_in = _pick(ins, "fire", path)
        self.out = self.it.get_output_details()[0]
        self.batch = int(self.state_in["shape"][0])
        self.dtype = self.state_in["dtype"]
        s_in, s_out = self.state_in["quantization"], self.out["quantization"]
        if self.dtype != np.float32 and tuple(s_in) != tuple(s_out):
            raise NCAEdgeError(f"{path}: state input and output are quantized differently ({s_in} vs {s_out})")

    def encode(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32)
        if self.dtype == np.float32:
            return x
        scale, zero = self.state_in["quantization"]
        info = np.iinfo(self.dtype)
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(self.dtype)

    def decode(self, s: np.ndarray) -> np.ndarray:
        if self.dtype != np.float32:
            scale, zero = self.state_in["quantization"]
            s = (s.astype(np.float32) - zero) * np.float32(scale)
        return np.ascontiguousarray(s.transpose(0, 3, 1, 2))

    def fire_tensor(self, fire: np.ndarray) -> np.ndarray:
        f = fire[..., None]
        if self.fire_in["dtype"] == np.float32:
            return f.astype(np.float32)
        scale, zero = self.fire_in["quantization"]
        return (np.round(f / scale) + zero).astype(self.fire_in["dtype"])

    def step(self, s: np.ndarray, fire: np.ndarray) -> np.ndarray:
        self.it.set_tensor(self.state_in["index"], s)
        self.it.set_tensor(self.fire_in["index"], self.fire_tensor(fire))
        self.it.invoke()
        return self.it.get_tensor(self.out["index"]).copy()


class LceRunner:
    """An ``lce`` flatbuffer (NHWC float32 in/out) in Larq Compute Engine's interpreter."""

    def __init__(self, path: str | Path, threads: int = 1):
        from larq_compute_engine.tflite.python.interpreter import Interpreter

        self.it = Interpreter(Path(path).read_bytes(), num_threads=threads)
        shapes = [tuple(s) for s in self.it.input_shapes]
        if len(shapes) != 2:
            raise NCAEdgeError(f"{path}: not an nca-edge step ({len(shapes)} inputs)")
        self.fire_first = shapes[0][-1] == 1  # inputs by channel count: the fire mask has one
        self.batch = int(shapes[0][0])

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32)

    def decode(self, s: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(s.transpose(0, 3, 1, 2))

    def step(self, s: np.ndarray, fire: np.ndarray) -> np.ndarray:
        f = fire[..., None].astype(np.float32)
        out = self.it.predict([f, s] if self.fire_first else [s, f])
        return np.asarray(out, np.float32).reshape(s.shape)


def _pick(inputs: dict, word: str, path) -> dict:
    hits = [d for name, d in inputs.items() if word in name]
    if len(hits) != 1:
        raise NCAEdgeError(f"{path}: not an nca-edge step (inputs {sorted(inputs)})")
    return hits[0]


def _fixed(dim) -> int | None:
    return dim if isinstance(dim, int) else None


def open_runner(path: str | Path, runtime: str, reference: bool = False):
    if runtime == "onnxruntime":
        return OnnxRunner(path)
    if runtime in ("tflite-runtime", "litert", "tensorflow"):
        return TFLiteRunner(path, runtime, reference=reference)
    if runtime == "lce":
        return LceRunner(path)
    raise NCAEdgeError(f"no runner for runtime {runtime!r}")


# ---------------------------------------------------------------------------- child process


def run_in_child(artifact: str | Path, runtime: str, digits: int, steps: int, mutate_at: int | None,
                 mask_seed: int = 0, reference: bool = False, labels: bool = False, dataset: str = "mnist") -> dict:
    """Run ``export.host.run_protocol`` on an artifact in a fresh Python process.

    Returns {"accuracy": [...], "agreement": [...], "agree_last": bool [digits] (total agreement
    at the last step), and with ``labels`` "labels": int8 [digits, steps, H, W] (-1 on dead cells)}.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.npz"
        args = [sys.executable, "-m", "export.host", str(artifact), "--runtime", runtime, "--digits", str(digits),
                "--steps", str(steps), "--mutate-at", str(mutate_at or 0), "--mask-seed", str(mask_seed),
                "--dataset", dataset, "--out", str(out)]
        if reference:
            args.append("--reference")
        if labels:
            args.append("--labels")
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode != 0:
            tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise NCAEdgeError(f"{runtime} could not run {artifact}: {tail}")
        with np.load(out) as z:
            result = {k: z[k] for k in z.files}
        result["meta"] = json.loads(str(result.pop("meta")))
        return result
