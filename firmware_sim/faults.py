"""Hardware faults on the integer models (numpy only): what ``nca-edge robustness`` injects.

Every function takes a ``numpy.random.Generator`` and is deterministic given it.

Memory upsets (single-event upsets, SEU) and stuck bits::

    flip_bits(a, rate)        every bit of the int8 array a flips with probability rate
    stick_bits(a, rate)       every bit is stuck with probability rate, at 0 or 1 (half each)

Stored weights (``weight_faults``): the kernels of an ``Int8Step`` (the CA) or an ``Int8CNN``
(the baseline) as the device stores them: an int8 kernel is bytes, so any of its 8 bits per
weight can flip; a binary kernel (every value +-k in a row: the packed blob's BITS tensors)
is one bit per weight, so a flip negates that weight and a stuck bit forces +k (0) or -k (1).
Biases, multipliers and thresholds are left alone (a small share of the bytes).

Cells (``dead_mask``, ``dropped``): a dead cell never updates and reads as empty (zero point in
every channel, pixel included) to its neighbours; a dropped update is a firing cell that misses
its step.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .int8 import Conv, Int8Step


def _positions(rng: np.random.Generator, n_bits: int, rate: float) -> np.ndarray:
    """Distinct bit positions, about rate x n_bits of them: a binomial count k of draws with
    replacement, coinciding draws merged (a bit is hit with probability 1 - (1 - 1/n)^k, rate
    within a relative rate / 2: 0.5% fewer hits at rate 1e-2); above k = n/4, each bit is drawn
    on its own with probability rate."""
    k = int(rng.binomial(n_bits, min(max(rate, 0.0), 1.0)))
    if k == 0:
        return np.zeros(0, np.int64)
    if k > n_bits // 4:
        return np.nonzero(rng.random(n_bits) < rate)[0]
    return np.unique(rng.integers(0, n_bits, size=k))


def flip_bits(a: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of int8 array a with each of its bits flipped with probability rate."""
    out = np.ascontiguousarray(a).copy()
    flat = out.reshape(-1).view(np.uint8)
    pos = _positions(rng, flat.size * 8, rate)
    if len(pos):
        np.bitwise_xor.at(flat, pos // 8, (np.uint8(1) << (pos % 8).astype(np.uint8)))
    return out


def stick_bits(a: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of int8 array a with each bit stuck (at 0 or 1, half each) with probability rate."""
    out = np.ascontiguousarray(a).copy()
    flat = out.reshape(-1).view(np.uint8)
    pos = _positions(rng, flat.size * 8, rate)
    if len(pos):
        ones = rng.random(len(pos)) < 0.5
        bit = (np.uint8(1) << (pos % 8).astype(np.uint8))
        np.bitwise_or.at(flat, pos[ones] // 8, bit[ones])
        np.bitwise_and.at(flat, pos[~ones] // 8, ~bit[~ones])
    return out


def binary_rows(w: np.ndarray) -> np.ndarray | None:
    """k [O] if every row of kernel w [O, ...] is +-k_o (a binary kernel, 1 bit per weight), else None."""
    rows = np.abs(w.reshape(w.shape[0], -1).astype(np.int32))
    k = rows.max(1)
    return k if np.all((rows == k[:, None]) & (k[:, None] > 0)) else None


def fault_kernel(w: np.ndarray, kind: str, rate: float, rng: np.random.Generator) -> np.ndarray:
    """One stored kernel under ``kind`` = "flip" | "stuck" at ``rate`` per stored bit."""
    k = binary_rows(w)
    if k is None:
        return flip_bits(w, rate, rng) if kind == "flip" else stick_bits(w, rate, rng)
    signs = (w.reshape(w.shape[0], -1) < 0).astype(np.uint8)  # the stored bit: 1 = -k
    pos = _positions(rng, signs.size, rate)
    flat = signs.reshape(-1)
    if kind == "flip":
        flat[pos] ^= 1
    else:
        flat[pos] = rng.random(len(pos)) < 0.5
    return (np.where(signs == 1, -k[:, None], k[:, None]).reshape(w.shape)).astype(np.int8)


def kernel_bits(w: np.ndarray) -> int:
    """Bits the kernel takes in storage (1 per weight if binary, else 8)."""
    return w.size * (1 if binary_rows(w) is not None else 8)


def weight_faults(params, kind: str, rate: float, rng: np.random.Generator):
    """``params`` (an ``Int8Step`` or ``firmware_sim.cnn.Int8CNN``) with faulty stored kernels."""
    if kind not in ("flip", "stuck"):
        raise ValueError("kind must be 'flip' or 'stuck'")
    hit = lambda c: replace(c, weight=fault_kernel(c.weight, kind, rate, rng))  # noqa: E731
    if isinstance(params, Int8Step):
        return replace(params, conv1=hit(params.conv1), conv2=hit(params.conv2), conv3=hit(params.conv3))
    return replace(params, convs=tuple(hit(c) for c in params.convs), head=hit(params.head))


def stored_kernel_bits(params) -> int:
    convs: list[Conv] = ([params.conv1, params.conv2, params.conv3] if isinstance(params, Int8Step)
                         else list(params.layers()))
    return sum(kernel_bits(c.weight) for c in convs)


def dead_mask(shape: tuple[int, ...], rate: float, rng: np.random.Generator) -> np.ndarray:
    """bool mask of the given shape: each cell dead with probability rate."""
    return rng.random(shape) < rate


def kill(params: Int8Step, state: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """Dead cells [B, H, W] read as empty: zero point in every channel, pixel included."""
    out = state.copy()
    out[dead, 1:] = params.state_zero
    out[dead, 0] = params.pixel_lut[0]
    return out


def dropped(fire: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """The fire mask with each firing cell missing its update with probability rate."""
    return fire & (rng.random(fire.shape) >= rate)
