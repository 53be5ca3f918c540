"""`nca-edge robustness`: accuracy under hardware faults and input corruptions, measured on the
deployed integer semantics (``firmware_sim``), for CA variants and the baseline int8 CNNs.

The CA runs its int8 step (``firmware_sim.int8``, the step its ``tflite-int8``, packed and C
exports compute bit for bit) under the article's protocol (``firmware_sim.protocol.run_int8``);
each baseline runs its ``tflite-int8`` file's arithmetic (``firmware_sim.cnn``, bit-exact with
TFLite's reference kernels). Faults (``firmware_sim.faults``) and their rates:

===============  ======================================  =========================================
fault            the CA                                  the CNN
===============  ======================================  =========================================
none             clean (rate 0)                          clean
state_bitflip    each bit of the cell-state memory        each bit of the activation memory (input
                 (all channels, all cells) flips with     and every layer's output) flips with
                 probability rate after every step        probability rate, once per classification
weight_bitflip   each stored kernel bit flips (1 bit per binary weight, 8 per int8 weight)
weight_stuck     each stored kernel bit is stuck at 0 or 1 with probability rate
dead_cells       a share of cells never update and read   the same share of input pixels and of
                 as empty to their neighbours (not        every activation map's positions read 0
                 counted in the metrics)
dropped_updates  a firing cell misses its update          (none: a CNN has no updates)
stale            neighbours seen K steps late (rate = K)  (none)
noise            Gaussian noise on the grey image, sigma = rate x 255, clipped
salt_pepper      a share (rate) of pixels set to 0 or 255
occlusion        a black square of side rate px centred on a random pixel of the digit
shift            the digit moved rate px in a random direction (what leaves the canvas is lost)
rotation         the digit rotated by rate degrees (random sign; bilinear)
scale            the digit resized by rate (14 to 56 px): the CA runs on a canvas of max(28, size)
                 px; the CNN, which takes 28 x 28 only, sees that canvas centred and cropped to 28
invert           the image inverted (255 - g): every cell alive
===============  ======================================  =========================================

Deterministic per seed: the fire masks are the protocol's (``mask_seed`` = seed), and every fault
draws from ``numpy.random.default_rng([seed, fault, rate, first digit of the batch])``; a new
weight-fault pattern is drawn per batch of 50 digits (so a row averages over patterns).
"""

from __future__ import annotations

import math

import numpy as np

from firmware_sim import cnn as cnn_sim
from firmware_sim import faults as F
from firmware_sim import int8
from firmware_sim.protocol import run_int8
from nca_edge.errors import NCAEdgeError

RATES: dict[str, list[float]] = {
    "none": [0],
    "state_bitflip": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2],
    "weight_bitflip": [1e-4, 1e-3, 1e-2],
    "weight_stuck": [1e-4, 1e-3, 1e-2],
    "dead_cells": [0.05, 0.1, 0.2, 0.5],
    "dropped_updates": [0.25, 0.5, 0.75],
    "stale": [1, 2, 4],
    "noise": [0.1, 0.2, 0.3],
    "salt_pepper": [0.02, 0.05, 0.1],
    "occlusion": [4, 8, 12],
    "shift": [2, 4, 8],
    "rotation": [15, 30, 45, 90],
    "scale": [0.5, 0.75, 1.5, 2.0],
    "invert": [1],
}
FAULTS = list(RATES)
CA_ONLY = {"dropped_updates", "stale"}
INPUT_FAULTS = {"noise", "salt_pepper", "occlusion", "shift", "rotation", "scale", "invert"}
UNITS = {"state_bitflip": "per bit per step (CA) / per inference (CNN)", "weight_bitflip": "per stored bit",
         "weight_stuck": "per stored bit", "dead_cells": "share of cells", "dropped_updates": "per firing cell",
         "stale": "steps late", "noise": "sigma / 255", "salt_pepper": "share of pixels", "occlusion": "square side, px",
         "shift": "px", "rotation": "degrees", "scale": "factor", "invert": "", "none": ""}
BATCH = 50


def rng_for(seed: int, fault: str, rate_index: int, start: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, FAULTS.index(fault), rate_index, start])


# ---------------------------------------------------------------------------- input corruptions


def corrupt(grey: np.ndarray, fault: str, rate: float, rng: np.random.Generator) -> np.ndarray:
    """The images [N, 28, 28] uint8 under an input fault (a new array; ``scale`` may enlarge it)."""
    g = np.asarray(grey, np.uint8)
    if fault == "noise":
        return np.clip(np.rint(g + rng.normal(0.0, rate * 255.0, g.shape)), 0, 255).astype(np.uint8)
    if fault == "salt_pepper":
        out = g.copy()
        hit = rng.random(g.shape) < rate
        out[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255)
        return out
    if fault == "invert":
        return (255 - g).astype(np.uint8)
    if fault == "occlusion":
        out, side = g.copy(), int(rate)
        for i, img in enumerate(g):
            ys, xs = np.nonzero(img > 25)
            cy, cx = (14, 14)
            if len(ys):
                j = rng.integers(len(ys))
                cy, cx = int(ys[j]), int(xs[j])
            y0, x0 = max(0, cy - side // 2), max(0, cx - side // 2)
            out[i, y0: y0 + side, x0: x0 + side] = 0
        return out
    if fault == "shift":
        out = np.zeros_like(g)
        angles = rng.uniform(0, 2 * math.pi, len(g))
        for i, (img, a) in enumerate(zip(g, angles)):
            dy, dx = int(round(rate * math.sin(a))), int(round(rate * math.cos(a)))
            out[i] = _shifted(img, dy, dx)
        return out
    if fault == "rotation":
        from PIL import Image

        signs = np.where(rng.random(len(g)) < 0.5, -1.0, 1.0)
        return np.stack([np.asarray(Image.fromarray(img).rotate(float(s * rate), resample=Image.BILINEAR))
                         for img, s in zip(g, signs)]).astype(np.uint8)
    if fault == "scale":
        return rescale(g, rate)
    raise ValueError(f"not an input fault: {fault}")


def _shifted(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    h, w = img.shape
    out = np.zeros_like(img)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = img[ys, xs]
    return out


def rescale(g: np.ndarray, factor: float) -> np.ndarray:
    """Each 28x28 image resized by factor (bilinear), centred on a canvas of max(28, size) px."""
    from PIL import Image

    size = max(1, int(round(g.shape[1] * factor)))
    canvas = max(g.shape[1], size)
    out = np.zeros((len(g), canvas, canvas), np.uint8)
    o = (canvas - size) // 2
    for i, img in enumerate(g):
        out[i, o: o + size, o: o + size] = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
    return out


def crop28(g: np.ndarray) -> np.ndarray:
    """The centre 28x28 of larger canvases (what a 28x28 CNN can be given)."""
    h = g.shape[1]
    if h == 28:
        return g
    o = (h - 28) // 2
    return g[:, o: o + 28, o: o + 28]


# ---------------------------------------------------------------------------- the CA


class CAFault:
    """The hooks ``run_int8`` calls (see its ``fault`` argument) for one fault at one rate."""

    def __init__(self, fault: str, rate: float, rate_index: int, seed: int):
        self.fault, self.rate, self.ri, self.seed = fault, rate, rate_index, seed
        self.rng = None
        self.dead = None

    def params(self, p: int8.Int8Step, ids) -> int8.Int8Step:
        self.rng = rng_for(self.seed, self.fault, self.ri, int(ids[0]))
        self.p = p
        if self.fault in ("weight_bitflip", "weight_stuck"):
            return F.weight_faults(p, "flip" if self.fault == "weight_bitflip" else "stuck", self.rate, self.rng)
        return p

    def fire(self, ids, t, fire):
        return F.dropped(fire, self.rate, self.rng) if self.fault == "dropped_updates" else fire

    def state(self, ids, t, s):
        if self.fault == "dead_cells":
            if t == -1:
                self.dead = F.dead_mask(s.shape[:3], self.rate, self.rng)
            return F.kill(self.p, s, self.dead)
        if self.fault == "state_bitflip" and t >= 0:
            return F.flip_bits(s, self.rate, self.rng)
        return s

    def mutated(self, ids, t, s):
        """The mutation gives every cell the new digit's pixel: dead cells stay dead."""
        return F.kill(self.p, s, self.dead) if self.fault == "dead_cells" else s


def ca_row(step: int8.Int8Step, ca: dict, grey: np.ndarray, labels: np.ndarray, fault: str, rate: float,
           rate_index: int, seed: int, steps: int, progress=None) -> dict:
    if fault in INPUT_FAULTS:
        grey = corrupt(grey, fault, rate, rng_for(seed, fault, rate_index, 1 << 30))
    schedule = f"stale:{int(rate)}" if fault == "stale" else "sync"
    hooks = CAFault(fault, rate, rate_index, seed)
    r = run_int8(step, grey, labels, ca["n_classes"], steps, 200 if steps > 200 else None, seed, schedule,
                 ca["fire_rate"], batch=BATCH, progress=progress, fault=hooks)
    row = {"accuracy_200": round(float(r["accuracy"][min(steps, 200) - 1]), 2),
           "agreement_200": round(float(r["agreement"][min(steps, 200) - 1]), 2)}
    if steps >= 400:
        row.update(accuracy_400=round(float(r["accuracy"][399]), 2), agreement_400=round(float(r["agreement"][399]), 2))
    return row


# ---------------------------------------------------------------------------- the CNN


def _zero_points(p: cnn_sim.Int8CNN) -> list[int]:
    return [p.input_zero] + [c.output_zero for c in p.convs]


def cnn_row(p: cnn_sim.Int8CNN, grey: np.ndarray, labels: np.ndarray, fault: str, rate: float, rate_index: int,
            seed: int, progress=None) -> dict:
    if fault in INPUT_FAULTS:
        grey = crop28(corrupt(grey, fault, rate, rng_for(seed, fault, rate_index, 1 << 30)))
    zeros = _zero_points(p)
    hits = 0
    for start in range(0, len(grey), BATCH):
        rng = rng_for(seed, fault, rate_index, start)
        params, hook = p, None
        if fault in ("weight_bitflip", "weight_stuck"):
            params = F.weight_faults(p, "flip" if fault == "weight_bitflip" else "stuck", rate, rng)
        elif fault == "state_bitflip":
            hook = lambda i, a: F.flip_bits(a, rate, rng)  # noqa: E731
        elif fault == "dead_cells":
            def hook(i, a):
                if i >= len(zeros):  # the logits
                    return a
                out = a.copy()
                out[F.dead_mask(a.shape[:3], rate, rng)] = zeros[i]
                return out
        g = grey[start: start + BATCH]
        hits += int((np.argmax(cnn_sim.forward(params, g, hook), axis=1) == labels[start: start + BATCH]).sum())
        if progress is not None:
            progress(len(g))
    return {"accuracy_200": round(100.0 * hits / max(len(grey), 1), 2), "agreement_200": None}


# ---------------------------------------------------------------------------- the table


def plan(variants: list[str], baselines: list[str], faults: list[str]) -> list[tuple[str, str, str, float, int]]:
    """(kind, model, fault, rate, rate index) for every row to measure."""
    out = []
    for kind, models in (("ca", variants), ("cnn", baselines)):
        for m in models:
            for f in faults:
                if kind == "cnn" and f in CA_ONLY:
                    continue
                out += [(kind, m, f, r, i) for i, r in enumerate(RATES[f])]
    return out


def robustness(variants: list[str], baselines: list[str], digits, n_digits: int, seed: int = 0,
               faults: list[str] | None = None, steps: int = 200, progress: bool = True, log=lambda m: None,
               derived: dict | None = None) -> list[dict]:
    """Rows: model, kind (ca | cnn), fault, rate, unit, digits, accuracy_200, agreement_200 (None for a
    CNN: one output, nothing to agree on), accuracy_400 / agreement_400 with steps = 400.

    ``derived``: integer models already derived, {(kind, model): ca_step(...) or baseline_cnn(...)};
    the others are derived here (and added to it)."""
    from tqdm import tqdm

    faults = faults or FAULTS
    bad = sorted(set(faults) - set(FAULTS))
    if bad:
        raise NCAEdgeError(f"unknown fault(s) {bad}: choose from {', '.join(FAULTS)}")
    x, y = digits.split("test")
    n = min(n_digits, len(y))
    grey, labels = x[:n], y[:n].astype(np.int64)
    todo = plan(variants, baselines, faults)
    models = derived if derived is not None else {}
    for kind, m, *_ in todo:
        if (kind, m) not in models:
            log(f"deriving the integer model of {m}")
            models[(kind, m)] = ca_step(m) if kind == "ca" else baseline_cnn(m, digits)
    total = sum(n * (steps if k == "ca" else 1) for k, *_ in todo)
    bar = tqdm(total=total, desc="robustness", unit="cell-step", unit_scale=True, disable=not progress)
    rows = []
    for kind, m, fault, rate, ri in todo:
        bar.set_postfix_str(f"{m} {fault} {rate:g}")
        if kind == "ca":
            step, ca = models[(kind, m)]
            got = ca_row(step, ca, grey, labels, fault, rate, ri, seed, steps, progress=lambda k: bar.update(k))
        else:
            got = cnn_row(models[(kind, m)], grey, labels, fault, rate, ri, seed, progress=lambda k: bar.update(k))
        rows.append({"model": m, "variant": m, "kind": kind, "fault": fault, "rate": rate, "unit": UNITS[fault],
                     "digits": n, "seed": seed, **got})
    bar.close()
    return rows


def ca_step(model: str):
    """(Int8Step, ca config dict) of a CA model: its packed export, built in memory."""
    from firmware_sim import blob

    import export

    data, record = export.build(model, "packed")
    return blob.loads(data)[0], record["config"]["ca"]


def baseline_cnn(name: str, digits=None) -> cnn_sim.Int8CNN:
    """A baseline's int8 CNN, derived from its tflite-int8 file (built in memory)."""
    from nca_edge.baseline import load

    model, _ = load(name)
    if digits is None or digits.name != model.cfg.dataset:
        from nca_edge.data import load_digits

        digits = load_digits(model.cfg.dataset)
    return baseline_model_int8(model, digits)


def baseline_model_int8(model, digits) -> cnn_sim.Int8CNN:
    from .cnn_export import interpreter, quantization, tflite_int8_bytes

    return cnn_sim.derive(quantization(interpreter(tflite_int8_bytes(model, calibration_images(digits)))))


def calibration_images(digits) -> np.ndarray:
    """The converter's representative set: the first 200 training images."""
    return digits.train_x[:200]


# ---------------------------------------------------------------------------- output


COLUMNS = ["model", "kind", "fault", "rate", "digits", "accuracy_200", "agreement_200"]


def table(rows: list[dict], fmt: str) -> str:
    import csv
    import io
    import json

    from .report import text_table

    if fmt == "json":
        return json.dumps(rows, indent=2)
    cols = COLUMNS + [c for c in ("accuracy_400", "agreement_400") if any(c in r for r in rows)]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    cells = [cols] + [[_cell(r.get(c)) for c in cols] for r in rows]
    return "\n".join(text_table(cells, fmt)) + "\n"


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}" if abs(v) < 0.01 and v else (f"{v:.2f}" if v != int(v) else f"{int(v)}")
    return str(v)


def plot(rows: list[dict], out_dir, fmt: str = "png") -> list:
    """One figure per fault: accuracy@200 vs rate, one line per model. Returns the paths."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = {r["model"]: r["accuracy_200"] for r in rows if r["fault"] == "none"}
    paths = []
    for fault in [f for f in FAULTS if f != "none" and any(r["fault"] == f for r in rows)]:
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for m in dict.fromkeys(r["model"] for r in rows):
            pts = sorted((r["rate"], r["accuracy_200"]) for r in rows if r["model"] == m and r["fault"] == fault)
            if not pts:
                continue
            kind = next(r["kind"] for r in rows if r["model"] == m)
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            ax.plot(xs, ys, marker="o" if kind == "ca" else "s", linestyle="-" if kind == "ca" else "--",
                    label=f"{m} ({'CA' if kind == 'ca' else 'CNN'})")
            if m in clean and len(xs) > 1:
                ax.axhline(clean[m], color=ax.lines[-1].get_color(), alpha=0.15)
        if fault in ("state_bitflip", "weight_bitflip", "weight_stuck"):
            ax.set_xscale("log")
        ax.set_xlabel(f"{fault} ({UNITS[fault]})" if UNITS[fault] else fault)
        ax.set_ylabel("accuracy at step 200 (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        n = rows[0]["digits"]
        ax.set_title(f"{fault}: {n:,} test digits", fontsize=10)
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        path = out_dir / f"robustness_{fault}.{fmt}"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
