"""The ``c`` export: a dependency-free C99 implementation of the model's int8 step.

Output directory::

    nca_model.h    the packed parameters as const arrays (flash): int8 kernels (a depthwise 3x3
                   kernel as its taps; in pairs of outputs when its output is binary), binary kernels
                   as uint64 words (bit j of word j/64, 1 = -1; between two binary activations by
                   input, bit-sliced: sliced_layer), an int8 kernel after a binary activation by
                   input (16-bit lanes), per-channel int32 constants; for binary activations,
                   accumulator thresholds and folded biases (firmware_sim/xnor.py) in place of
                   requantization
    nca_config.h   the layer kernels the model uses (nca_step.c compiles only those)
    nca_step.h/.c  the step (docs/integer_semantics.md): no heap, no floating point, only
                   <stdint.h>/<string.h>; in place, with three row buffers
    main_host.c    a host driver: reads test vectors, writes every state (used by `nca-edge verify`)
    startup_m4.c, mps2_m4.ld   a Cortex-M4 start-up and linker script (QEMU's mps2-an386 board)
    Makefile       `make host` (cc -std=c99 -Wall -Wextra -Werror -O2), `make m4` (arm-none-eabi-gcc)

The parameters are those of the packed export (``export.packed_export``): the C step and
``firmware_sim.int8`` compute the same bits.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from firmware_sim import int8, xnor
from firmware_sim.blob import depthwise_taps
from firmware_sim.packed import pack_bits

STATIC = ("nca_step.h", "nca_step.c", "nca_model.c", "main_host.c", "startup_m4.c", "mps2_m4.ld", "Makefile")


def _array(ctype: str, name: str, values, per_line: int = 16) -> str:
    v = [int(x) for x in np.asarray(values).reshape(-1)]
    fmt = {"uint64_t": lambda x: f"0x{x:016X}ull", "int64_t": lambda x: f"{x}ll"}.get(ctype, str)
    lines = [", ".join(fmt(x) for x in v[i:i + per_line]) for i in range(0, len(v), per_line)]
    return f"static const {ctype} {name}[{len(v)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def _int32(values) -> np.ndarray:
    v = np.asarray(values, np.int64)
    if v.size and (v.min() < -2**31 or v.max() > 2**31 - 1):
        raise ValueError("a folded constant does not fit int32")
    return v


def words64(words32: np.ndarray) -> np.ndarray:
    """uint32 words [..., n] (bit j of word j/32) -> uint64 words (bit j of word j/64), the same bits."""
    w = np.asarray(words32, np.uint64)
    if w.shape[-1] % 2:
        w = np.concatenate([w, np.zeros(w.shape[:-1] + (1,), np.uint64)], -1)
    return w[..., 0::2] | (w[..., 1::2] << np.uint64(32))


def input_lanes(w: np.ndarray) -> np.ndarray:
    """An int8 kernel [out, k] held by input for a binary-input layer: [k, ceil(out / 4)] uint64
    words, 16-bit lane l of word q of input j = w[4q + l, j] + 128 (padding outputs: 0), so that
    one addition adds 4 weights and k of them cannot overflow a lane."""
    out, k = w.shape
    if k * 255 >= 2**16:
        raise ValueError(f"a {k}-input layer overflows the 16-bit lanes of the C step")
    b = np.zeros((k, -(-out // 4) * 4), np.uint64)
    b[:, :out] = (np.asarray(w, np.int64).T + 128).astype(np.uint64)
    b = b.reshape(k, -1, 4)
    return np.bitwise_or.reduce(b << (np.uint64(16) * np.arange(4, dtype=np.uint64)), axis=-1)


def depthwise_pairs(taps: np.ndarray) -> np.ndarray:
    """Depthwise taps int8 [O, 9] (O even) -> [O / 2, 9] int64 w[o] + w[o + 1] * 2^32 (even o): one
    64-bit multiply-add computes both outputs' sums, exactly (each sum is far below 2^31)."""
    t = np.asarray(taps, np.int64)
    return t[0::2] + t[1::2] * 2**32


SLICE_PLANES = 10  # nca_step.c: NCA_PLANES


def sliced_layer(w: np.ndarray, c0, thr, a: int) -> tuple[np.ndarray, np.ndarray]:
    """A binary kernel w [out, k] (+-1) on a binary input with a binary output, for the C step's
    bit-sliced layer (conv_sliced): unit o is on when ``c0[o] + a (n - 2 pc[o]) >= thr[o]`` (n: inputs
    on, pc[o]: inputs on where w[o, j] = -1; firmware_sim.xnor, identities 2 and 3), a > 0; that is
    when ``n - 2 pc[o] >= T[o] = ceil((thr[o] - c0[o]) / a)``. Since ``n - 2 pc`` lies in [-k, k], T is
    clamped to [-k, k + 1] (the same comparisons).

    Returns ``cols`` uint64 [k, words] (bit o of word o // 64 of input j: w[o, j] is -1) and
    ``planes`` uint64 [2, 10, words]: bit o of plane p = bit p of ``B[o] = -T[o]`` (counting the
    inputs on) and of ``B[o] - 2 W[o]`` (counting the inputs off; W[o]: the -1s of row o), in 10-bit
    two's complement. The C step computes ``R = B + n - 2 pc`` (or ``B - 2 W + n + 2 q``), in
    [-3k - 1, 2k], modulo 2^10 (exact for k <= 128): unit o is on when R's bit 9 is 0."""
    w = np.asarray(w)
    out, k = w.shape
    if a <= 0 or k > 128:
        raise ValueError("the bit-sliced layer needs a > 0 and at most 128 inputs")
    t = -((np.asarray(c0, np.int64) - np.asarray(thr, np.int64)) // a)  # ceil((thr - c0) / a)
    t = np.clip(t, -k, k + 1)
    neg = w < 0
    b = np.stack([-t, -t - 2 * neg.sum(1)]) & (2**SLICE_PLANES - 1)  # [2, out]
    planes = (b[:, None, :] >> np.arange(SLICE_PLANES)[None, :, None]) & 1  # [2, 10, out]
    by_output = lambda bits: words64(pack_bits(np.where(bits, -1, 1)))  # bit o of word o // 64 (1 = set)
    return by_output(neg.T), by_output(planes.reshape(-1, out).astype(bool)).reshape(2, SLICE_PLANES, -1)


def model_header(p: int8.Int8Step, cfg, source: str = "") -> str:
    """nca_model.h: the step's integers as const arrays. For binary activations the constants the
    C step uses are those of ``firmware_sim.xnor`` (accumulator thresholds, folded biases)."""
    out = ["/* Generated by nca-edge (`nca-edge export MODEL --format c`); do not edit.",
           f" * Model: {source} ({cfg.quant}); parameters as in docs/packed_format.md. */",
           "#ifndef NCA_MODEL_H", "#define NCA_MODEL_H", "", '#include "nca_step.h"', "",
           _array("int8_t", "nca_pixel_lut", p.pixel_lut)]
    acts = (p.act1, p.act2)
    thresholds = xnor.thresholds(p)
    convs = []
    kernels = []
    for i, c in enumerate((p.conv1, p.conv2, p.conv3)):
        w = xnor.kernel_matrix(c)
        k = xnor.binary_magnitude(c)
        dw = None if k else depthwise_taps(c)
        taps = c.weight.shape[1] * c.weight.shape[2]
        act_in = acts[i - 1] if i > 0 else None
        wref = pref = bref = lref = cref = sref = "0"
        nwords = dm = 0
        binary_out = i < 2 and acts[i] is not None
        a = k * (act_in.on - act_in.off) if act_in is not None else 0
        if k and binary_out and a > 0:  # binary input, kernel and output: bit-sliced
            cols, planes = sliced_layer(w, xnor.binary_input_bias(c, act_in), thresholds[i], a)
            out += [_array("uint64_t", f"nca_x{i}", cols, 4), _array("uint64_t", f"nca_z{i}", planes, 4)]
            cref, sref, nwords, kernel = f"nca_x{i}", f"nca_z{i}", cols.shape[1], "SLICED"
        elif k:
            words = words64(pack_bits(np.sign(w)))
            out.append(_array("uint64_t", f"nca_w{i}", words, 4))
            bref, nwords = f"nca_w{i}", words.shape[1]
            kernel = "PATCH" if i == 0 else "XNOR" if act_in is not None else "INT8"
        elif act_in is not None:
            out.append(_array("uint64_t", f"nca_l{i}", input_lanes(w), 4))
            lref, kernel = f"nca_l{i}", "LANES"
        elif dw is not None and dw[1] % 2 == 0 and binary_out:
            out.append(_array("int64_t", f"nca_p{i}", depthwise_pairs(dw[0]), 9))
            pref, dm, kernel = f"nca_p{i}", dw[1], "DEPTHWISE_BITS"
        elif dw is not None:
            out.append(_array("int8_t", f"nca_w{i}", dw[0], 18))
            wref, dm, kernel = f"nca_w{i}", dw[1], "PATCH"
        else:
            out.append(_array("int8_t", f"nca_w{i}", w, 20))
            wref, kernel = f"nca_w{i}", "PATCH" if i == 0 else "INT8"
        kernels.append(kernel)
        bias = c0 = c1 = mult = shift = thr = "0"
        step = 0
        if cref == "0" and act_in is not None:  # the bias is folded into c0 (the planes hold it for cref)
            out.append(_array("int32_t", f"nca_c0_{i}", _int32(xnor.binary_input_bias(c, act_in)), 8))
            c0, step = f"nca_c0_{i}", act_in.on - act_in.off
            if not k:  # an int8 kernel sums the shorter of the on / off lists
                out.append(_array("int32_t", f"nca_c1_{i}", _int32(xnor.binary_input_bias(c, act_in, all_on=True)), 8))
                c1 = f"nca_c1_{i}"
        elif cref == "0":
            out.append(_array("int32_t", f"nca_b{i}", c.bias, 8))
            bias = f"nca_b{i}"
        if cref == "0" and binary_out:  # a threshold on the accumulator replaces the requantization
            out.append(_array("int32_t", f"nca_t{i}", _int32(thresholds[i]), 8))
            thr = f"nca_t{i}"
        elif cref == "0":
            out += [_array("int32_t", f"nca_m{i}", c.multiplier, 8), _array("int8_t", f"nca_s{i}", c.shift, 20)]
            mult, shift = f"nca_m{i}", f"nca_s{i}"
        convs.append(f"        {{{w.shape[0]}, {w.shape[1]}, {taps}, {dm}, {wref}, {pref}, {bref}, {lref}, {cref}, {sref}, {nwords}, {k}, {bias}, {mult}, "
                     f"{shift}, {c.input_zero}, {c.output_zero}, {c.act_min}, {c.act_max}, {c0}, {c1}, {step}, {thr}}}")
    m1, m2, a = p.mul1, p.mul2, p.add
    out += ["static const nca_model_t NCA_MODEL = {",
            f"    {p.channels}, {cfg.perception}, {cfg.hidden}, {cfg.n_classes},",
            f"    {p.state_zero}, {p.alive_min}, {p.fire_on}, {p.fire_off}, {p.alive_on}, {p.alive_off},",
            "    nca_pixel_lut,",
            "    {\n" + ",\n".join(convs) + "\n    },",
            f"    {{{m1.in1_zero}, {m1.in2_zero}, {m1.output_zero}, {m1.multiplier}, {m1.shift}}},",
            f"    {{{m2.in1_zero}, {m2.in2_zero}, {m2.output_zero}, {m2.multiplier}, {m2.shift}}},",
            f"    {{{a.in1_zero}, {a.in2_zero}, {a.output_zero}, {a.in1_multiplier}, {a.in1_shift}, {a.in2_multiplier}, "
            f"{a.in2_shift}, {a.out_multiplier}, {a.out_shift}}}",
            "};", "", "#endif", ""]
    return "\n".join(out), kernels


KERNELS = ("PATCH", "DEPTHWISE_BITS", "INT8", "XNOR", "LANES", "SLICED")  # nca_step.c's layer kernels


def config_header(kernels, units: int = 0) -> str:
    """nca_config.h: which of the step's layer kernels this model's layers use; nca_step.c compiles
    only those (like an op resolver that registers only the model's ops). For a model with more than
    128 units in a layer it also sizes the step's scratch space (NCA_MAX_UNITS; 128 by default)."""
    lines = ["/* Generated by nca-edge (`nca-edge export MODEL --format c`); do not edit.",
             " * The layer kernels the model in nca_model.h uses (conv 0, 1, 2: " + ", ".join(kernels) + ");",
             " * nca_step.c compiles only these, and nca_step returns -1 for a model that needs another. */",
             "#ifndef NCA_CONFIG_H", "#define NCA_CONFIG_H", ""]
    lines += [f"#define NCA_USE_{k} {int(k in kernels)}" for k in KERNELS]
    if units > 128:
        lines += ["", f"#define NCA_MAX_UNITS {units} /* the widest layer's units */"]
    return "\n".join(lines + ["", "#endif", ""])


def c_files(p: int8.Int8Step, cfg, source: str = "") -> dict[str, bytes]:
    src = resources.files("export") / "c_src"
    files = {name: (src / name).read_bytes() for name in STATIC}
    header, kernels = model_header(p, cfg, source)
    files["nca_model.h"] = header.encode()
    files["nca_config.h"] = config_header(kernels, max(cfg.perception, cfg.hidden)).encode()
    return files
