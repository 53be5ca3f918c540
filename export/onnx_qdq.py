"""``onnx-qdq``: the tflite-int8 step rewritten as an ONNX QuantizeLinear/DequantizeLinear graph.

Every quantized tensor of the int8 TFLite step (``export.int8_graph``) becomes a Q/DQ pair with
the same scale and zero point, and every kernel an int8 initializer dequantized per output
channel (a binary kernel is int8 +-127 times alpha_o / 127: exactly +-alpha_o)::

    x     = DQ(Q(state; S, Zs))                       # inputs float32 NCHW, on the int8 grid
    alive = QDQ(Conv1x1(x[:, :1]; DQ(1), b0); alive)  # a step conv (exact 0/1)
    p     = QDQ(Relu(Conv3x3(x; DQ(W1), b1)); conv 1 output)
    h     = QDQ(Relu(Conv1x1(p; DQ(W2), b2)); conv 2 output)
                                                      # ban/bnn: no Relu, step convs (exact 0/1)
    ds    = QDQ(Conv1x1(h; DQ(W3), b3); conv 3 output)
    m     = QDQ(QDQ(ds * fire; mul 1) * alive; mul 2)
    out   = Concat(x[:, :1], QDQ(x[:, 1:] + m; add))  # float32, on the int8 grid

Biases are the int32 biases times ``S_in * S_w[o]``. A step conv (``firmware_sim.int8.is_step``:
the 0/1 tensors, no comparison op) is written with kernel scales that make one accumulator unit
``STEP_UNITS`` output units and its bias lowered by a quarter unit, so its QuantizeLinear saturates
to -128 for every acc <= 0 and to 127 for every acc >= 1, with float32 rounding in the conv (error
far below a quarter unit) and in onnxruntime's fused integer kernels (which round the bias back to
the exact int32). Every tensor is int8 between Q and DQ. Inputs and outputs are float32 like the
``onnx`` export (``state`` [B, C, H, W], ``fire`` [B, 1, H, W], ``next_state``), so the same
host loop runs it; ONNX Runtime executes the Q/DQ pairs (it may fuse them into integer
kernels). Dynamic batch and grid. Accuracy is checked against the fake-quant model
(``export.fakequant``), as for tflite-int8.
"""

from __future__ import annotations

import numpy as np

OPSET = 19  # the lowest opset whose DequantizeLinear onnx.reference.ReferenceEvaluator runs
STEP_UNITS = 1000.0  # output units per accumulator unit in a step conv (saturates beyond +-0.128 units)
# The step conv's bias is lowered by a quarter accumulator unit: in float, acc = 0 lands 250 output
# units below the step (float summation error cannot lift it); an integer kernel that rounds the
# bias to int32 (onnxruntime's fused QLinearConv) gets the exact int32 bias back (no tie to round).
STEP_OFFSET = 0.25


def onnx_qdq_bytes(q: dict, cfg, record: str = "") -> bytes:
    """``q``: the quantization dict of ``export.int8_graph.quantization``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from firmware_sim import int8

    params = int8.derive(q)
    steps = [int8.is_step(c) for c in (params.conv1, params.conv2, params.conv3)]

    c = cfg.channels
    nodes, inits = [], []

    def const(name, value, dtype=None):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def qdq(x, scale, zero, name):
        s = const(f"{name}.scale", np.float32(scale))
        z = const(f"{name}.zero", np.int8(zero))
        nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [f"{name}.q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}.q", s, z], [name]))
        return name

    state = qdq("state", *q["state"], "x")
    # pixel and mutable channels
    starts0, ends1, axes1 = const("s0", [0], np.int64), const("e1", [1], np.int64), const("ax1", [1], np.int64)
    big = const("big", [np.iinfo(np.int64).max], np.int64)
    nodes.append(helper.make_node("Slice", [state, starts0, ends1, axes1], ["pixel"]))
    nodes.append(helper.make_node("Slice", [state, ends1, big, axes1], ["mutable"]))

    def conv(x, c: dict, s_in: float, name: str, step: bool, relu: bool) -> str:
        w = np.asarray(c["weight"], np.int8).transpose(0, 3, 1, 2)  # OHWI -> OIHW
        ws = np.asarray(c["weight_scales"], np.float64)
        bias = np.asarray(c["bias"], np.float64)
        if step:  # one accumulator unit = STEP_UNITS output units; the step between acc 0 and 1
            ws = np.full(len(ws), STEP_UNITS * float(np.float32(c["output"][0])) / s_in)
            bias = bias - STEP_OFFSET
        ws = ws.astype(np.float32)
        nodes.append(helper.make_node("DequantizeLinear", [const(f"{name}.wq", w), const(f"{name}.wscale", ws),
                                                           const(f"{name}.wzero", np.zeros(len(ws), np.int8))],
                                      [f"{name}.w"], axis=0))
        b = const(f"{name}.b", (bias * s_in * ws.astype(np.float64)).astype(np.float32))
        pad = (w.shape[2] - 1) // 2
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", b], [f"{name}.conv"], pads=[pad] * 4))
        y = f"{name}.conv"
        if relu and not step:
            nodes.append(helper.make_node("Relu", [y], [f"{name}.relu"]))
            y = f"{name}.relu"
        return qdq(y, *c["output"], name)

    s_state = float(q["state"][0])
    alive = conv("pixel", q["alive"], s_state, "alive", step=True, relu=False)
    x, s_in = state, s_state
    for i, layer in enumerate(q["convs"], start=1):
        x = conv(x, layer, s_in, f"conv{i}", step=steps[i - 1], relu=bool(layer["relu"]))
        s_in = float(layer["output"][0])
    fire = qdq("fire", *q["fire"], "fire_q")
    nodes.append(helper.make_node("Mul", [x, fire], ["m1raw"]))
    m1 = qdq("m1raw", *q["muls"][0], "m1")
    nodes.append(helper.make_node("Mul", [m1, alive], ["m2raw"]))
    m2 = qdq("m2raw", *q["muls"][1], "m2")
    nodes.append(helper.make_node("Add", ["mutable", m2], ["sumraw"]))
    new = qdq("sumraw", *q["add"], "new")
    nodes.append(helper.make_node("Concat", ["pixel", new], ["next_state"], axis=1))
    dims = ["batch", c, "height", "width"]
    graph = helper.make_graph(
        nodes, "nca_step_qdq",
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, dims),
         helper.make_tensor_value_info("fire", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("next_state", TensorProto.FLOAT, dims)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="nca-edge")
    proto.ir_version = 9  # opset 19
    proto.doc_string = f"one CA step of the {cfg.quant} self-classifying MNIST CA, int8 Q/DQ (nca-edge)"
    if record:
        helper.set_model_props(proto, {"nca_edge": record})
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()
