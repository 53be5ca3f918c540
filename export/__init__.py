"""Exporters: one CA step as a deployable artifact, verified in the runtime named for it.

Every artifact computes one step: inputs = the state (channel 0 = the grey pixel, from which
the step derives the alive mask) and the fire mask; output = the next state. The host runs
the loop and feeds masks from ``firmware_sim.prng`` (``export.host``). Each file embeds its
artifact record (``export.artifact``: variant, config, grid, batch, source checkpoint).

Formats (``FORMATS``):

============  =========  ====================================  ==========================
format        file       what                                  runtime that runs it
============  =========  ====================================  ==========================
onnx          .onnx      float32, opset 17, dynamic B/H/W       onnxruntime
tflite        .tflite    float32 via the Larq mirror, fixed     tflite-runtime 2.14,
                         batch and grid                         ai-edge-litert
tflite-int8   .tflite    full-integer int8 (state included),    tflite-runtime 2.14,
                         calibrated on CA trajectories          ai-edge-litert
packed        .ncap      the tflite-int8 step's integer         firmware_sim (numpy),
                         parameters, binary kernels 1 bit each  the C firmware
onnx-qdq      .onnx      int8 Q/DQ graph of the tflite-int8     onnxruntime
                         step (same scales, int8 kernels)
lce           .tflite    Larq Compute Engine flatbuffer         LCE's interpreter
                         (bitpacked binary layers; ban/bnn)
c             directory  C99 step + model constants, host       gcc (host), arm-none-eabi-gcc
                         driver, Makefile, Cortex-M4 build      + qemu (Cortex-M4)
============  =========  ====================================  ==========================

``export_model`` writes one format, ``export_all`` every format a model supports plus
``manifest.json``. Files are written to a temporary name and renamed: a failure leaves
nothing behind, and an existing output is replaced only with ``force``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nca_edge.atomic import atomic_write_bytes
from nca_edge.errors import NCAEdgeError


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    runtime: str  # the runtime the tests and `verify` run it in
    build: Callable  # (model, record dict, height, width, batch) -> bytes
    fixed_shape: bool = True
    directory: bool = False  # the artifact is a directory of files (build returns {name: bytes})


def _onnx(model, record: dict, height: int, width: int, batch: int) -> bytes:
    from .onnx_export import onnx_bytes

    return onnx_bytes(model, json.dumps(record, sort_keys=True), height, width)


def _tflite(model, record: dict, height: int, width: int, batch: int) -> bytes:
    from .artifact import encode_record
    from .tflite_export import tflite_float_bytes, with_record

    return with_record(tflite_float_bytes(model, height, width, batch), encode_record(record))


# Converted int8 steps of this process, by (checkpoint SHA-256, grid, batch): onnx-qdq, packed and c are
# derived from the tflite-int8 step, so `--all` calibrates and converts once (the result is deterministic).
_INT8_STEPS: dict[tuple, bytes] = {}


def _tflite_int8(model, record: dict, height: int, width: int, batch: int) -> bytes:
    from nca_edge.data import load_digits

    from .artifact import encode_record
    from .calibrate import trajectory_samples
    from .tflite_export import tflite_int8_bytes, with_record

    key = (record["checkpoint_sha256"], height, width, batch)
    if key not in _INT8_STEPS:
        samples = trajectory_samples(model, load_digits(record["config"]["train"]["dataset"]).train_x,
                                     n_digits=max(64, batch), height=height, width=width)
        if len(_INT8_STEPS) >= 8:
            _INT8_STEPS.clear()
        _INT8_STEPS[key] = tflite_int8_bytes(model, samples, height, width, batch)
    return with_record(_INT8_STEPS[key], encode_record(record))


def _packed(model, record: dict, height: int, width: int, batch: int) -> bytes:
    from .packed_export import packed_bytes

    return packed_bytes(model, record, _tflite_int8(model, dict(record, format="tflite-int8"), 28, 28, 1))


def _lce(model, record: dict, height: int, width: int, batch: int) -> bytes:
    from .artifact import encode_record
    from .lce_export import lce_bytes
    from .tflite_export import with_record

    return with_record(lce_bytes(model, height, width, batch), encode_record(record))


def _onnx_qdq(model, record: dict, height: int, width: int, batch: int) -> bytes:
    from nca_edge.larq_mirror import quiet_stderr

    from .int8_graph import quantization
    from .onnx_qdq import onnx_qdq_bytes

    from ai_edge_litert.interpreter import Interpreter

    data = _tflite_int8(model, dict(record, format="tflite-int8"), 28, 28, 1)
    with quiet_stderr():
        it = Interpreter(model_content=data)
        it.allocate_tensors()
    return onnx_qdq_bytes(quantization(it), model.cfg, json.dumps(record, sort_keys=True))


def _c(model, record: dict, height: int, width: int, batch: int) -> dict:
    from firmware_sim import blob

    from .c_export import c_files

    data = _packed(model, dict(record, format="packed"), height, width, batch)
    files = c_files(blob.loads(data)[0], model.cfg, source=f"{record['variant']} (checkpoint sha256 "
                    f"{record['checkpoint_sha256'][:16]})")
    files["model.ncap"] = data  # the same parameters for firmware_sim (`nca-edge verify DIR`)
    return files


FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format("onnx", ".onnx", "onnxruntime", _onnx, fixed_shape=False),
        Format("tflite", ".tflite", "litert", _tflite),
        Format("tflite-int8", ".tflite", "tflite-runtime", _tflite_int8),
        Format("onnx-qdq", ".onnx", "onnxruntime", _onnx_qdq, fixed_shape=False),
        Format("lce", ".tflite", "lce", _lce),
        Format("packed", ".ncap", "firmware_sim", _packed, fixed_shape=False),
        Format("c", "", "gcc", _c, fixed_shape=False, directory=True),
    ]
}


C_MAX_UNITS = 256  # NCA_MAX_UNITS's ceiling in export/c_src/nca_step.c (conv_lanes's 16-bit lanes)
C_MAX_SLICED_INPUTS = 128  # the bit-sliced hidden layer's 10-bit counts (c_export.sliced_layer)


def _check_supported(fmt: str, cfg) -> None:
    if fmt not in FORMATS:
        raise NCAEdgeError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "lce" and not cfg.binary_activations:
        raise NCAEdgeError(f"format lce: Larq Compute Engine's bitpacked ops are for binary activations, and the "
                           f"{cfg.quant} variant has none; use --format tflite-int8")
    if fmt == "c" and max(cfg.perception, cfg.hidden) > C_MAX_UNITS:
        raise NCAEdgeError(f"format c: the C step holds at most {C_MAX_UNITS} units a layer; this model has "
                           f"{cfg.perception} / {cfg.hidden}; use --format packed or tflite-int8")
    if (fmt == "c" and cfg.quant == "bnn" and "update1" not in cfg.real_weights
            and cfg.perception > C_MAX_SLICED_INPUTS):
        raise NCAEdgeError(f"format c: a BNN's bit-sliced hidden layer takes at most {C_MAX_SLICED_INPUTS} inputs; "
                           f"this model has {cfg.perception}; use --format packed or tflite-int8")
    if fmt in ("tflite-int8", "onnx-qdq", "packed", "c") and cfg.binary_input:
        raise NCAEdgeError(f"format {fmt}: a binarized state input (binary_input) has no int8 step yet; "
                           "use --format tflite, onnx or lce")


def supported_formats(model_ref: str) -> list[str]:
    """The formats a model (shipped name or checkpoint path) can be exported to."""
    from nca_edge.checkpoint import read_sidecar, resolve_model
    from nca_edge.config import Config

    cfg = Config.from_dict(read_sidecar(resolve_model(model_ref))["config"]).ca
    ok = []
    for fmt in FORMATS:
        try:
            _check_supported(fmt, cfg)
        except NCAEdgeError:
            continue
        ok.append(fmt)
    return ok


def artifact_record(fmt: str, config, checkpoint: Path, height: int, width: int, batch: int) -> dict:
    f = FORMATS[fmt]
    return {
        "format": fmt,
        "variant": config.ca.quant,
        "config": config.to_dict(),
        "grid": [height, width] if f.fixed_shape else None,
        "batch": batch if f.fixed_shape else None,
        "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
    }


def _load(model_ref: str):
    from nca_edge.checkpoint import checkpoint_paths, load_checkpoint, resolve_model

    path = resolve_model(model_ref)
    model, config, _ = load_checkpoint(path)
    if config.ca.int4:
        raise NCAEdgeError(f"{model_ref}: int4 kernels (int4) cannot be exported yet")
    return model, config, checkpoint_paths(path)[0]


def build(model_ref: str, fmt: str, height: int = 28, width: int = 28, batch: int = 1) -> tuple[bytes, dict]:
    """The bytes of one artifact and its record (nothing written)."""
    model, config, weights = _load(model_ref)
    _check_supported(fmt, config.ca)
    record = artifact_record(fmt, config, weights, height, width, batch)
    try:
        return FORMATS[fmt].build(model, record, height, width, batch), record
    except OverflowError as e:  # e.g. weights whose integer form does not fit the device's accumulators
        raise NCAEdgeError(f"{model_ref}: cannot be exported as {fmt}: {e}") from None


def _check_target(path: Path, force: bool, directory: bool = False) -> None:
    if path.exists() and not force:
        raise NCAEdgeError(f"{path} exists; pass --force to replace it")
    if path.exists() and path.is_dir() != directory:
        raise NCAEdgeError(f"{path} is a directory" if not directory else f"{path} exists and is not a directory")


def export_model(model_ref: str, fmt: str, out: str | Path, force: bool = False, height: int = 28, width: int = 28,
                 batch: int = 1) -> dict:
    """Write one artifact; returns its manifest entry."""
    out = Path(out)
    _check_target(out, force, FORMATS[fmt].directory if fmt in FORMATS else False)
    data, record = build(model_ref, fmt, height, width, batch)
    _write(out, data, force)
    return manifest_entry(out, data, record)


def _write(out: Path, data, force: bool) -> None:
    from nca_edge.atomic import atomic_write_dir

    if isinstance(data, dict):
        atomic_write_dir(out, data, force=force)
    else:
        atomic_write_bytes(out, data)


def _digest(data) -> tuple[int, str]:
    """(bytes, SHA-256) of a file's bytes or of a directory's files (name, NUL, content; sorted)."""
    if not isinstance(data, dict):
        return len(data), hashlib.sha256(data).hexdigest()
    h = hashlib.sha256()
    for name in sorted(data):
        h.update(name.encode() + b"\0" + data[name])
    return sum(len(v) for v in data.values()), h.hexdigest()


def manifest_entry(path: Path, data: bytes, record: dict) -> dict:
    from nca_edge.size import bit_widths
    from nca_edge.config import Config

    cfg = Config.from_dict(record["config"]).ca
    wbits, abits = bit_widths(cfg)
    return {
        "file": path.name,
        "format": record["format"],
        "bytes": _digest(data)[0],
        "sha256": _digest(data)[1],
        "variant": record["variant"],
        "weight_bits": wbits,
        "activation_bits": abits,
        "real_weights": list(cfg.real_weights),
        "io": io_spec(record["format"], path, cfg, record),
    }


def io_spec(fmt: str, path: Path, cfg, record: dict) -> dict:
    """Inputs/outputs with shapes, dtypes and quantization, read back from the file's runtime."""
    if fmt in ("onnx", "onnx-qdq"):
        import onnxruntime as ort

        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        def one(t):
            return {"name": t.name, "shape": list(t.shape), "dtype": t.type, "quantization": None}
        return {"inputs": [one(t) for t in s.get_inputs()], "outputs": [one(t) for t in s.get_outputs()]}
    if fmt in ("packed", "c"):
        from firmware_sim import blob

        step, _ = blob.load(path / "model.ncap" if fmt == "c" else path)
        state = {"name": "state", "shape": ["H", "W", step.channels], "dtype": "int8",
                 "quantization": {"zero_point": step.state_zero}}
        return {"inputs": [state, {"name": "fire", "shape": ["H", "W"], "dtype": "bool", "quantization": None}],
                "outputs": [state]}
    from ai_edge_litert.interpreter import Interpreter

    from nca_edge.larq_mirror import quiet_stderr

    with quiet_stderr():
        it = Interpreter(model_path=str(path))
    def one(d):
        scale, zero = d["quantization"]
        q = None if scale == 0 else {"scale": float(scale), "zero_point": int(zero)}
        return {"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": d["dtype"].__name__, "quantization": q}
    return {"inputs": [one(d) for d in it.get_input_details()], "outputs": [one(d) for d in it.get_output_details()]}


def artifact_name(stem: str, fmt: str) -> str:
    """File name inside an --all directory: bnn.onnx, bnn.tflite, bnn-int8.tflite, bnn-qdq.onnx, ..."""
    tag = {"onnx": "", "tflite": "", "tflite-int8": "-int8", "onnx-qdq": "-qdq", "c": "-c", "lce": "-lce"}.get(fmt, "-" + fmt)
    return f"{stem}{tag}{FORMATS[fmt].suffix}"


def export_all(model_ref: str, out_dir: str | Path, force: bool = False, height: int = 28, width: int = 28,
               batch: int = 1, progress: Callable[[str], None] | None = None) -> dict:
    """Every format the model supports, plus manifest.json (written last)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NCAEdgeError(f"{out_dir} is not a directory")
    _, config, _ = _load(model_ref)
    stem = config.ca.quant
    todo = []
    for fmt, f in FORMATS.items():
        try:
            _check_supported(fmt, config.ca)
        except NCAEdgeError:
            continue
        todo.append((fmt, out_dir / artifact_name(stem, fmt)))
    for fmt, path in todo + [(None, out_dir / "manifest.json")]:
        _check_target(path, force, fmt is not None and FORMATS[fmt].directory)
    built = []
    for fmt, path in todo:  # build everything in memory first: a failure writes nothing
        if progress:
            progress(fmt)
        built.append((path, *build(model_ref, fmt, height, width, batch)))
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for path, data, record in built:
        _write(path, data, force)
        entries.append(manifest_entry(path, data, record))
    manifest = {"model": model_ref, "variant": stem, "grid": [height, width], "batch": batch, "artifacts": entries}
    atomic_write_bytes(out_dir / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest
