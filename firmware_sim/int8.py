"""The int8 CA step: TFLite's reference integer kernels, written once, in numpy integers.

This module *is* the integer semantics of the ``tflite-int8`` step (docs/integer_semantics.md
explains each line). A state is int8 NHWC ``[B, H, W, C]`` with one scale ``S`` and zero point
``Zs`` (real value ``S * (q - Zs)``); channel 0 is the grey pixel. One step::

    alive  = pixel >= alive_min                          # a 1x1 step conv on the pixel, see derive()
    p      = conv(state; conv1)                          # 3x3, SAME (out-of-grid = zero point)
    h      = conv(p; conv2)                              # 1x1
    ds     = conv(h; conv3)                              # 1x1
    m      = mul(ds, fire ? fire_on : fire_off; mul1)    # the fire mask, an int8 input
    m      = mul(m, alive ? alive_on : alive_off; mul2)  # the alive mask as int8 (127 / -128)
    state' = concat(pixel, add(state[..., 1:], m; add))

Each op, exactly as TFLite's reference kernels (``reference_integer_ops``) compute it; all
values int32 unless noted, ``mbqm`` = ``fixedpoint.multiply_by_quantized_multiplier``::

    conv:  acc[o] = bias[o] + sum_{dy,dx,i in grid} w[o,dy,dx,i] * (x[.., i] - Zin)
           y[o]   = clamp(mbqm(acc[o], M[o], shift[o]) + Zout, act_min, act_max)
    mul:   y      = clamp(Zout + mbqm((a - Za) * (b - Zb), M, shift), -128, 127)
    add:   a'     = mbqm((a - Za) << 20, Ma, sa);  b' = mbqm((b - Zb) << 20, Mb, sb)
           y      = clamp(mbqm(a' + b', Mo, so) + Zout, -128, 127)

The graph is integer-only: every tensor is int8 (biases int32). A 0/1 step (the alive mask;
the binary activations of ban and bnn) is a conv whose requantization saturates: output zero
point -128, multiplier M >= 255 (``is_step``), so its int8 output is -128 (real 0) for every
``acc <= 0`` and 127 (real 1) for every ``acc >= 1``: the step [acc >= 1] on the exact int32
accumulator (``export.integer_only`` writes it; sign's ``>=`` is a +1 in the bias, and the
exporter folds sign into the 0/1 step: W . sign(x) + b = 2W . [x >= 0] + b - sum W,
docs/export.md). ``act1`` / ``act2`` mark such convs (their two values), for the packed path.

A cell that does not fire (or is dead) gets ``(fire_q - Zfire) = 0`` (``(alive_q - Zalive) =
0``) in the first (second) MUL, so its ``m`` is the MUL's zero point whatever ``ds`` was: the
convolutions are computed only for cells that are alive and fire, which changes no bit.

The parameters (``Int8Step``) are integers. ``derive`` computes them from an int8 model's
scales exactly as TFLite's ``Prepare`` functions do (double-precision arithmetic on the float32
scales, offline, once per model); nothing on the data path is a float.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixedpoint import multiply_by_quantized_multiplier as mbqm
from .fixedpoint import quantize_multiplier

ADD_LEFT_SHIFT = 20  # TFLite's left_shift for int8 ADD
COMPARE_LEFT_SHIFT = 8  # TFLite's left_shift for quantized comparisons


@dataclass(frozen=True)
class Conv:
    """One int8 convolution: kernel int8 [O, kh, kw, I] (TFLite's OHWI), int32 bias and requant."""

    weight: np.ndarray  # int8 [O, kh, kw, I]
    bias: np.ndarray  # int32 [O]
    multiplier: np.ndarray  # int32 [O], Q31
    shift: np.ndarray  # int32 [O]
    input_zero: int
    output_zero: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class Threshold:
    """A binary activation: a step conv's output is ``on`` where ``q >= min_q``, else ``off`` (int8
    values; ``derive`` sets min_q = off + 1, on = 127, off = -128). The packed path (``xnor``)
    turns it into a threshold on the int32 accumulator."""

    min_q: int  # 128: never on
    on: int
    off: int


@dataclass(frozen=True)
class Mul:
    in1_zero: int
    in2_zero: int
    output_zero: int
    multiplier: int
    shift: int


@dataclass(frozen=True)
class Add:
    in1_zero: int
    in2_zero: int
    output_zero: int
    in1_multiplier: int
    in1_shift: int
    in2_multiplier: int
    in2_shift: int
    out_multiplier: int
    out_shift: int


@dataclass(frozen=True)
class Int8Step:
    """Every integer parameter of the int8 step (see the module docstring)."""

    state_zero: int
    pixel_lut: np.ndarray  # int8 [256]: the state's pixel for a grey level 0..255 (host encoding)
    alive_min: int  # a cell is alive when its int8 pixel >= alive_min (128: never)
    fire_on: int  # the int8 fire input for a firing cell ...
    fire_off: int  # ... and for a resting one (= mul1.in2_zero)
    alive_on: int
    alive_off: int  # (= mul2.in2_zero)
    conv1: Conv
    conv2: Conv
    conv3: Conv
    mul1: Mul
    mul2: Mul
    add: Add
    act1: Threshold | None = None  # binary activations (ban, bnn): after conv1 and conv2
    act2: Threshold | None = None

    @property
    def channels(self) -> int:
        return int(self.conv1.weight.shape[3])


# ---------------------------------------------------------------------------------- the step


def step(params: Int8Step, state: np.ndarray, fire: np.ndarray, trace: dict | None = None, update=None) -> np.ndarray:
    """One step: int8 state [B, H, W, C], bool fire [B, H, W] -> int8 next state.

    ``trace``: if a dict is given, the intermediate int8 tensors of the computed cells are put
    in it (``alive``, ``cells`` (b, y, x index arrays), ``conv1``, ``conv2``, ``conv3``,
    ``mul1``, ``mul2`` and ``add``), for locating where two implementations diverge.
    """
    s = np.asarray(state)
    if s.dtype != np.int8 or s.ndim != 4 or s.shape[3] != params.channels:
        raise ValueError(f"state must be int8 [B, H, W, {params.channels}], not {s.dtype} {list(s.shape)}")
    fire = np.asarray(fire, dtype=bool)
    if fire.shape != s.shape[:3]:
        raise ValueError(f"fire must be bool {list(s.shape[:3])}, not {list(fire.shape)}")
    x = s.astype(np.int32)
    alive = x[..., 0] >= params.alive_min
    fire_q = np.where(fire, params.fire_on, params.fire_off).astype(np.int32)
    alive_q = np.where(alive, params.alive_on, params.alive_off).astype(np.int32)
    # m for resting or dead cells: both MULs see a zero operand -> their output zero points.
    m = np.empty(s.shape[:3] + (s.shape[3] - 1,), np.int32)
    m[...] = _mul(np.int32(params.mul1.output_zero), alive_q[..., None], params.mul2)
    b, yy, xx = np.nonzero(fire & alive)
    if len(b):
        m[b, yy, xx] = (update or firing_update)(params, _patches(x, b, yy, xx, params.conv1.input_zero), trace)
        if trace is not None:
            trace["cells"] = (b, yy, xx)
    out = s.copy()
    if resting_is_identity(params):  # the ADD keeps every resting cell as it is: add the firing ones only
        if len(b):
            out[b, yy, xx, 1:] = _add(x[b, yy, xx, 1:], m[b, yy, xx], params.add)
    else:
        out[..., 1:] = _add(x[..., 1:], m, params.add)
    if trace is not None:
        trace.update(alive=alive, mul2=m, add=out[..., 1:])
    return out


def resting_is_identity(params: Int8Step) -> bool:
    """Whether the ADD with a resting cell's update (the MUL's zero point) returns every int8
    value unchanged: checked over all 256, so skipping resting cells changes no bit."""
    q = np.arange(-128, 128, dtype=np.int32)
    return bool(np.array_equal(_add(q, np.full_like(q, params.mul2.output_zero), params.add), q))


def firing_update(params: Int8Step, patches: np.ndarray, trace: dict | None = None) -> np.ndarray:
    """The MUL chain's output ``m`` [N, C-1] for N alive, firing cells, from their 3x3
    neighbourhoods [N, 3, 3, C] (int32 values of int8 states)."""
    p = _conv(patches, params.conv1)
    h = _conv(p, params.conv2)  # a step conv's output already is the binary activation (is_step)
    ds = _conv(h, params.conv3)
    m1 = _mul(ds, np.int32(params.fire_on), params.mul1)
    m = _mul(m1, np.int32(params.alive_on), params.mul2)
    if trace is not None:
        trace.update(conv1=p, conv2=h, conv3=ds, mul1=m1)
    return m


def add_update(params: Int8Step, mutable: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The ADD: next mutable channels (int8) from the current ones and ``m``."""
    return _add(mutable, m, params.add)


def _patches(x: np.ndarray, b, yy, xx, pad_value: int) -> np.ndarray:
    """3x3 neighbourhoods [N, 3, 3, C] of the given cells; out-of-grid cells read ``pad_value``
    (the input zero point: TFLite skips them, which is the same as adding w * (Zin - Zin) = 0)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=pad_value)
    dy, dx = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    return padded[b[:, None, None], yy[:, None, None] + dy, xx[:, None, None] + dx]


def _conv(inputs: np.ndarray, c: Conv) -> np.ndarray:
    """inputs [N, kh, kw, I] (or [N, I] for 1x1) int32 -> int32 [N, O] (int8 range)."""
    n = inputs.shape[0]
    w = c.weight.reshape(c.weight.shape[0], -1)  # [O, kh*kw*I]
    acc = int_matmul(inputs.reshape(n, -1) - np.int32(c.input_zero), w.T) + c.bias.astype(np.int64)
    y = mbqm(acc, c.multiplier, c.shift) + c.output_zero
    return np.clip(y, c.act_min, c.act_max).astype(np.int32)


def int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The integer matrix product ``a @ b`` (int64 result), computed exactly in float64.

    numpy multiplies integer matrices without BLAS (many times slower). float64 holds every
    integer below 2**53 exactly, so when ``max|a| * max|b| * K`` bounds every product and
    partial sum below 2**53 (for these layers it is below 2**31: ``check_bounds``), the BLAS
    result, in any summation order, is the integer result; beyond that, int64 numpy does it."""
    if not (a.size and b.size):
        return np.zeros((a.shape[0], b.shape[1]), np.int64)
    span = lambda m: max(int(m.max()), -int(m.min()))  # noqa: E731  (max |m|, also for int8 -128)
    if float(span(a)) * float(span(b)) * a.shape[-1] < 2.0**53:
        return (np.asarray(a, np.float64) @ np.asarray(b, np.float64)).astype(np.int64)
    return np.asarray(a, np.int64) @ np.asarray(b, np.int64)


def _mul(a, b, p: Mul) -> np.ndarray:
    prod = (np.asarray(a, np.int32) - np.int32(p.in1_zero)) * (np.asarray(b, np.int32) - np.int32(p.in2_zero))
    return np.clip(p.output_zero + mbqm(prod, p.multiplier, p.shift), -128, 127).astype(np.int32)


def _add(a, b, p: Add) -> np.ndarray:
    a1 = mbqm((np.asarray(a, np.int32) - np.int32(p.in1_zero)) * np.int32(1 << ADD_LEFT_SHIFT), p.in1_multiplier, p.in1_shift)
    b1 = mbqm((np.asarray(b, np.int32) - np.int32(p.in2_zero)) * np.int32(1 << ADD_LEFT_SHIFT), p.in2_multiplier, p.in2_shift)
    y = mbqm(a1 + b1, p.out_multiplier, p.out_shift) + p.output_zero
    return np.clip(y, -128, 127).astype(np.int8)


def accumulator_bounds(params: Int8Step) -> dict[str, int]:
    """Worst-case |int32 intermediate| of each layer, over every int8 input, from the weights.

    conv: |bias[o]| + sum |w[o]| * max|q - Zin| (q in -128..127), maximised over o;
    mul: max|a - Za| * max|b - Zb|; add: the shifted operands, max|q - Z| * 2**20.
    """
    span = lambda z: max(abs(-128 - z), abs(127 - z))  # noqa: E731
    out = {}
    for name, c in (("conv1", params.conv1), ("conv2", params.conv2), ("conv3", params.conv3)):
        w = np.abs(c.weight.reshape(c.weight.shape[0], -1).astype(np.int64)).sum(1)
        out[name] = int((np.abs(c.bias.astype(np.int64)) + w * span(c.input_zero)).max())
    for name, m in (("mul1", params.mul1), ("mul2", params.mul2)):
        out[name] = span(m.in1_zero) * span(m.in2_zero)
    out["add"] = max(span(params.add.in1_zero), span(params.add.in2_zero)) << ADD_LEFT_SHIFT
    return out


def check_bounds(params: Int8Step) -> None:
    """Raise OverflowError if any layer's worst case does not fit int32 (the declared width),
    also after a conv's requantization left shift (``acc << max(shift, 0)``, as TFLite computes it)."""
    bounds = accumulator_bounds(params)
    for name, bound in bounds.items():
        if bound > 2**31 - 1:
            raise OverflowError(f"{name}: worst-case accumulator {bound} does not fit int32")
    for name, c in (("conv1", params.conv1), ("conv2", params.conv2), ("conv3", params.conv3)):
        left = max(0, int(np.max(c.shift)))
        if bounds[name] << left > 2**31 - 1:
            raise OverflowError(f"{name}: worst-case accumulator {bounds[name]} << {left} does not fit int32")


def seed(params: Int8Step, grey: np.ndarray) -> np.ndarray:
    """Initial int8 states [B, H, W, C] for uint8 grey images [B, H, W]: pixel, zeros elsewhere."""
    grey = np.asarray(grey)
    if grey.dtype != np.uint8:
        raise ValueError("grey images must be uint8")
    s = np.full(grey.shape + (params.channels,), params.state_zero, np.int8)
    s[..., 0] = params.pixel_lut[grey]
    return s


def mutate(params: Int8Step, state: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """The protocol's mutation: new pixels; mutable channels kept where the new digit is alive,
    zero (the zero point) elsewhere."""
    s = state.copy()
    s[..., 0] = params.pixel_lut[np.asarray(grey, np.uint8)]
    dead = s[..., 0] < params.alive_min
    s[dead, 1:] = params.state_zero
    return s


def labels(params: Int8Step, state: np.ndarray, n_classes: int) -> np.ndarray:
    """Each cell's class: argmax of the last ``n_classes`` channels (ties: the lowest index).

    int8 comparison is enough: the class channels share the state's scale and zero point."""
    return np.argmax(state[..., -n_classes:], axis=-1)


# ---------------------------------------------------------------------------- offline derivation


def derive(q: dict) -> Int8Step:
    """Integer parameters from an int8 model's quantization, as TFLite's Prepare computes them.

    ``q`` (plain numbers; scales as float32 values)::

        state: (scale, zero)   the state tensor (input and output)
        alive: {weight int8 [1, 1, 1, 1], weight_scales [1], bias int32 [1], output (scale, zero)}:
                               the 1x1 CONV_2D pixel -> alive mask (a saturating step)
        fire:  (scale, zero)   the fire input
        convs: 3 x {weight int8 OHWI, weight_scales [O], bias int32 [O], output (scale, zero), relu}
        muls:  2 x (scale, zero)  outputs of MUL(ds, fire) and MUL(., alive)
        add:   (scale, zero)   output of ADD(state[1:], m)

    A conv whose requantization saturates (``is_step``: output zero point -128 and every
    channel's ``MBQM(1) >= 255``) writes a binary activation: -128 for acc <= 0, 127 for
    acc >= 1; ``act1`` / ``act2`` then record its two values (ban, bnn).

    Offline only (runs once per model): real multipliers are computed in double precision from
    the float32 scales, in TFLite's order of operations, then turned into Q31 integers.
    """
    f32 = lambda v: float(np.float32(v))  # noqa: E731
    s_state, z_state = f32(q["state"][0]), int(q["state"][1])
    convs, in_scale, in_zero = [], s_state, z_state
    acts: list[Threshold | None] = [None, None]
    for i, c in enumerate(q["convs"]):
        conv = _conv_params(c, in_scale, in_zero, relu=bool(c["relu"]))
        if i < 2 and is_step(conv):
            acts[i] = Threshold(min_q=conv.output_zero + 1, on=127, off=conv.output_zero)
        convs.append(conv)
        in_scale, in_zero = f32(c["output"][0]), int(c["output"][1])

    def mul(s1, z1, s2, z2, out) -> Mul:
        m, sh = quantize_multiplier(s1 * s2 / f32(out[0]))
        return Mul(in1_zero=z1, in2_zero=z2, output_zero=int(out[1]), multiplier=m, shift=sh)

    s_fire, z_fire = f32(q["fire"][0]), int(q["fire"][1])
    alive_conv = _conv_params(q["alive"], s_state, z_state, relu=False)
    s_alive, z_alive = f32(q["alive"]["output"][0]), int(q["alive"]["output"][1])
    (s_m1, z_m1), (s_m2, z_m2) = ((f32(s), int(z)) for s, z in q["muls"])
    mul1 = mul(in_scale, in_zero, s_fire, z_fire, (s_m1, z_m1))
    mul2 = mul(s_m1, z_m1, s_alive, z_alive, (s_m2, z_m2))

    s_add, z_add = f32(q["add"][0]), int(q["add"][1])
    twice_max = 2.0 * max(s_state, s_m2)
    m_a, sh_a = quantize_multiplier(s_state / twice_max)
    m_b, sh_b = quantize_multiplier(s_m2 / twice_max)
    m_o, sh_o = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * s_add))
    add = Add(in1_zero=z_state, in2_zero=z_m2, output_zero=z_add, in1_multiplier=m_a, in1_shift=sh_a,
              in2_multiplier=m_b, in2_shift=sh_b, out_multiplier=m_o, out_shift=sh_o)

    alive_min, alive_on, alive_off = _alive(alive_conv)
    params = Int8Step(state_zero=z_state, pixel_lut=_pixel_lut(s_state, z_state), alive_min=alive_min,
                      fire_on=_quantize_one(s_fire, z_fire), fire_off=z_fire, alive_on=alive_on, alive_off=alive_off,
                      conv1=convs[0], conv2=convs[1], conv3=convs[2], mul1=mul1, mul2=mul2, add=add,
                      act1=acts[0], act2=acts[1])
    check_bounds(params)
    return params


def _conv_params(c: dict, in_scale: float, in_zero: int, relu: bool) -> Conv:
    """A conv's integers: multipliers S_in * S_w[o] / S_out in double from float32 scales."""
    ws = np.asarray(c["weight_scales"], np.float32)
    s_out, z_out = float(np.float32(c["output"][0])), int(c["output"][1])
    mult, shift = zip(*(quantize_multiplier(in_scale * float(s) / s_out) for s in ws))
    return Conv(weight=np.asarray(c["weight"], np.int8), bias=np.asarray(c["bias"], np.int32),
                multiplier=np.array(mult, np.int32), shift=np.array(shift, np.int32), input_zero=in_zero,
                output_zero=z_out, act_min=max(-128, z_out) if relu else -128, act_max=127)


def is_step(c: Conv) -> bool:
    """Whether the conv's requantization is the step [acc >= 1]: -128 for every acc <= 0 and 127
    for every acc >= 1 (output zero point -128, every channel's MBQM(1) >= 255; MBQM is
    monotonic, so the two ends decide)."""
    if c.output_zero != -128 or np.any(c.multiplier <= 0):
        return False
    one = mbqm(np.ones(len(c.multiplier), np.int64), c.multiplier, c.shift)
    zero = mbqm(np.zeros(len(c.multiplier), np.int64), c.multiplier, c.shift)
    return bool(np.all(one >= 255) and np.all(zero == 0))


def _alive(c: Conv) -> tuple[int, int, int]:
    """(alive_min, on, off) of the alive conv: the smallest int8 pixel it turns on (128: none) and
    its two output values, found by evaluating all 256 pixels (it must be a monotonic step)."""
    qs = np.arange(-128, 128, dtype=np.int32)[:, None]
    y = _conv(qs, c)[:, 0]
    on, off = 127, c.output_zero
    if not is_step(c) or np.any((y != on) & (y != off)):
        raise ValueError("the alive conv is not a saturating step")
    hits = np.nonzero(y == on)[0]
    if len(hits) and not np.all(y[hits[0]:] == on):
        raise ValueError("the alive conv is not monotonic")
    return (int(qs[hits[0], 0]) if len(hits) else 128), on, off


def compare_min(s_x: float, z_x: int, value: int, s_const: float, z_const: int, strict: bool) -> int:
    """The smallest int8 q for which TFLite's GREATER (strict) or GREATER_EQUAL(x, constant) is
    true (128: none). Offline: the exporter turns the converter's comparison into a step conv
    with this threshold (``export.integer_only``).

    The comparison rescales both sides to a common fixed point (reference ComparisonWithScaling)::

        side(q, s, z) = mbqm((q - z) << 8, M(s), shift(s))     M, shift = QuantizeMultiplier(s)
        true          = side(q, S_x, Z_x) > (>=) side(constant, S_c, Z_c)

    which is monotonic in q, so it is one threshold; it is found by evaluating all 256.
    """
    qs = np.arange(-128, 128, dtype=np.int32)
    m_p, sh_p = quantize_multiplier(s_x)
    m_c, sh_c = quantize_multiplier(s_const)
    left = mbqm((qs - z_x) * (1 << COMPARE_LEFT_SHIFT), m_p, sh_p)
    right = mbqm(np.int32((value - z_const) * (1 << COMPARE_LEFT_SHIFT)), m_c, sh_c)
    true = left > right if strict else left >= right
    hits = np.nonzero(true)[0]
    if len(hits) and not np.all(true[hits[0]:]):
        raise ValueError("comparison is not monotonic")
    return int(qs[hits[0]]) if len(hits) else 128


def _pixel_lut(scale: float, zero: int) -> np.ndarray:
    """int8 pixel per grey level g: clamp(round(float32(g / 255) / scale) + zero), in float32 as the
    host loop (``export.runtimes``) quantizes its float input. Offline: a 256-entry table."""
    x = np.arange(256, dtype=np.float32) / np.float32(255.0)
    return np.clip(np.round(x / np.float32(scale)) + zero, -128, 127).astype(np.int8)


def _quantize_one(scale: float, zero: int) -> int:
    """QUANTIZE of the float 1.0 (a true fire / alive flag): clamp(round(1 / scale) + zero)."""
    return int(np.clip(np.round(np.float32(1.0) / np.float32(scale)) + zero, -128, 127))
