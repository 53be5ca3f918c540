"""Read the int8 step's quantization out of a ``tflite-int8`` file, for ``firmware_sim.int8``.

The converter produces one graph (``export.tflite_export.tflite_int8_bytes``)::

    STRIDED_SLICE(state) -> pixel;  GREATER(pixel, const) -> CAST -> QUANTIZE -> alive_q
    STRIDED_SLICE(state) -> mutable
    CONV_2D(state) -> CONV_2D -> CONV_2D -> ds
    MUL(ds, fire) -> MUL(., alive_q) -> ADD(mutable, .) -> CONCATENATION(pixel, .) -> state'

with, for binary activations (ban, bnn), ``GREATER_EQUAL(., 0) -> CAST -> QUANTIZE`` (GREATER for
heaviside) after the first two CONV_2D.

``quantization(interpreter)`` walks it and returns the dict ``firmware_sim.int8.derive`` takes:
every tensor's scale and zero point, the int8 kernels (OHWI) with per-channel scales, the int32
biases, and GREATER's constant. Works with any TFLite interpreter object (tflite-runtime,
ai-edge-litert, TensorFlow); imports none of them.
"""

from __future__ import annotations

import numpy as np

from nca_edge.errors import NCAEdgeError

EXPECTED = ["STRIDED_SLICE", "GREATER", "CAST", "QUANTIZE", "STRIDED_SLICE", "CONV_2D", "CONV_2D", "CONV_2D",
            "MUL", "MUL", "ADD", "CONCATENATION"]


def quantization(it) -> dict:
    """The dict for ``firmware_sim.int8.derive`` from an allocated interpreter ``it``.

    The step's activations follow from the graph: a fused ReLU after the first two convolutions
    (float, bwn), or a binary activation (ban, bnn: a comparison chain after each of them).
    """
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = [o for o in it._get_ops_details() if o["op_name"] != "DELEGATE"]  # XNNPACK adds DELEGATE nodes
    names = [o["op_name"] for o in ops]
    binary = "GREATER_EQUAL" in names or names.count("GREATER") == 3
    compare = "GREATER" if names.count("GREATER") == 3 else "GREATER_EQUAL"
    expected = EXPECTED + ([compare, "CAST", "QUANTIZE"] * 2 if binary else [])
    if sorted(names) != sorted(expected):
        raise NCAEdgeError(f"not the int8 step graph nca-edge exports (ops {names})")
    relu = (False, False, False) if binary else (True, True, False)

    def qp(i: int) -> tuple[float, int]:
        p = tensors[int(i)]["quantization_parameters"]
        if len(p["scales"]) != 1:
            raise NCAEdgeError(f"tensor {tensors[int(i)]['name']} is not per-tensor quantized")
        return float(p["scales"][0]), int(p["zero_points"][0])

    by = lambda name: [o for o in ops if o["op_name"] == name]  # noqa: E731
    reads = lambda i: next(o for o in ops if int(o["inputs"][0]) == int(i))  # noqa: E731  the op fed by tensor i
    state_in = next(d for d in it.get_input_details() if "state" in d["name"])
    fire_in = next(d for d in it.get_input_details() if "fire" in d["name"])
    conv_outs = {int(o["outputs"][0]) for o in by("CONV_2D")}
    # the alive comparison reads the pixel slice; a binary activation's reads a CONV_2D output
    (greater,) = [o for o in by("GREATER") if int(o["inputs"][0]) not in conv_outs]
    quant = reads(reads(greater["outputs"][0])["outputs"][0])
    const = int(greater["inputs"][1])
    acts = []
    if binary:
        for op in by("CONV_2D")[:2]:
            cmp_op = reads(op["outputs"][0])
            cast = reads(cmp_op["outputs"][0])
            q_op = reads(cast["outputs"][0])
            if (cmp_op["op_name"], cast["op_name"], q_op["op_name"]) != (compare, "CAST", "QUANTIZE"):
                raise NCAEdgeError("unexpected binary activation wiring in the int8 step graph")
            c_i = int(cmp_op["inputs"][1])
            acts.append({"const": (int(np.asarray(it.get_tensor(c_i)).reshape(-1)[0]),) + qp(c_i),
                         "strict": compare == "GREATER", "output": qp(q_op["outputs"][0])})
    convs = []
    for op, r in zip(by("CONV_2D"), relu):
        w_i, b_i = int(op["inputs"][1]), int(op["inputs"][2])
        ws = tensors[w_i]["quantization_parameters"]
        if np.any(ws["zero_points"] != 0):
            raise NCAEdgeError("kernel zero points must be 0 (symmetric int8)")
        convs.append({"weight": it.get_tensor(w_i).astype(np.int8), "weight_scales": np.asarray(ws["scales"], np.float32),
                      "bias": it.get_tensor(b_i).astype(np.int32), "output": qp(op["outputs"][0]), "relu": r})
    muls = [qp(o["outputs"][0]) for o in by("MUL")]
    (add,) = by("ADD")
    # MUL 1 multiplies ds by the fire input; check the wiring the derivation assumes.
    if int(by("MUL")[0]["inputs"][1]) != fire_in["index"] or int(by("MUL")[1]["inputs"][1]) != int(quant["outputs"][0]):
        raise NCAEdgeError("unexpected MUL wiring in the int8 step graph")
    return {
        "state": tuple(state_in["quantization"]),
        "alive_const": (int(np.asarray(it.get_tensor(const)).reshape(-1)[0]),) + qp(const),
        "alive_q": qp(quant["outputs"][0]),
        "fire": tuple(fire_in["quantization"]),
        "convs": convs,
        "muls": muls,
        "add": qp(add["outputs"][0]),
        "binary": acts or None,
    }
