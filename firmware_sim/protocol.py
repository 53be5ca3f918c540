"""The evaluation protocol's pieces that every host loop shares (numpy only).

The article's protocol (see ``nca_edge.evaluate``): each test digit runs from its seed
state; after ``mutate_at`` steps sample i is swapped to digit ``mutation_targets(n, seed)[i]``
(its pixel channel becomes the new digit; mutable channels are kept where the new digit is
alive and zeroed elsewhere); fire masks come from ``firmware_sim.prng``.

A cell's label is the argmax of its class channels, ties going to the lowest index (numpy's
and PyTorch's argmax both return the first maximum).
"""

from __future__ import annotations

import numpy as np


def mutation_targets(n: int, seed: int) -> np.ndarray:
    """A seeded derangement of 0..n-1: sample i becomes digit perm[i] != i (n >= 2)."""
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    offsets = rng.integers(1, n, size=n)
    return (np.arange(n) + offsets) % n


def agreeing(labels: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """bool [B]: the sample has alive cells and they all give the same label (total agreement).

    labels [B, H, W] int, alive [B, H, W] bool.
    """
    big = np.iinfo(np.int64).max
    lo = np.where(alive, labels, big).reshape(len(labels), -1).min(1)
    hi = np.where(alive, labels, -1).reshape(len(labels), -1).max(1)
    return (lo == hi) & alive.reshape(len(labels), -1).any(1)


def step_metrics(labels: np.ndarray, alive: np.ndarray, targets: np.ndarray) -> tuple[int, int, int]:
    """(correct alive cells, alive cells, samples whose alive cells all agree) for one step.

    labels [B, H, W] int, alive [B, H, W] bool, targets [B] int.
    """
    correct = int((labels == targets[:, None, None])[alive].sum())
    return correct, int(alive.sum()), int(agreeing(labels, alive).sum())


def run_int8(params, grey: np.ndarray, labels: np.ndarray, n_classes: int = 10, steps: int = 400,
             mutate_at: int | None = 200, mask_seed: int = 0, schedule: str = "sync", fire_rate: float = 0.5,
             batch: int = 50, record_labels: bool = False, progress=None, fault=None) -> dict:
    """The article's protocol on the int8 simulator (numpy integers only), under a schedule.

    grey: uint8 test images [N, H, W]; labels [N]. Returns {"accuracy": [steps] %, "agreement":
    [steps] %, "agree_last": bool [N] (each sample's total agreement at the last step), and with
    record_labels "labels": int8 [N, steps, H, W] (-1 on dead cells)}.
    Fire masks: ``prng.fire_mask(mask_seed, digit index, step, H, W, fire_rate)``; mutation as
    ``int8.mutate`` with targets ``mutation_targets(N, mask_seed)``.

    ``fault`` (``nca-edge robustness``): an object with any of ``params(params, ids)`` (the
    parameters a batch of digits runs with, e.g. faulty weights), ``fire(ids, t, fire)`` (the
    fire mask actually applied at step t), ``state(ids, t, state)`` (the state after step t,
    and with t = -1 the seed state: memory upsets, dead cells) and ``mutated(ids, t, state)``
    (the state just after the mutation before step t), each returning its new value.
    """
    from . import int8
    from .prng import fire_mask
    from .schedules import Runner

    n, h, w = grey.shape
    targets = mutation_targets(n, mask_seed)
    mutate_at = mutate_at if mutate_at and mutate_at < steps else None
    correct = np.zeros(steps, np.int64)
    alive_n = np.zeros(steps, np.int64)
    agree = np.zeros(steps, np.int64)
    agree_last = np.zeros(n, bool)
    rec = np.full((n, steps, h, w), -1, np.int8) if record_labels else None
    hook = lambda name: getattr(fault, name, None) or (lambda ids, t, x: x)  # noqa: E731
    batch_params, fire_hook, state_hook, mutated_hook = (getattr(fault, "params", None), hook("fire"), hook("state"),
                                                         hook("mutated"))
    runner = Runner(params, schedule, seed=mask_seed)
    for start in range(0, n, batch):
        ids = np.arange(start, min(start + batch, n))
        if batch_params is not None:
            runner = Runner(batch_params(params, ids), schedule, seed=mask_seed)
        y = labels[ids]
        s = state_hook(ids, -1, int8.seed(params, grey[ids]))
        runner.reset()
        for t in range(steps):
            if t == mutate_at:
                s = mutated_hook(ids, t, int8.mutate(params, s, grey[targets[ids]]))
                y = labels[targets[ids]]
            s = runner.step(s, fire_hook(ids, t, fire_mask(mask_seed, ids, t, h, w, fire_rate)), t, ids)
            s = state_hook(ids, t, s)
            lab = int8.labels(params, s, n_classes)
            alive = s[..., 0] >= params.alive_min
            c, a, g = step_metrics(lab, alive, y)
            correct[t] += c
            alive_n[t] += a
            agree[t] += g
            if rec is not None:
                rec[ids, t] = np.where(alive, lab, -1)
            if progress is not None:
                progress(len(ids))
        if steps:
            agree_last[ids] = agreeing(lab, alive)
    out = {"accuracy": 100.0 * correct / np.maximum(alive_n, 1), "agreement": 100.0 * agree / n, "agree_last": agree_last}
    if rec is not None:
        out["labels"] = rec
    return out
