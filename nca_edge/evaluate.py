"""The article's metrics: average cell accuracy and total agreement over time, with mutation.

Protocol (Distill "Self-classifying MNIST Digits", L2 + noise row):

* every test digit starts from its seed state and runs ``steps`` CA steps (400), fire rate
  as configured (0.5), no noise;
* after step ``mutate_at`` (200) every sample is mutated to another test digit
  (sample i -> digit ``perm[i]``, a seeded derangement of the evaluated set) and keeps going;
* fire masks come from the shared hardware PRNG (``firmware_sim.prng``): stream = the
  sample's index in the test set, so results do not depend on batch size.

Metrics at step t (after t steps, t = 1..steps):

* average cell accuracy = correct alive cells / alive cells, pooled over all samples;
* total agreement = share of samples whose alive cells all have the same argmax label.

"Top" values are the maximum over steps 1..mutate_at (before mutation), as in the article.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from firmware_sim.prng import fire_mask
from firmware_sim.protocol import mutation_targets

from .ca import ca_step, mutate, quantize_state, seed_state
from .cells import AliveCells
from .config import CAConfig
from .data import to_float

# The article's table, L2 + noise row (percent; top values with their step).
ARTICLE_ROW = {
    "model": "Distill article (L2 + noise)",
    "top_accuracy": 95.4, "top_accuracy_step": 65, "accuracy_200": 95.3,
    "top_agreement": 88.2, "top_agreement_step": 190, "agreement_200": 88.1,
    "accuracy_400": None, "agreement_400": None,
}


@dataclass
class EvalResult:
    accuracy: np.ndarray  # [steps] percent, index t-1 = after t steps
    agreement: np.ndarray  # [steps] percent
    n_digits: int
    steps: int
    mutate_at: int
    mask_seed: int

    def at(self, curve: np.ndarray, step: int) -> float | None:
        return float(curve[step - 1]) if 1 <= step <= len(curve) else None

    def summary(self) -> dict:
        m = min(self.mutate_at, self.steps) if self.mutate_at else self.steps
        ia, ig = int(np.argmax(self.accuracy[:m])), int(np.argmax(self.agreement[:m]))
        return {
            "top_accuracy": round(float(self.accuracy[ia]), 2), "top_accuracy_step": ia + 1,
            "accuracy_200": _r(self.at(self.accuracy, 200)),
            "top_agreement": round(float(self.agreement[ig]), 2), "top_agreement_step": ig + 1,
            "agreement_200": _r(self.at(self.agreement, 200)),
            "accuracy_400": _r(self.at(self.accuracy, 400)),
            "agreement_400": _r(self.at(self.agreement, 400)),
        }

    def to_dict(self) -> dict:
        return {
            "n_digits": self.n_digits, "steps": self.steps, "mutate_at": self.mutate_at,
            "mask_seed": self.mask_seed, "summary": self.summary(),
            "accuracy": [round(float(v), 4) for v in self.accuracy],
            "agreement": [round(float(v), 4) for v in self.agreement],
        }


def _r(v):
    return None if v is None else round(v, 2)


@torch.inference_mode()
def evaluate(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    steps: int = 400,
    mutate_at: int | None = 200,
    mask_seed: int = 0,
    batch_size: int = 250,
    progress: bool = False,
) -> EvalResult:
    """Run the protocol above on uint8 images [N, 28, 28] and labels [N]."""
    cfg: CAConfig = model.cfg
    device = next(model.parameters()).device
    n = len(labels)
    if n == 0:
        raise ValueError("no digits to evaluate")
    mutate_at = mutate_at if mutate_at and mutate_at < steps else None
    targets = mutation_targets(n, mask_seed)
    correct = np.zeros(steps, dtype=np.int64)
    alive = np.zeros(steps, dtype=np.int64)
    agree = np.zeros(steps, dtype=np.int64)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n * steps, unit="digit-step", unit_scale=True, mininterval=1.0, desc="eval", dynamic_ncols=True)
    for start in range(0, n, batch_size):
        ids = np.arange(start, min(start + batch_size, n))
        px = quantize_state(torch.from_numpy(to_float(images[ids])).to(device), cfg)  # the CA's view of the image
        y = torch.from_numpy(labels[ids].astype(np.int64)).to(device)
        plan = AliveCells(px, cfg)
        hidden = plan.gather(seed_state(px, cfg))
        h, w = px.shape[1:]
        for t in range(steps):
            if mutate_at is not None and t == mutate_at:
                new_px = quantize_state(torch.from_numpy(to_float(images[targets[ids]])).to(device), cfg)
                state = mutate(plan.scatter(hidden, px), new_px, cfg)
                px, y = new_px, torch.from_numpy(labels[targets[ids]].astype(np.int64)).to(device)
                plan = AliveCells(px, cfg)
                hidden = plan.gather(state)
            fire = torch.from_numpy(fire_mask(mask_seed, ids, t, h, w, cfg.fire_rate)).to(device)
            hidden = ca_step(model, hidden, plan.cells(fire), cells=plan)
            c, a, g = _step_metrics(hidden, plan, y, cfg.n_classes)
            correct[t] += c
            alive[t] += a
            agree[t] += g
            if bar is not None:
                bar.update(len(ids))
    if bar is not None:
        bar.close()
    return EvalResult(
        accuracy=100.0 * correct / np.maximum(alive, 1),
        agreement=100.0 * agree / n,
        n_digits=n, steps=steps, mutate_at=mutate_at or 0, mask_seed=mask_seed,
    )


def cell_labels(hidden: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Each alive cell's label: argmax of its class channels (ties -> lowest index)."""
    return hidden[:, -n_classes:].argmax(1)


def _step_metrics(hidden, plan: AliveCells, y: torch.Tensor, n_classes: int) -> tuple[int, int, int]:
    lab = cell_labels(hidden, n_classes)
    correct = int((lab == y[plan.b]).sum())
    b = plan.shape[0]
    lo = torch.full((b,), n_classes, dtype=lab.dtype, device=lab.device).scatter_reduce(0, plan.b, lab, "amin")
    hi = torch.full((b,), -1, dtype=lab.dtype, device=lab.device).scatter_reduce(0, plan.b, lab, "amax")
    has_cells = plan.counts > 0
    agree = int(((lo == hi) & has_cells).sum())
    return correct, plan.n, agree


# ---------------------------------------------------------------------------- reports

COLUMNS = [
    ("model", "Model"),
    ("top_accuracy", "Top accuracy"),
    ("accuracy_200", "Accuracy at 200"),
    ("top_agreement", "Top agreement"),
    ("agreement_200", "Agreement at 200"),
    ("accuracy_400", "Accuracy at 400"),
    ("agreement_400", "Agreement at 400"),
]


def _cell(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None:
        return "–"
    if key in ("top_accuracy", "top_agreement"):
        return f"{v:.1f} at {row[key + '_step']}"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def table_rows(rows: list[dict]) -> list[list[str]]:
    return [[_cell(r, k) for k, _ in COLUMNS] for r in rows]


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(COLUMNS))) + "|"
    body = ["| " + " | ".join(r) + " |" for r in table_rows(rows)]
    return "\n".join([head, sep, *body])


def text_table(rows: list[dict]) -> str:
    cells = [[h for _, h in COLUMNS]] + table_rows(rows)
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def plot_curves(results: dict[str, EvalResult], path) -> None:
    """PNG: accuracy and agreement over time for one or more models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, r in results.items():
        t = np.arange(1, r.steps + 1)
        axes[0].plot(t, r.accuracy, label=name)
        axes[1].plot(t, r.agreement, label=name)
    for ax, title in zip(axes, ("Average cell accuracy (%)", "Total agreement (%)")):
        ax.set_title(title)
        ax.set_xlabel("CA step")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        any_r = next(iter(results.values()))
        if any_r.mutate_at:
            ax.axvline(any_r.mutate_at, color="grey", ls="--", lw=1)
            ax.text(any_r.mutate_at + 3, 5, "mutation", color="grey")
    axes[0].legend(loc="lower right")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def metrics_key(dataset: str, n_digits: int, mask_seed: int, steps: int, mutate_at: int | None) -> str:
    """Where a checkpoint sidecar records an evaluation's summary (``metrics`` field)."""
    return f"{dataset}-test-{n_digits}-seed{mask_seed}-steps{steps}-mutate{mutate_at or 0}"
