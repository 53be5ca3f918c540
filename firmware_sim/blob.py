"""The int8 step's parameters in a packed blob (docs/packed_format.md, "Tensors: the int8 step").

``dumps`` writes an ``Int8Step`` (``firmware_sim.int8``) into the packed container; ``loads``
reads it back, bit for bit. Kernels are stored at their true bit width: a kernel whose every
value is +-k (a binary kernel, which the int8 export stores as +-127) is a BITS tensor plus the
magnitude k; any other kernel is INT8. Kernels are flattened to [O, K] with K in TFLite's
(dy, dx, channel) order, the reduction axis. A depthwise-structured 3x3 kernel (output o reads
input channel o // m only, m = O / C; every other weight 0) is stored as its non-zero taps only,
INT8 [O, kh*kw], with m in ``convN.q``: lossless, and the size the model really needs.
"""

from __future__ import annotations

import numpy as np

from . import packed as pk
from .int8 import Add, Conv, Int8Step, Mul, Threshold, check_bounds
from .xnor import binary_magnitude, kernel_matrix

FLAG_INT8_STEP = 1  # header flags bit 0: the tensors are an int8 step (this module's set)

_CONV_Q = ("input_zero", "output_zero", "act_min", "act_max")
_MUL = ("in1_zero", "in2_zero", "output_zero", "multiplier", "shift")
_ADD = ("in1_zero", "in2_zero", "output_zero", "in1_multiplier", "in1_shift", "in2_multiplier", "in2_shift",
        "out_multiplier", "out_shift")
_ACT = ("min_q", "on", "off")
_IO = ("state_zero", "alive_min", "fire_on", "fire_off", "alive_on", "alive_off")


def depthwise_taps(c: Conv) -> tuple[np.ndarray, int] | None:
    """(taps int8 [O, kh*kw], m) if output o of the kernel reads input channel o // m only, with
    m = O / C outputs per channel; None for any other kernel (including 1x1 kernels)."""
    o, kh, kw, cin = c.weight.shape
    if kh * kw == 1 or cin == 1 or o % cin:
        return None
    m = o // cin
    own = np.arange(o) // m
    w = c.weight.reshape(o, kh * kw, cin)
    others = np.ones((o, cin), bool)
    others[np.arange(o), own] = False
    if np.any(w.transpose(0, 2, 1)[others]):
        return None
    return w[np.arange(o), :, own].astype(np.int8), m


# Bounds on what a blob may declare (a 3x3 kernel, up to 1,024 channels or units), so that a hostile
# header cannot make the reader allocate without limit.
MAX_KERNEL = 7
MAX_UNITS = 1024


def dense_from_depthwise(taps: np.ndarray, m: int, kh: int, kw: int, cin: int) -> np.ndarray:
    """The dense int8 kernel [O, kh, kw, C] of a depthwise one stored as taps [O, kh*kw]."""
    o = taps.shape[0]
    w = np.zeros((o, kh * kw, cin), np.int8)
    w[np.arange(o), :, np.arange(o) // m] = taps
    return w.reshape(o, kh, kw, cin)


def dumps(p: Int8Step, variant: str, perception: int, hidden: int, n_classes: int, record: bytes = b"") -> bytes:
    """``record``: optional opaque bytes kept as the INT8 tensor ``record`` (the exporter's JSON)."""
    t, d = {}, {}

    def put(name, value, dtype):
        t[name], d[name] = np.asarray(value), dtype

    put("io", [getattr(p, f) for f in _IO], pk.INT32)
    put("pixel_lut", p.pixel_lut, pk.INT8)
    for i, c in enumerate((p.conv1, p.conv2, p.conv3), start=1):
        w = kernel_matrix(c)
        k = binary_magnitude(c)
        binary = k > 0
        dw = None if binary else depthwise_taps(c)
        if binary:
            put(f"conv{i}.w", np.sign(w), pk.BITS)
        elif dw is not None:
            put(f"conv{i}.w", dw[0], pk.INT8)
        else:
            put(f"conv{i}.w", w, pk.INT8)
        put(f"conv{i}.q", [getattr(c, f) for f in _CONV_Q] + [k, *c.weight.shape[1:], dw[1] if dw else 0],
            pk.INT32)
        put(f"conv{i}.bias", c.bias, pk.INT32)
        put(f"conv{i}.mult", c.multiplier, pk.INT32)
        put(f"conv{i}.shift", c.shift, pk.INT8)
    put("mul1", [getattr(p.mul1, f) for f in _MUL], pk.INT32)
    put("mul2", [getattr(p.mul2, f) for f in _MUL], pk.INT32)
    put("add", [getattr(p.add, f) for f in _ADD], pk.INT32)
    for name, act in (("act1", p.act1), ("act2", p.act2)):  # binary activations (ban, bnn) only
        if act is not None:
            put(name, [getattr(act, f) for f in _ACT], pk.INT32)
    if record:
        put("record", np.frombuffer(record, np.int8), pk.INT8)
    return pk.write(pk.Packed(variant, p.channels, perception, hidden, n_classes, tensors=t, dtypes=d,
                              flags=FLAG_INT8_STEP))


def loads(data: bytes) -> tuple[Int8Step, pk.Packed]:
    """The int8 step in a packed blob (raises PackedFormatError if it is not one)."""
    b = pk.read(data)
    if not b.flags & FLAG_INT8_STEP:
        raise pk.PackedFormatError("this packed file does not hold an int8 step (flags bit 0 is clear)")
    t = b.tensors
    try:
        io = dict(zip(_IO, (int(v) for v in t["io"])))
        convs = []
        for i in (1, 2, 3):
            q = [int(v) for v in t[f"conv{i}.q"]]
            if len(q) != 9:
                raise ValueError(f"conv{i}.q holds {len(q)} values, not 9")
            kh, kw, cin, m = q[5:9]
            if not (1 <= kh <= MAX_KERNEL and 1 <= kw <= MAX_KERNEL and 1 <= cin <= MAX_UNITS and 0 <= m <= MAX_UNITS):
                raise ValueError(f"conv{i}: kernel {kh}x{kw}, {cin} input channels, depth multiplier {m} out of range")
            w = t[f"conv{i}.w"].astype(np.int32)
            if b.dtypes[f"conv{i}.w"] == pk.BITS:
                w = w * q[4]
            if m:
                w = dense_from_depthwise(w.astype(np.int8), m, kh, kw, cin)
            convs.append(Conv(weight=w.reshape(-1, kh, kw, cin).astype(np.int8), bias=t[f"conv{i}.bias"].astype(np.int32),
                              multiplier=t[f"conv{i}.mult"].astype(np.int32), shift=t[f"conv{i}.shift"].astype(np.int32),
                              **dict(zip(_CONV_Q, q[:4]))))
        mul1, mul2 = (Mul(**dict(zip(_MUL, (int(v) for v in t[n])))) for n in ("mul1", "mul2"))
        add = Add(**dict(zip(_ADD, (int(v) for v in t["add"]))))
        acts = [Threshold(**dict(zip(_ACT, (int(v) for v in t[n])))) if n in t else None for n in ("act1", "act2")]
        step = Int8Step(pixel_lut=t["pixel_lut"].astype(np.int8), conv1=convs[0], conv2=convs[1], conv3=convs[2],
                        mul1=mul1, mul2=mul2, add=add, act1=acts[0], act2=acts[1], **io)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise pk.PackedFormatError(f"incomplete int8 step: {e}") from None
    if step.channels != b.channels:
        raise pk.PackedFormatError(f"the kernels take {step.channels} channels, the header says {b.channels}")
    try:
        check_bounds(step)
    except OverflowError as e:
        raise pk.PackedFormatError(str(e)) from None
    return step, b


def load(path) -> tuple[Int8Step, pk.Packed]:
    with open(path, "rb") as f:
        return loads(f.read())
