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


def step_metrics(labels: np.ndarray, alive: np.ndarray, targets: np.ndarray) -> tuple[int, int, int]:
    """(correct alive cells, alive cells, samples whose alive cells all agree) for one step.

    labels [B, H, W] int, alive [B, H, W] bool, targets [B] int.
    """
    correct = int((labels == targets[:, None, None])[alive].sum())
    big = np.iinfo(np.int64).max
    lo = np.where(alive, labels, big).reshape(len(labels), -1).min(1)
    hi = np.where(alive, labels, -1).reshape(len(labels), -1).max(1)
    has_cells = alive.reshape(len(labels), -1).any(1)
    return correct, int(alive.sum()), int(((lo == hi) & has_cells).sum())
