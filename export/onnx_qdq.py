"""``onnx-qdq``: the tflite-int8 step rewritten as an ONNX QuantizeLinear/DequantizeLinear graph.

Every quantized tensor of the int8 TFLite step (``export.int8_graph``) becomes a Q/DQ pair with
the same scale and zero point, and every kernel an int8 initializer dequantized per output
channel (a binary kernel is int8 +-127 times alpha_o / 127: exactly +-alpha_o)::

    x     = DQ(Q(state; S, Zs))                       # inputs float32 NCHW, on the int8 grid
    alive = Cast(Greater(x[:, :1], 0.1))
    p     = QDQ(Relu(Conv3x3(x; DQ(W1), b1)); conv 1 output)
    h     = QDQ(Relu(Conv1x1(p; DQ(W2), b2)); conv 2 output)
                                                      # ban/bnn: no Relu; p and h pass
                                                      # QDQ(Cast(GreaterOrEqual(., 0))) (exact 0/1)
    ds    = QDQ(Conv1x1(h; DQ(W3), b3); conv 3 output)
    m     = QDQ(QDQ(ds * fire; mul 1) * alive; mul 2)
    out   = Concat(x[:, :1], QDQ(x[:, 1:] + m; add))  # float32, on the int8 grid

Biases are the int32 biases times ``S_in * S_w[o]``. Inputs and outputs are float32 like the
``onnx`` export (``state`` [B, C, H, W], ``fire`` [B, 1, H, W], ``next_state``), so the same
host loop runs it; ONNX Runtime executes the Q/DQ pairs (it may fuse them into integer
kernels). Dynamic batch and grid. Accuracy is checked against the fake-quant model
(``export.fakequant``), as for tflite-int8.
"""

from __future__ import annotations

import numpy as np

OPSET = 17


def onnx_qdq_bytes(q: dict, cfg, record: str = "") -> bytes:
    """``q``: the quantization dict of ``export.int8_graph.quantization``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

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
    nodes.append(helper.make_node("Greater", ["pixel", const("threshold", np.float32(cfg.alive_threshold))], ["alive_b"]))
    nodes.append(helper.make_node("Cast", ["alive_b"], ["alive"], to=TensorProto.FLOAT))
    x, s_in = state, float(q["state"][0])
    for i, conv in enumerate(q["convs"], start=1):
        w = np.asarray(conv["weight"], np.int8).transpose(0, 3, 1, 2)  # OHWI -> OIHW
        ws = np.asarray(conv["weight_scales"], np.float32)
        wq = const(f"w{i}.q", w)
        nodes.append(helper.make_node("DequantizeLinear", [wq, const(f"w{i}.scale", ws), const(f"w{i}.zero", np.zeros(len(ws), np.int8))],
                                      [f"w{i}"], axis=0))
        bias = const(f"b{i}", (np.asarray(conv["bias"], np.float64) * s_in * ws.astype(np.float64)).astype(np.float32))
        pad = (w.shape[2] - 1) // 2
        nodes.append(helper.make_node("Conv", [x, f"w{i}", bias], [f"conv{i}"], pads=[pad] * 4))
        y = f"conv{i}"
        if conv["relu"]:
            nodes.append(helper.make_node("Relu", [y], [f"relu{i}"]))
            y = f"relu{i}"
        x = qdq(y, *conv["output"], f"a{i}")
        s_in = float(conv["output"][0])
        if q.get("binary") and i <= 2:  # the 0/1 step of the int8 pre-activation, as the file's comparison chain
            b = q["binary"][i - 1]
            value, s_c, z_c = b["const"]
            op = "Greater" if b["strict"] else "GreaterOrEqual"
            nodes.append(helper.make_node(op, [x, const(f"t{i}", np.float32((value - z_c) * s_c))], [f"step{i}_b"]))
            nodes.append(helper.make_node("Cast", [f"step{i}_b"], [f"step{i}"], to=TensorProto.FLOAT))
            x = qdq(f"step{i}", *b["output"], f"h{i}")
            s_in = float(b["output"][0])
    fire = qdq("fire", *q["fire"], "fire_q")
    nodes.append(helper.make_node("Mul", [x, fire], ["m1raw"]))
    m1 = qdq("m1raw", *q["muls"][0], "m1")
    nodes.append(helper.make_node("Mul", [m1, "alive"], ["m2raw"]))
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
    proto.ir_version = 8
    proto.doc_string = f"one CA step of the {cfg.quant} self-classifying MNIST CA, int8 Q/DQ (nca-edge)"
    if record:
        helper.set_model_props(proto, {"nca_edge": record})
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()
