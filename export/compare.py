"""The model size vs accuracy table across variants (`nca-edge compare`); above the core, since it
builds every export to measure its size.

Accuracy and agreement come from ``nca_edge.evaluate.evaluate``: recorded in a checkpoint's
sidecar by ``nca-edge eval --save-metrics`` for the same workload (dataset, digits, mask
seed, steps, mutation step), or computed on the spot when no such record exists. Sizes come
from ``nca_edge.size``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

from nca_edge.checkpoint import default_models, load_checkpoint, resolve_model  # noqa: F401 (default_models: re-exported)
from nca_edge.evaluate import evaluate, metrics_key
from nca_edge.size import bit_widths, float32_bytes, kernel_bits, packed_bytes, tensor_table

COLUMNS = ["variant", "weight_bits", "kernel_bits", "activation_bits", "params", "packed_bytes", "float32_bytes",
           "macs", "accuracy_200", "agreement_200", "accuracy_400", "agreement_400"]
# Sizes of real exported files (``add_export_sizes``); None where a variant has no such export.
EXPORT_COLUMNS = {"onnx_bytes": "onnx", "tflite_bytes": "tflite", "tflite_int8_bytes": "tflite-int8",
                  "lce_bytes": "lce", "packed_file_bytes": "packed"}

def compare_rows(models: list[str], digits, n_digits: int, mask_seed: int = 0, steps: int = 400,
                 mutate_at: int = 200, progress: bool = False, log=lambda msg: None) -> list[dict]:
    """One row per model. ``digits`` is a ``nca_edge.data.Digits``; the first n_digits test digits are used."""
    x, y = digits.split("test")
    n = min(n_digits, len(y))
    rows = []
    for name in models:
        path = resolve_model(name)
        model, config, meta = load_checkpoint(path)
        key = metrics_key(digits.name, n, mask_seed, steps, mutate_at)
        summary = meta.get("metrics", {}).get(key)
        source = "recorded"
        if summary is None:
            log(f"evaluating {name} on {n} test digits (no recorded metrics for {key})")
            summary = evaluate(model, x[:n], y[:n], steps=steps, mutate_at=mutate_at, mask_seed=mask_seed,
                               progress=progress).summary()
            source = "computed"
        wb, ab = bit_widths(config.ca)
        row = {
            "model": name, "variant": config.ca.quant, "weight_bits": wb,
            "kernel_bits": kernel_bits(config.ca), "activation_bits": ab,
            "params": config.ca.param_count(), "packed_bytes": packed_bytes(config.ca),
            "float32_bytes": float32_bytes(config.ca), "macs": ca_macs(config.ca, x[:n]),
            **{k: summary.get(k) for k in ("accuracy_200", "agreement_200", "accuracy_400", "agreement_400")},
            "digits": n, "metrics": source, "iterations": meta.get("iterations"),
        }
        row["_tensors"] = tensor_table(config.ca)
        row["_config"] = dataclasses.asdict(config.ca)
        rows.append(row)
    return rows


def ca_macs(cfg, grey, steps: int = 200) -> int:
    """Multiply-accumulates (an XNOR/popcount term counts as one) of one classification: ``steps``
    steps of the cells that compute (alive and firing: fire rate x the mean alive cells of
    ``grey``), each cell's three layers."""
    import numpy as np

    per_cell = 9 * (1 if cfg.depthwise else cfg.channels) * cfg.perception + cfg.perception * cfg.hidden \
        + cfg.hidden * (cfg.channels - 1)
    alive = float(np.mean((np.asarray(grey, np.float32) / 255.0 > cfg.alive_threshold).sum((1, 2)))) if len(grey) else 0.0
    return int(round(steps * cfg.fire_rate * alive * per_cell))


def baseline_rows(names: list[str], digits, n_digits: int, log=lambda msg: None) -> list[dict]:
    """One row per baseline CNN (``nca_edge.baseline``): its int8 file's accuracy in firmware_sim
    on the same test digits (one pass: accuracy_200 is its accuracy, no agreement), its bytes
    (int8 kernels, a 32-bit scale and bias per output channel, as ``nca_edge.size`` counts an
    int8 layer) and its MACs per classification."""
    import numpy as np

    from firmware_sim import cnn as cnn_sim
    from nca_edge.baseline import load

    from .cnn_export import interpreter, quantization, tflite_int8_bytes
    from .robustness import calibration_images

    x, y = digits.split("test")
    n = min(n_digits, len(y))
    rows = []
    for name in names:
        model, meta = load(name)
        log(f"exporting baseline {name} as tflite-int8")
        data = tflite_int8_bytes(model, calibration_images(digits))
        p = cnn_sim.derive(quantization(interpreter(data)))
        acc = 100.0 * float(np.mean(cnn_sim.classify(p, x[:n]) == y[:n]))
        layers = p.layers()
        rows.append({
            "model": name, "variant": "cnn", "weight_bits": 8, "kernel_bits": ",".join("8" for _ in layers),
            "activation_bits": 8, "params": model.cfg.parameters(),
            "packed_bytes": sum(c.weight.size + 8 * c.weight.shape[0] for c in layers),
            "float32_bytes": 4 * model.cfg.parameters(), "macs": cnn_sim.macs(p),
            "accuracy_200": round(acc, 2), "agreement_200": None, "accuracy_400": None, "agreement_400": None,
            "digits": n, "metrics": "computed", "iterations": meta.get("steps"),
            "onnx_bytes": None, "tflite_bytes": None, "tflite_int8_bytes": len(data), "lce_bytes": None,
            "packed_file_bytes": None, "_tensors": [],
        })
    return rows


def add_export_sizes(rows: list[dict], log=lambda msg: None) -> None:
    """Build every export format of each row's model (28x28, batch 1) and record its size in bytes.

    ``packed_file_bytes`` is the whole .ncap file (header, directory, artifact record, CRC);
    ``packed_bytes`` stays the weights and per-channel constants alone. Sizes are cached per
    checkpoint SHA-256, format and the exporter itself (a hash of the export and firmware_sim
    sources: a changed exporter builds again, even within one nca-edge version) in the cache
    directory (export_sizes.json).
    """
    import hashlib

    from nca_edge.atomic import atomic_write_bytes
    from nca_edge.checkpoint import checkpoint_paths
    from nca_edge.data import cache_dir

    import export

    import firmware_sim

    sources = sorted(Path(export.__file__).parent.glob("*.py")) + sorted(Path(firmware_sim.__file__).parent.glob("*.py"))
    exporter = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    cache_file = cache_dir() / "export_sizes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    for r in rows:
        if r["variant"] == "cnn":
            continue  # a baseline's row already has its one export's size
        weights = checkpoint_paths(resolve_model(r["model"]))[0]
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        ok = set(export.supported_formats(r["model"]))
        for col, fmt in EXPORT_COLUMNS.items():
            key = f"{digest}:{fmt}:{exporter}"
            if fmt not in ok or fmt not in export.FORMATS:
                r[col] = None
                continue
            if key not in cache:
                log(f"exporting {r['model']} as {fmt} to measure its size")
                data, _ = export.build(r["model"], fmt)
                cache[key] = export._digest(data)[0]
            r[col] = cache[key]
    try:
        atomic_write_bytes(cache_file, (json.dumps(cache, indent=1) + "\n").encode())
    except OSError:
        pass  # a read-only cache only costs time


def add_larq_sizes(rows: list[dict]) -> None:
    """Attach larq.models.summary's model size to each row (needs TensorFlow + Larq)."""
    from nca_edge.config import CAConfig
    from nca_edge.errors import NCAEdgeError
    from nca_edge.larq_mirror import build_step_model, larq_summary

    for r in rows:
        if "_config" not in r:
            continue
        cfg = CAConfig(**r["_config"])
        try:
            r["_larq_bytes"] = larq_summary(build_step_model(cfg, 28, 28, batch=1))["model_size_bytes"]
        except NCAEdgeError:
            r["_larq_bytes"] = None  # no mirror for this configuration: no Larq figure


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def render(rows: list[dict], fmt: str, verbose: bool = False) -> str:
    cols = ["model", *COLUMNS] + [c for c in EXPORT_COLUMNS if rows and c in rows[0]]
    if fmt == "json":
        return json.dumps([_public(r) for r in rows], indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols + ["digits", "metrics", "iterations"], lineterminator="\n",
                           extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(_public(r))
        return buf.getvalue().rstrip("\n")
    from .report import text_table

    lines = text_table([cols] + [[_fmt(r[c]) for c in cols] for r in rows], fmt)
    if verbose:
        for r in rows:
            if not r["_tensors"]:
                continue
            lines += ["", f"{r['model']} ({r['variant']}): every tensor's bit width"]
            lines += [f"  {t.name:<28} {str(t.shape):<16} {t.bits:>2} bit  {t.nbytes:>7} B  {t.kind:<10} {t.note}"
                      for t in r["_tensors"]]
            lines.append(f"  {'total stored':<28} {'':<16} {'':>6}  {r['packed_bytes']:>7} B")
            if r.get("_larq_bytes") is not None:
                scales = sum(t.nbytes for t in r["_tensors"] if t.name.endswith(".scale"))
                lines.append(
                    f"  larq.models.summary: {r['_larq_bytes']:.0f} B (Larq prints KiB to 2 decimals). Larq counts every "
                    f"bias as 32 bits and derives binary-kernel scales from the latent weights, so it leaves out the "
                    f"{scales} B of per-channel scales a device stores; folding scale and bias into one threshold "
                    f"(binary outputs) costs the same as Larq's bias.")
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def plot(rows: list[dict], path: Path) -> None:
    """Size (packed bytes, log scale) vs accuracy at step 200, with the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    pts = sorted((r["packed_bytes"], r["accuracy_200"] or 0.0, r["model"], r["variant"] == "cnn") for r in rows)
    baseline_offsets = iter([(6, -14), (-44, -14), (4, 6)] * len(pts))  # neighbouring baselines: labels apart
    for size, acc, name, cnn in pts:
        ax.scatter(size, acc, s=40, marker="s" if cnn else "o", facecolors="none" if cnn else None,
                   edgecolors="grey" if cnn else None)
        ax.annotate(name, (size, acc), textcoords="offset points", xytext=next(baseline_offsets) if cnn else (6, 4),
                    color="grey" if cnn else None, fontsize=8 if cnn else None)
    if any(p[3] for p in pts):
        ax.scatter([], [], marker="s", facecolors="none", edgecolors="grey", label="int8 CNN baselines (accuracy)")
    front, best = [], -1.0
    for size, acc, _, cnn in pts:
        if cnn:
            continue
        if acc > best:
            front.append((size, acc))
            best = acc
    if len(front) > 1:
        ax.plot(*zip(*front), ls="--", color="grey", lw=1, label="Pareto front (CA variants)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("packed bytes (weights + per-channel constants)")
    ax.set_ylabel("accuracy at step 200 (%; CA: average cell accuracy)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)
