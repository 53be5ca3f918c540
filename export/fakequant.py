"""The PyTorch fake-quant model of an int8 export: the float step with the artifact's quantization.

Integer exports are checked against this model (accuracy and agreement within 1 point); the
bit-level semantics live in ``firmware_sim``, not here. It reads every quantization parameter
from the int8 TFLite file and simulates each quantized tensor as
``fq(x; s, z) = (clamp(round(x / s) + z, -128, 127) - z) * s``::

    x   = fq(state; state)                                  (the int8 state)
    p   = fq(act(conv3x3(x; fq_w(W1)) + b1); conv 1 output)       (ReLU: float, bwn)
    h   = fq(act(conv1x1(p; fq_w(W2)) + b2); conv 2 output)
    p   = act(fq(conv3x3(x; fq_w(W1)) + b1; conv 1 output))       (binary: ban, bnn; act = the
    h   = act(fq(conv1x1(p; fq_w(W2)) + b2; conv 2 output))        0/1 step of the int8 pre-activation,
                                                                    W2, W3 -> 2W, b -> b - sum W)
    ds  = fq(conv1x1(h; fq_w(W3)) + b3; conv 3 output)
    m   = fq(fq(ds * fire; mul 1) * alive; mul 2)
    x'  = [x[0], fq(x[1:] + m; state)]

``step`` computes this dense formula in the alive-cell layout (``nca_edge.cells``), only for
the cells that fire. fq_w: per-output-channel symmetric int8, scale max|W[o]| / 127 (TFLite's rule). Tensors are
found by op order in the file (CONV_2D x3, MUL x2, ADD x1), the graph of
``export.tflite_export.tflite_int8_bytes``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nca_edge.errors import NCAEdgeError

from .tflite_export import int8_step_weights


def _fq(x: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    return (torch.clamp(torch.round(x / scale) + zero, -128, 127) - zero) * scale


def _fq_w(w: torch.Tensor) -> torch.Tensor:
    s = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12) / 127.0
    return torch.round(w / s) * s


def int8_params(path) -> dict:
    """Quantization (scale, zero point) of the step's tensors, by role, from an int8 .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    from nca_edge.larq_mirror import quiet_stderr

    with quiet_stderr():
        it = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    out = lambda op: tuple(tensors[int(op["outputs"][0])]["quantization"])  # noqa: E731
    convs = [out(o) for o in ops if o["op_name"] == "CONV_2D"]
    muls = [out(o) for o in ops if o["op_name"] == "MUL"]
    adds = [out(o) for o in ops if o["op_name"] == "ADD"]
    state = next(tuple(d["quantization"]) for d in it.get_input_details() if "state" in d["name"])
    if len(convs) != 3 or len(muls) != 2 or len(adds) != 1:
        raise NCAEdgeError(f"{path}: not the int8 step graph nca-edge exports (ops {[o['op_name'] for o in ops]})")
    return {"state": state, "conv": convs, "mul": muls, "add": adds[0]}


class FakeQuantRunner:
    """A runner (``export.runtimes`` interface, NCHW float) for the fake-quant model."""

    batch = None

    def __init__(self, model, tflite_int8_path):
        self.model = model.eval()
        self.cfg = model.cfg
        self.q = int8_params(tflite_int8_path)
        with torch.no_grad():
            kernels, self.b = int8_step_weights(model)  # as the file holds them (sign folded for ban/bnn)
            self.w = [_fq_w(w) for w in kernels]
            # (dy, dx, c)-ordered matrices for the alive-cell layout (nca_edge.cells)
            self.w_cells = [w.permute(0, 2, 3, 1).reshape(w.shape[0], -1) for w in self.w]
        self._plan = self._plan_pixels = None

    def _act(self, x):
        if not self.cfg.binary_activations:
            return torch.relu(x)
        if self.cfg.binary_act == "heaviside":
            return (x > 0).to(x.dtype)
        return (x >= 0).to(x.dtype)  # the 0/1 step; sign is folded into the next layer (above)

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

        (c1, c2, c3), (m1, m2) = self.q["conv"], self.q["mul"]
        pixels = s[:, 0]
        if self._plan is None or not torch.equal(self._plan_pixels, pixels):
            self._plan, self._plan_pixels = AliveCells(pixels, self.cfg), pixels.clone()
        plan = self._plan
        hidden = plan.gather(s)
        rows = torch.from_numpy(fire)[plan.b, plan.y, plan.x].nonzero().squeeze(1)
        patches = plan.patches(hidden, rows)
        if self.cfg.binary_activations:  # the file compares the int8 pre-activation with 0
            p = self._act(_fq(F.linear(patches, self.w_cells[0], self.b[0]), *c1))
            h = self._act(_fq(F.linear(p, self.w_cells[1], self.b[1]), *c2))
        else:
            p = _fq(self._act(F.linear(patches, self.w_cells[0], self.b[0])), *c1)
            h = _fq(self._act(F.linear(p, self.w_cells[1], self.b[1])), *c2)
        ds = _fq(F.linear(h, self.w_cells[2], self.b[2]), *c3)
        m = _fq(_fq(ds, *m1), *m2)  # * fire * alive = * 1 on these rows
        hidden = hidden.clone()
        hidden[rows] = _fq(hidden[rows] + m, *self.q["add"])
        return plan.scatter(hidden, pixels)
