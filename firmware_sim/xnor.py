"""Binary layers as XNOR/popcount with integer thresholds: the packed path's arithmetic.

The int8 step (``firmware_sim.int8``) is the definition. A device that holds binary activations
as bits computes the same numbers with fewer operations, by three exact integer identities; this
module writes them once (the C firmware mirrors it) and ``firing_update`` here is tested equal to
``int8.firing_update``, bit for bit.

1. A binary activation after a conv is one comparison on the int32 accumulator. Requantization
   is monotonic non-decreasing in ``acc`` for a positive multiplier (SRDHM, RDBPOT and clamp all
   are), so::

       clamp(MBQM(acc, M[o], shift[o]) + Zout, act_min, act_max) >= min_q   <=>   acc >= T[o]

   ``T = accumulator_threshold(conv, act)``: the smallest reachable ``acc`` that turns the unit
   on (``bound + 1``: never on; ``-bound``: always on, with ``bound`` the layer's worst case).

2. A conv whose input is a binary activation (int8 values ``on`` / ``off``; bit ``x_j = 1`` for
   on) needs no multiplications::

       acc[o] = bias[o] + sum_j w[o,j] (v_j - Zin),        v_j = off + (on - off) x_j
              = c0[o] + (on - off) sum_{j: x_j = 1} w[o,j],  c0[o] = bias[o] + (off - Zin) sum_j w[o,j]

   ``c0 = binary_input_bias(conv, act)``. Summing over the inputs that are off instead (fewer
   terms when most are on)::

       acc[o] = c1[o] - (on - off) sum_{j: x_j = 0} w[o,j],  c1[o] = bias[o] + (on - Zin) sum_j w[o,j]

   ``c1 = binary_input_bias(conv, act, all_on=True)``.

3. With a binary kernel too (``w[o,j] = a s[o,j]``, ``s = +-1``, packed bit ``b[o,j] = 1`` for -1,
   as in the packed blob)::

       sum_{j: x_j = 1} w[o,j] = a (popcount(x) - 2 popcount(x AND b[o]))

   The XNOR form (``popcount(XNOR(x, b))``) is the same count; AND keeps the tail bits of the last
   word out without a mask, since padded x bits are 0.

A binary kernel on an int8 input (bwn's hidden layer) is a sign-selected sum, as the blob's
BITS layout implies: ``sum_j a s[o,j] (x_j - Zin) = a (sum_j (x_j - Zin) - 2 sum_{j: b[o,j] = 1} (x_j - Zin))``.

Every value is the int8 path's own ``acc``, so the overflow bounds of ``int8.accumulator_bounds``
hold unchanged.
"""

from __future__ import annotations

import numpy as np

from . import int8
from .fixedpoint import multiply_by_quantized_multiplier as mbqm
from .int8 import Conv, Int8Step, Threshold, _mul, accumulator_bounds
from .packed import pack_bits

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.int32)


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint32 word, summed over the last axis."""
    w = np.ascontiguousarray(words, dtype=np.uint32)
    return _POPCOUNT8[w.view(np.uint8)].reshape(w.shape[:-1] + (-1,)).sum(-1)


def kernel_matrix(c: Conv) -> np.ndarray:
    """The kernel as int32 [O, K], K in (dy, dx, channel) order."""
    return c.weight.reshape(c.weight.shape[0], -1).astype(np.int32)


def binary_magnitude(c: Conv) -> int:
    """``a`` if every weight is +-a (a binary kernel), else 0."""
    w = kernel_matrix(c)
    a = int(np.abs(w).max())
    return a if a > 0 and bool(np.all(np.abs(w) == a)) else 0


def accumulator_threshold(c: Conv, act: Threshold, bound: int) -> np.ndarray:
    """int64 [O]: ``T[o]``, the smallest acc in [-bound, bound] whose requantized value is
    ``>= act.min_q`` (``bound + 1`` if none): identity 1 of the module docstring."""
    if np.any(c.multiplier <= 0):
        raise ValueError("accumulator thresholds need positive multipliers (monotonic requantization)")

    def on(acc: np.ndarray) -> np.ndarray:
        q = np.clip(mbqm(acc.astype(np.int32), c.multiplier, c.shift) + c.output_zero, c.act_min, c.act_max)
        return q >= act.min_q

    o = c.weight.shape[0]
    lo = np.full(o, -bound, np.int64)  # invariant: answer in [lo, hi]
    hi = np.full(o, bound + 1, np.int64)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        is_on = on(np.minimum(mid, bound))
        hi = np.where(is_on, mid, hi)
        lo = np.where(is_on, lo, mid + 1)
    return lo


def binary_input_bias(c: Conv, act: Threshold, all_on: bool = False) -> np.ndarray:
    """int64 [O]: the accumulator when every binary input is off, ``c0[o] = bias[o] + (off - Zin)
    sum_j w[o,j]`` (identity 2), or, with ``all_on``, when every input is on (``c1``)."""
    level = act.on if all_on else act.off
    return c.bias.astype(np.int64) + (level - c.input_zero) * kernel_matrix(c).sum(1, dtype=np.int64)


def thresholds(params: Int8Step) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``T`` for the activations after conv1 and conv2 (None where there is none)."""
    bounds = accumulator_bounds(params)
    return tuple(None if a is None else accumulator_threshold(c, a, bounds[n])
                 for n, c, a in (("conv1", params.conv1, params.act1), ("conv2", params.conv2, params.act2)))


def _binary_input_acc(bits: np.ndarray, k: int, c: Conv, act: Threshold) -> np.ndarray:
    """acc [N, O] of a conv from its binary input's bits (uint32 [N, words]): identities 2 and 3."""
    d = np.int64(act.on - act.off)
    c0 = binary_input_bias(c, act)
    a = binary_magnitude(c)
    if a:
        b = pack_bits(np.sign(kernel_matrix(c)))  # [O, words]
        s = popcount(bits)[:, None] - 2 * popcount(bits[:, None, :] & b[None, :, :])
        return c0 + d * a * s
    x = np.zeros((bits.shape[0], bits.shape[1] * 32), np.int64)  # the bits back as 0/1 columns
    for j in range(32):
        x[:, j::32] = (bits >> np.uint32(j)) & np.uint32(1)
    return c0 + d * (x[:, :k] @ kernel_matrix(c).T.astype(np.int64))


def _bits(on: np.ndarray) -> np.ndarray:
    """bool [N, K] -> uint32 [N, ceil(K/32)], bit j of word j // 32 = unit j is on (tail 0)."""
    n, k = on.shape
    padded = np.zeros((n, -(-k // 32) * 32), np.uint32)
    padded[:, :k] = on
    weights = (np.uint32(1) << np.arange(32, dtype=np.uint32))
    return (padded.reshape(n, -1, 32) * weights).sum(-1, dtype=np.uint64).astype(np.uint32)


def _layer(c: Conv, x: np.ndarray, act_in: Threshold | None, act_out: Threshold | None, t: np.ndarray | None):
    """One conv as a device holding the packed blob computes it. x: int64 values [N, K] of an
    int8 input, or its bits uint32 [N, words] after a binary activation (``act_in``). Returns the
    output's bits (``act_out``: acc >= t) or its requantized int8 values."""
    k = kernel_matrix(c).shape[1]
    if act_in is not None:
        acc = _binary_input_acc(x, k, c, act_in)
    else:
        xz = x - c.input_zero
        a = binary_magnitude(c)
        if a:  # binary kernel, int8 input: a (sum_j xz_j - 2 sum_{j: bit b[o,j] = 1} xz_j), no multiplications
            minus = (kernel_matrix(c) < 0).astype(np.int64)
            acc = c.bias + a * (xz.sum(1, keepdims=True) - 2 * (xz @ minus.T))
        else:
            acc = c.bias + xz @ kernel_matrix(c).T.astype(np.int64)
    if act_out is not None:
        return _bits(acc >= t)
    return np.clip(mbqm(acc.astype(np.int32), c.multiplier, c.shift) + c.output_zero, c.act_min, c.act_max).astype(np.int64)


def firing_update(params: Int8Step, patches: np.ndarray, trace: dict | None = None) -> np.ndarray:
    """``int8.firing_update`` computed as a device holding the packed blob does: binary activations
    as bits (thresholds on accumulators), layers after them by identity 2, XNOR layers by popcount,
    binary kernels on int8 inputs by sign-selected sums. Equal to ``int8.firing_update`` bit for
    bit, for every variant (tests); for float it is the int8 step itself. ``trace`` is accepted
    for ``int8.step``'s interface and left empty (the bits are not the int8 tensors)."""
    t1, t2 = thresholds(params)
    n = patches.shape[0]
    x = patches.reshape(n, -1).astype(np.int64)
    h = _layer(params.conv1, x, None, params.act1, t1)
    h = _layer(params.conv2, h, params.act1, params.act2, t2)
    ds = _layer(params.conv3, h, params.act2, None, None)
    m1 = _mul(ds, np.int32(params.fire_on), params.mul1)
    return _mul(m1, np.int32(params.alive_on), params.mul2)


def step(params: Int8Step, state: np.ndarray, fire: np.ndarray) -> np.ndarray:
    """``int8.step`` with the packed path's ``firing_update``: the blob's device arithmetic."""
    return int8.step(params, state, fire, update=firing_update)


__all__ = ["accumulator_threshold", "binary_input_bias", "binary_magnitude", "firing_update", "popcount",
           "thresholds", "kernel_matrix", "step"]
