"""firmware_sim.fixedpoint against hand-computed cases and an independent big-integer reading."""

import math
import random

import numpy as np
import pytest

from firmware_sim.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)


def ref_srdhm(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b  # Python integers: exact
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _trunc_div(ab + nudge, 1 << 31)


def _trunc_div(n: int, d: int) -> int:
    q = abs(n) // d
    return q if n >= 0 else -q


def ref_rdbp(x: int, e: int) -> int:
    """Round-half-away-from-zero division by 2**e, with exact rationals."""
    from fractions import Fraction

    v = Fraction(x, 1 << e)
    f = math.floor(abs(v) + Fraction(1, 2))
    return f if v >= 0 else -f


def test_hand_computed_cases():
    assert rounding_divide_by_pot(5, 1) == 3  # 2.5 -> 3
    assert rounding_divide_by_pot(-5, 1) == -3  # -2.5 -> -3 (away from zero)
    assert rounding_divide_by_pot(-3, 2) == -1  # -0.75 -> -1
    assert rounding_divide_by_pot(7, 0) == 7
    assert saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN) == INT32_MAX
    assert saturating_rounding_doubling_high_mul(1 << 30, 1 << 30) == 1 << 29  # 0.5 * 0.5 = 0.25
    # M = 0.5: m = 2**30, shift = 0; 3 * 0.5 = 1.5 -> 2 (rounded once, in the high mul)
    m, s = quantize_multiplier(0.5)
    assert (m, s) == (1 << 30, 0)
    assert multiply_by_quantized_multiplier(3, m, s) == 2
    assert multiply_by_quantized_multiplier(-3, m, s) == -1  # high-mul nudge rounds -1.5 to -1 (not away)


def test_double_rounding_is_reproduced():
    # M = 0.25 -> m = 2**30, shift = -1: the high mul computes x/2 rounded (half up, toward zero
    # for negative halves), then the shift divides by 2 rounding half away from zero.
    m, s = quantize_multiplier(0.25)
    assert (m, s) == (1 << 30, -1)
    got = multiply_by_quantized_multiplier(np.array([-6, -5, -2, 2, 5, 6]), m, s).tolist()
    # 5 * 0.25 = 1.25 becomes 2: 2.5 -> 3 in the high mul, then 1.5 -> 2. Single rounding would give 1.
    assert got == [-2, -1, -1, 1, 2, 2]


@pytest.mark.parametrize("seed", range(3))
def test_random_values_match_the_big_integer_reading(seed):
    rng = random.Random(seed)
    a = [rng.randint(INT32_MIN, INT32_MAX) for _ in range(500)]
    b = [rng.randint(INT32_MIN, INT32_MAX) for _ in range(500)]
    got = saturating_rounding_doubling_high_mul(np.array(a), np.array(b)).tolist()
    assert got == [ref_srdhm(x, y) for x, y in zip(a, b)]
    e = [rng.randint(0, 31) for _ in range(500)]
    assert rounding_divide_by_pot(np.array(a), np.array(e)).tolist() == [ref_rdbp(x, k) for x, k in zip(a, e)]


def test_quantize_multiplier_represents_the_real_value():
    for real in (1e-6, 0.0123, 0.3333, 0.5, 0.999999, 1.0, 3.7, 1234.5):
        m, s = quantize_multiplier(real)
        assert (1 << 30) <= m < (1 << 31)
        assert m * 2.0 ** (s - 31) == pytest.approx(real, rel=1e-9)
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1e-12) == (0, 0)  # below 2**-31 * 2**-... : TFLite flushes to zero


def test_left_shift_overflow_is_refused():
    with pytest.raises(OverflowError):
        multiply_by_quantized_multiplier(1 << 30, 1 << 30, 2)
