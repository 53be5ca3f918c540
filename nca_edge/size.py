"""What a device must store: every tensor of a variant at its real bit width.

Rules (per layer l = 1: 3x3 perception, 2: first 1x1, 3: second 1x1 producing ds):

* kernels: 32-bit floats, or 1 bit per weight for binary kernels (bwn, bnn), or 8 bits for the
  layers a binary variant keeps real (``real_weights``: int8 with a per-channel scale on a device),
  or 4 bits (with a per-channel scale) for the layers listed in ``int4``;
* a binary kernel has one scale alpha_o per output channel (32 bits);
* a layer whose output is binarized (ban, bnn: layers 1 and 2) needs only the sign of
  ``alpha_o * acc + b_o``; with alpha_o > 0 that is ``sign(acc + b_o / alpha_o)``, so scale and
  bias fold into one 32-bit threshold per output channel;
* otherwise a layer keeps its 32-bit bias (and its scale, if binary);
* ``binary_input`` adds one 8-bit threshold per state channel (compared with the int8 state).

Each tensor is stored byte-aligned: ceil(count * bits / 8) bytes. ``packed_bytes`` is the sum.
Activations are listed for ``compare --verbose`` but take no storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import CAConfig


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    bits: int
    kind: str  # "weights", "constants", "activation"
    note: str = ""

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return 0 if self.kind == "activation" else math.ceil(self.count * self.bits / 8)


def tensor_table(cfg: CAConfig) -> list[TensorSpec]:
    c, p, h = cfg.channels, cfg.perception, cfg.hidden
    layers = [("perceive", (p, 1 if cfg.depthwise else c, 3, 3)), ("update1", (h, p, 1, 1)), ("update2", (c - 1, h, 1, 1))]
    binary_out = {"perceive": cfg.binary_activations, "update1": cfg.binary_activations, "update2": False}
    rows: list[TensorSpec] = []
    state_bits = 32 if cfg.state_frac_bits is None else 8
    state_note = "float32" if cfg.state_frac_bits is None else f"int8 fixed point, q / 2^{cfg.state_frac_bits}"
    rows.append(TensorSpec("state", (c,), state_bits, "activation", state_note))
    if cfg.binary_input:
        rows.append(TensorSpec("state (input of perceive)", (c,), 1, "activation", "sign(state - t)"))
    if cfg.binary_input:
        rows.append(TensorSpec("input_threshold", (c,), 8, "constants", "t_c, compared with the int8 state"))
    for name, shape in layers:
        out = shape[0]
        if name in cfg.int4:
            kbits, note = 4, "int4, per-channel scale"
        elif cfg.binary_kernel(name):
            kbits, note = 1, "sign(W), bit-packed"
        elif cfg.binary_weights:  # a real layer of a binary variant: int8 per output channel
            kbits, note = 8, "int8, per-channel scale"
        else:
            kbits, note = 32, "float32"
        rows.append(TensorSpec(f"{name}.weight", shape, kbits, "weights", note))
        if binary_out[name]:
            rows.append(TensorSpec(f"{name}.threshold", (out,), 32, "constants",
                                   "b/alpha folded" if kbits == 1 else "bias as threshold"))
        else:
            if kbits == 1:
                rows.append(TensorSpec(f"{name}.scale", (out,), 32, "constants",
                                       "alpha_o, trained (learned_scale)" if cfg.learned_scale else "alpha_o = mean|W[o]|"))
            elif kbits in (4, 8):
                rows.append(TensorSpec(f"{name}.scale", (out,), 32, "constants", f"int{kbits} kernel scale"))
            rows.append(TensorSpec(f"{name}.bias", (out,), 32, "constants", "float32"))
        if name != "update2":
            act_bits = 1 if cfg.binary_activations else 32
            rows.append(TensorSpec(f"{name} output", (out,), act_bits, "activation",
                                   cfg.binary_act if cfg.binary_activations else "relu"))
    rows.append(TensorSpec("ds (residual update)", (c - 1,), 32, "activation", "real-valued"))
    return rows


def packed_bytes(cfg: CAConfig) -> int:
    return sum(t.nbytes for t in tensor_table(cfg))


def float32_bytes(cfg: CAConfig) -> int:
    return 4 * cfg.param_count()


def kernel_bits(cfg: CAConfig) -> str:
    """Bits per weight of each kernel (perceive, update1, update2), e.g. "8,1,8" for a binary
    variant whose first and last kernels are kept real (int8 on a device)."""
    bits = [1 if cfg.binary_kernel(n) else 4 if n in cfg.int4 else (8 if cfg.binary_weights else 32)
            for n in ("perceive", "update1", "update2")]
    return ",".join(map(str, bits))


def bit_widths(cfg: CAConfig) -> tuple[int, int]:
    """(weight_bits, activation_bits) of the variant's convolution inputs/kernels."""
    return (1 if cfg.binary_weights else 32, 1 if cfg.binary_activations else 32)
