"""Read the int8 step's quantization out of a ``tflite-int8`` file, for ``firmware_sim.int8``.

The exporter writes one integer-only graph (``export.tflite_export.tflite_int8_bytes``, then
``export.integer_only``)::

    STRIDED_SLICE(state) -> pixel;  CONV_2D 1x1 (pixel) -> alive   (a saturating step conv)
    STRIDED_SLICE(state) -> mutable
    CONV_2D(state) -> CONV_2D -> CONV_2D -> ds                       (ban, bnn: the first two are
                                                                      saturating step convs)
    MUL(ds, fire) -> MUL(., alive) -> ADD(mutable, .) -> CONCATENATION(pixel, .) -> state'

``quantization(interpreter)`` walks it and returns the dict ``firmware_sim.int8.derive`` takes:
every tensor's scale and zero point, the int8 kernels (OHWI) with per-channel scales and the
int32 biases. Works with any TFLite interpreter object (tflite-runtime, ai-edge-litert,
TensorFlow, TFLite Micro's is not one: it reads the same file); imports none of them.
"""

from __future__ import annotations

import numpy as np

from nca_edge.errors import NCAEdgeError

EXPECTED = ["STRIDED_SLICE", "STRIDED_SLICE", "CONV_2D", "CONV_2D", "CONV_2D", "CONV_2D", "MUL", "MUL", "ADD",
            "CONCATENATION"]


def quantization(it) -> dict:
    """The dict for ``firmware_sim.int8.derive`` from an allocated interpreter ``it``.

    The first two layer convolutions carry a fused ReLU (float, bwn) or are step convs (ban,
    bnn: ``firmware_sim.int8.is_step`` tells them apart from their parameters)."""
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = [o for o in it._get_ops_details() if o["op_name"] != "DELEGATE"]  # XNNPACK adds DELEGATE nodes
    names = [o["op_name"] for o in ops]
    if sorted(names) != sorted(EXPECTED):
        raise NCAEdgeError(f"not the integer-only int8 step graph nca-edge exports (ops {names}); "
                           "a file from an older nca-edge: export it again")

    def qp(i: int) -> tuple[float, int]:
        p = tensors[int(i)]["quantization_parameters"]
        if len(p["scales"]) != 1:
            raise NCAEdgeError(f"tensor {tensors[int(i)]['name']} is not per-tensor quantized")
        return float(p["scales"][0]), int(p["zero_points"][0])

    def conv_dict(op, relu: bool) -> dict:
        w_i, b_i = int(op["inputs"][1]), int(op["inputs"][2])
        ws = tensors[w_i]["quantization_parameters"]
        if np.any(ws["zero_points"] != 0):
            raise NCAEdgeError("kernel zero points must be 0 (symmetric int8)")
        return {"weight": it.get_tensor(w_i).astype(np.int8), "weight_scales": np.asarray(ws["scales"], np.float32),
                "bias": it.get_tensor(b_i).astype(np.int32), "output": qp(op["outputs"][0]), "relu": relu}

    by = lambda name: [o for o in ops if o["op_name"] == name]  # noqa: E731
    state_in = next(d for d in it.get_input_details() if "state" in d["name"])
    fire_in = next(d for d in it.get_input_details() if "fire" in d["name"])
    slices = {int(o["outputs"][0]) for o in by("STRIDED_SLICE")}
    (alive,) = [o for o in by("CONV_2D") if int(o["inputs"][0]) in slices]
    chain, x = [], state_in["index"]
    for _ in range(3):  # the layer convs, in order from the state
        (op,) = [o for o in by("CONV_2D") if int(o["inputs"][0]) == int(x)]
        chain.append(op)
        x = op["outputs"][0]
    muls = by("MUL")
    if (int(muls[0]["inputs"][0]) != int(x) or int(muls[0]["inputs"][1]) != fire_in["index"]
            or int(muls[1]["inputs"][1]) != int(alive["outputs"][0])):
        raise NCAEdgeError("unexpected MUL wiring in the int8 step graph")
    (add,) = by("ADD")
    return {
        "state": tuple(state_in["quantization"]),
        "alive": conv_dict(alive, relu=False),
        "fire": tuple(fire_in["quantization"]),
        "convs": [conv_dict(op, relu=i < 2) for i, op in enumerate(chain)],
        "muls": [qp(o["outputs"][0]) for o in muls],
        "add": qp(add["outputs"][0]),
    }
