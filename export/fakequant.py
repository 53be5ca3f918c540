"""The PyTorch fake-quant model of an int8 export: the float step with the artifact's quantization.

Integer exports are checked against this model (accuracy and agreement within 1 point); the
bit-level semantics live in ``firmware_sim``, not here. It reads every quantization parameter
from the int8 TFLite file and simulates each quantized tensor as
``fq(x; s, z) = (clamp(round(x / s) + z, -128, 127) - z) * s``::

    x   = fq(state; state)                                  (the int8 state)
    p   = fq(act(conv3x3(x; fq_w(W1)) + b1); conv 1 output)       (ReLU: float, bwn)
    h   = fq(act(conv1x1(p; fq_w(W2)) + b2); conv 2 output)
    p   = [conv3x3(x; fq_w(W1)) + b1 >= S_acc1 / 2]              (binary: ban, bnn; the file's step
    h   = [conv1x1(p; fq_w(W2)) + b2 >= S_acc2 / 2]               convs, [acc >= 1] in accumulator
                                                                    steps S_acc = S_in * S_w[o];
                                                                    W2, W3 -> 2W, b -> b - sum W)
    ds  = fq(conv1x1(h; fq_w(W3)) + b3; conv 3 output)
    m   = fq(fq(ds * fire; mul 1) * alive; mul 2)
    x'  = [x[0], fq(x[1:] + m; state)]

``step`` computes this dense formula in the alive-cell layout (``nca_edge.cells``), only for
the cells that fire. The constants are the file's, dequantized: fq_w(W) = W_q * s_w[o] (per-output-channel
symmetric int8, scale max|W[o]| / 127: TFLite's rule) and b = b_q * s_in * s_w[o] (the int32 bias).
The bias matters: a float bias differs from the file's by up to half an accumulator step, which
moves a pre-activation near a rounding boundary to the other int8 code; at a binary activation's
threshold that flips the unit, and the same way in every cell with the same neighbourhood (the
blank cells of step 0, for one), so it is a bias, not noise. What is left between this model and
the file is the rounding: one round-half-to-even here, TFLite's two roundings in the reference
kernels (docs/export.md, scripts/int8_stages.py). Tensors are
found by their roles in the file (``export.int8_graph.step_ops``: the three layer convolutions,
MUL x2, ADD x1), the graph of ``export.tflite_export.tflite_int8_bytes``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nca_edge.errors import NCAEdgeError


def quantize_code(x: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    """The int8 code of x (as floats): clamp(round(x / scale) + zero, -128, 127), ties to even."""
    return torch.clamp(torch.round(x / scale) + zero, -128, 127)


def _fq(x: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    return (quantize_code(x, scale, zero) - zero) * scale


def int8_params(path) -> dict:
    """Quantization (scale, zero point) of the step's tensors, by role, from an int8 .tflite file,
    and the convolutions' constants dequantized: "kernels" float32 [O, kh * kw * I] ((dy, dx, c)
    order, the file's OHWI) and "biases" float32 [O]."""
    from ai_edge_litert.interpreter import Interpreter

    from nca_edge.larq_mirror import quiet_stderr

    with quiet_stderr():
        it = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    out = lambda op: tuple(tensors[int(op["outputs"][0])]["quantization"])  # noqa: E731
    from .int8_graph import step_ops

    layer_convs = step_ops(it)["layers"]
    convs = [out(o) for o in layer_convs]
    muls = [out(o) for o in ops if o["op_name"] == "MUL"]
    adds = [out(o) for o in ops if o["op_name"] == "ADD"]
    state = next(tuple(d["quantization"]) for d in it.get_input_details() if "state" in d["name"])
    if len(convs) != 3 or len(muls) != 2 or len(adds) != 1:
        raise NCAEdgeError(f"{path}: not the int8 step graph nca-edge exports (ops {[o['op_name'] for o in ops]})")
    it.allocate_tensors()
    kernels, biases, acc_scales = [], [], []
    for op in layer_convs:
        w, b = (int(i) for i in op["inputs"][1:3])
        scale = lambda i: tensors[i]["quantization_parameters"]["scales"].astype(np.float64)  # noqa: E731
        wq = it.get_tensor(w).astype(np.float64)
        kernels.append((wq * scale(w)[:, None, None, None]).reshape(wq.shape[0], -1).astype(np.float32))
        biases.append((it.get_tensor(b).astype(np.float64) * scale(b)).astype(np.float32))
        acc_scales.append(scale(b))  # S_in * S_w[o]: one accumulator step
    return {"state": state, "conv": convs, "mul": muls, "add": adds[0], "kernels": kernels, "biases": biases,
            "acc_scales": acc_scales}


class FakeQuantRunner:
    """A runner (``export.runtimes`` interface, NCHW float) for the fake-quant model.

    ``rounding``: how a convolution's output is rounded to its int8 code.
    ``"half-even"`` (default): once, to nearest, ties to even, as XNNPACK (ai-edge-litert) and
    onnxruntime requantize in float. ``"tflite"``: the accumulator (the pre-activation in
    accumulator steps, an integer) through TFLite's fixed-point requantization, two roundings
    (``firmware_sim.fixedpoint``, the one definition of that arithmetic; parameters from
    ``firmware_sim.int8.derive``), as TFLite's reference kernels and tflite-runtime 2.14 compute
    it. It moves values within 2**(shift - 1) of a half step away from zero
    (scripts/int8_stages.py). MUL and ADD keep one rounding either way: they showed no difference.
    """

    batch = None

    def __init__(self, model, tflite_int8_path, rounding: str = "half-even"):
        if rounding not in ("half-even", "tflite"):
            raise NCAEdgeError(f"rounding must be 'half-even' or 'tflite', not {rounding!r}")
        self.model = model.eval()
        self.cfg = model.cfg
        self.q = int8_params(tflite_int8_path)
        self.rounding = rounding
        if rounding == "tflite":
            from pathlib import Path

            from .packed_export import int8_step_from_tflite

            p = int8_step_from_tflite(Path(tflite_int8_path).read_bytes())
            self._convs = (p.conv1, p.conv2, p.conv3)
        # the file's constants (sign folded for ban/bnn), (dy, dx, c)-ordered for the alive-cell layout
        self.w_cells = [torch.from_numpy(w) for w in self.q["kernels"]]
        self.b = [torch.from_numpy(b) for b in self.q["biases"]]
        self._plan = self._plan_pixels = None

    def _conv(self, k: int, x: torch.Tensor, relu: bool) -> torch.Tensor:
        """Convolution k (as a matrix on patches) and its output's fake quantization."""
        pre = F.linear(x, self.w_cells[k], self.b[k])
        scale, zero = self.q["conv"][k]
        if self.rounding == "half-even":
            return _fq(torch.relu(pre) if relu else pre, scale, zero)
        from firmware_sim.fixedpoint import multiply_by_quantized_multiplier

        c = self._convs[k]  # act_min is the zero point after a fused ReLU
        acc = np.rint(pre.double().numpy() / self.q["acc_scales"][k]).astype(np.int64)
        code = np.clip(multiply_by_quantized_multiplier(acc, c.multiplier, c.shift) + c.output_zero, c.act_min, c.act_max)
        return (torch.from_numpy(code.astype(np.float32)) - zero) * scale

    def _step(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Step conv k: [acc >= 1] (the file writes sign's >= as +1 in the bias), decided half an
        accumulator step from the boundary so float summation cannot flip it."""
        pre = F.linear(x, self.w_cells[k], self.b[k])
        half = torch.from_numpy(0.5 * self.q["acc_scales"][k]).to(pre.dtype)
        return (pre >= half).to(x.dtype)

    def encode(self, x: np.ndarray) -> torch.Tensor:
        return _fq(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), *self.q["state"])

    def decode(self, s: torch.Tensor) -> np.ndarray:
        return s.numpy().copy()

    @torch.inference_mode()
    def step(self, s: torch.Tensor, fire: np.ndarray) -> torch.Tensor:
        """The dense step above, computed only where it can change anything (alive, firing cells).

        Elsewhere ds * fire * alive = 0, and fq(x + 0; state) = x because x is already on the
        state's grid and ADD has the state's parameters; so the result is the dense formula's, up
        to float summation order (a value within rounding error of a quantization boundary may
        land one step away, as it may between any two float implementations).
        """
        if self.cfg.binary_input:
            raise NCAEdgeError("the fake-quant model does not cover binary_input yet")
        from nca_edge.cells import AliveCells

        m1, m2 = self.q["mul"]
        pixels = s[:, 0]
        if self._plan is None or not torch.equal(self._plan_pixels, pixels):
            self._plan, self._plan_pixels = AliveCells(pixels, self.cfg), pixels.clone()
        plan = self._plan
        hidden = plan.gather(s)
        rows = torch.from_numpy(fire)[plan.b, plan.y, plan.x].nonzero().squeeze(1)
        patches = plan.patches(hidden, rows)
        if self.cfg.binary_activations:  # the file's step convs
            p = self._step(0, patches)
            h = self._step(1, p)
        else:
            p = self._conv(0, patches, relu=True)
            h = self._conv(1, p, relu=True)
        ds = self._conv(2, h, relu=False)
        m = _fq(_fq(ds, *m1), *m2)  # * fire * alive = * 1 on these rows
        hidden = hidden.clone()
        hidden[rows] = _fq(hidden[rows] + m, *self.q["add"])
        return plan.scatter(hidden, pixels)
