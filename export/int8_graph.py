"""Read the int8 step's quantization out of a ``tflite-int8`` file, for ``firmware_sim.int8``.

The converter produces one graph (``export.tflite_export.tflite_int8_bytes``)::

    STRIDED_SLICE(state) -> pixel;  GREATER(pixel, const) -> CAST -> QUANTIZE -> alive_q
    STRIDED_SLICE(state) -> mutable
    CONV_2D(state) -> CONV_2D -> CONV_2D -> ds
    MUL(ds, fire) -> MUL(., alive_q) -> ADD(mutable, .) -> CONCATENATION(pixel, .) -> state'

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


def quantization(it, relu: tuple[bool, bool, bool] = (True, True, False)) -> dict:
    """The dict for ``firmware_sim.int8.derive`` from an allocated interpreter ``it``.

    ``relu``: whether each convolution has a fused ReLU (the step's activations: float and bwn
    have ReLU after the first two).
    """
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = [o for o in it._get_ops_details() if o["op_name"] != "DELEGATE"]  # XNNPACK adds DELEGATE nodes
    names = [o["op_name"] for o in ops]
    if sorted(names) != sorted(EXPECTED):
        raise NCAEdgeError(f"not the int8 step graph nca-edge exports (ops {names})")

    def qp(i: int) -> tuple[float, int]:
        p = tensors[int(i)]["quantization_parameters"]
        if len(p["scales"]) != 1:
            raise NCAEdgeError(f"tensor {tensors[int(i)]['name']} is not per-tensor quantized")
        return float(p["scales"][0]), int(p["zero_points"][0])

    by = lambda name: [o for o in ops if o["op_name"] == name]  # noqa: E731
    state_in = next(d for d in it.get_input_details() if "state" in d["name"])
    fire_in = next(d for d in it.get_input_details() if "fire" in d["name"])
    (greater,), (quant,) = by("GREATER"), by("QUANTIZE")
    const = int(greater["inputs"][1])
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
    }
