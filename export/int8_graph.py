"""Read the int8 step's quantization out of a ``tflite-int8`` file, for ``firmware_sim.int8``.

The exporter writes one integer-only graph (``export.tflite_export.tflite_int8_bytes``, then
``export.integer_only``)::

    STRIDED_SLICE(state) -> pixel;  CONV_2D 1x1 (pixel) -> alive   (a saturating step conv)
    CONV_2D(state) -> CONV_2D -> CONV_2D -> ds                       (ban, bnn: the first two are
                                                                      saturating step convs)
    STRIDED_SLICE(state) -> mutable
    MUL(ds, fire) -> MUL(., alive) -> ADD(mutable, .) -> CONCATENATION(pixel, .) -> state'

with the three layers run in row bands (``export.row_bands``: per band STRIDED_SLICE -> PAD ->
the three CONV_2D sharing the kernels, then one CONCATENATION into ds).

``quantization(interpreter)`` walks it and returns the dict ``firmware_sim.int8.derive`` takes:
every tensor's scale and zero point, the int8 kernels (OHWI) with per-channel scales and the
int32 biases. Works with any TFLite interpreter object (tflite-runtime, ai-edge-litert,
TensorFlow, TFLite Micro's is not one: it reads the same file); imports none of them.
"""

from __future__ import annotations

import numpy as np

from nca_edge.errors import NCAEdgeError

OPS = {"STRIDED_SLICE", "PAD", "CONV_2D", "CONCATENATION", "MUL", "ADD"}


def step_ops(it) -> dict:
    """The step's ops by role: ``alive`` (the 1x1 conv of the pixel), ``layers`` (one op per layer,
    conv1..conv3: with row bands, band 0's; every band shares its kernels and quantization),
    ``ds`` (the tensor conv3 writes: its op's output, or the CONCATENATION of the bands'),
    ``muls`` (2), ``add``."""
    ops = [o for o in it._get_ops_details() if o["op_name"] != "DELEGATE"]  # XNNPACK adds DELEGATE nodes
    names = [o["op_name"] for o in ops]
    if not set(names) <= OPS or names.count("MUL") != 2 or names.count("ADD") != 1:
        raise NCAEdgeError(f"not the integer-only int8 step graph nca-edge exports (ops {sorted(set(names))}); "
                           "a file from an older nca-edge: export it again")
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    convs = [o for o in ops if o["op_name"] == "CONV_2D"]
    alive = [o for o in convs if int(tensors[int(o["inputs"][0])]["shape"][-1]) == 1]
    groups: dict[int, list] = {}
    for o in convs:
        if not any(o is a for a in alive):
            groups.setdefault(int(o["inputs"][1]), []).append(o)  # by kernel tensor
    if len(alive) != 1 or len(groups) != 3:
        raise NCAEdgeError("not the integer-only int8 step graph nca-edge exports (its convolutions)")
    outputs = {k: {int(o["outputs"][0]) for o in g} for k, g in groups.items()}
    fed = {k: next((j for j in groups if int(g[0]["inputs"][0]) in outputs[j]), None) for k, g in groups.items()}
    try:
        (first,) = [k for k in groups if fed[k] is None]
        order = [first]
        for _ in range(2):
            (nxt,) = [k for k in groups if fed[k] == order[-1]]
            order.append(nxt)
        last = outputs[order[-1]]
        if len(last) == 1:
            (ds,) = last
        else:
            (cat,) = [o for o in ops if o["op_name"] == "CONCATENATION" and {int(i) for i in o["inputs"]} == last]
            ds = int(cat["outputs"][0])
    except ValueError:
        raise NCAEdgeError("not the integer-only int8 step graph nca-edge exports (its layer wiring)") from None
    return {"alive": alive[0], "layers": [groups[k][0] for k in order], "ds": ds,
            "muls": [o for o in ops if o["op_name"] == "MUL"], "add": next(o for o in ops if o["op_name"] == "ADD")}


def tensor_qp(tensors: dict, i) -> tuple[float, int]:
    """(scale, zero point) of a per-tensor quantized tensor; ``tensors``: index -> tensor details."""
    p = tensors[int(i)]["quantization_parameters"]
    if len(p["scales"]) != 1:
        raise NCAEdgeError(f"tensor {tensors[int(i)]['name']} is not per-tensor quantized")
    return float(p["scales"][0]), int(p["zero_points"][0])


def conv_quantization(it, tensors: dict, op, relu: bool) -> dict:
    """A CONV_2D's int8 kernel (OHWI), per-channel kernel scales, int32 bias and output (scale, zero
    point), as ``firmware_sim.int8.derive`` and ``firmware_sim.cnn.derive`` take them."""
    w_i, b_i = int(op["inputs"][1]), int(op["inputs"][2])
    ws = tensors[w_i]["quantization_parameters"]
    if np.any(ws["zero_points"] != 0):
        raise NCAEdgeError("kernel zero points must be 0 (symmetric int8)")
    return {"weight": it.get_tensor(w_i).astype(np.int8), "weight_scales": np.asarray(ws["scales"], np.float32),
            "bias": it.get_tensor(b_i).astype(np.int32), "output": tensor_qp(tensors, op["outputs"][0]), "relu": relu}


def quantization(it) -> dict:
    """The dict for ``firmware_sim.int8.derive`` from an allocated interpreter ``it``.

    The first two layer convolutions carry a fused ReLU (float, bwn) or are step convs (ban,
    bnn: ``firmware_sim.int8.is_step`` tells them apart from their parameters)."""
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    roles = step_ops(it)

    qp = lambda i: tensor_qp(tensors, i)  # noqa: E731
    conv_dict = lambda op, relu: conv_quantization(it, tensors, op, relu)  # noqa: E731

    state_in = next(d for d in it.get_input_details() if "state" in d["name"])
    fire_in = next(d for d in it.get_input_details() if "fire" in d["name"])
    alive, chain, muls, add = roles["alive"], roles["layers"], roles["muls"], roles["add"]
    if (int(muls[0]["inputs"][0]) != roles["ds"] or int(muls[0]["inputs"][1]) != fire_in["index"]
            or int(muls[1]["inputs"][1]) != int(alive["outputs"][0])):
        raise NCAEdgeError("unexpected MUL wiring in the int8 step graph")
    if qp(roles["ds"]) != qp(chain[2]["outputs"][0]):
        raise NCAEdgeError("the row bands' concatenation must keep conv3's quantization")
    return {
        "state": tuple(state_in["quantization"]),
        "alive": conv_dict(alive, relu=False),
        "fire": tuple(fire_in["quantization"]),
        "convs": [conv_dict(op, relu=i < 2) for i, op in enumerate(chain)],
        "muls": [qp(o["outputs"][0]) for o in muls],
        "add": qp(add["outputs"][0]),
    }
