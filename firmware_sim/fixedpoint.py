"""Fixed-point requantization, exactly as TFLite's reference integer kernels compute it.

Every int8 layer accumulates in int32, then rescales by a real multiplier M (> 0) expressed as
a Q31 integer and a power-of-two shift (``quantize_multiplier``)::

    M = m * 2**(shift - 31),  m in [2**30, 2**31)   (m = 0, shift = 0 for M = 0)

and applies it with two roundings (TFLite's default, "double rounding"; the
``TFLITE_SINGLE_ROUNDING`` build variant is not used by the stock runtimes)::

    y = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x << left, m), right)
        left = max(shift, 0), right = max(-shift, 0)

    saturating_rounding_doubling_high_mul(a, b):       # int32 x int32 -> int32
        if a == b == INT32_MIN: return INT32_MAX
        ab    = int64(a) * int64(b)
        nudge = 2**30 if ab >= 0 else 1 - 2**30
        return int32(trunc((ab + nudge) / 2**31))      # C division: rounds toward zero

    rounding_divide_by_pot(x, e):                      # round half away from zero
        mask      = 2**e - 1
        remainder = x & mask
        threshold = (mask >> 1) + (1 if x < 0 else 0)
        return (x >> e) + (1 if remainder > threshold else 0)   # >> is arithmetic

All functions take numpy integer arrays (or scalars) and return int64 arrays holding int32
values; nothing here touches a float except ``quantize_multiplier``, which runs once, offline,
when parameters are derived (it is not on the data path).
"""

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    # nudge = 2**30 if ab >= 0 else 1 - 2**30, then C's truncating division by 2**31: a negative
    # s is shifted after adding 2**31 - 1 (the same as -((-s) >> 31)), written without branches
    s = ab + np.int64(1 << 30) - (ab < 0) * np.int64((1 << 31) - 1)
    s += (s < 0) * np.int64((1 << 31) - 1)
    q = s >> 31
    if np.any(a == INT32_MIN) and np.any(b == INT32_MIN):
        q = np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), q)
    return q


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    if np.any((e < 0) | (e > 31)):
        raise ValueError("exponent must be in [0, 31]")
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> e) + (remainder > threshold).astype(np.int64)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier for int32 x (per-channel arrays broadcast)."""
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = x * (np.int64(1) << left)
    if np.any((shifted < INT32_MIN) | (shifted > INT32_MAX)):
        raise OverflowError("x << left_shift does not fit int32")
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real M -> (Q31 multiplier m, shift). Offline only."""
    if real_multiplier < 0:
        raise ValueError("multiplier must be >= 0")
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)  # M = q * 2**shift, q in [0.5, 1)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q_fixed), int(shift)


def _round_half_away(v: float) -> int:
    """std::round: halves away from zero."""
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))
