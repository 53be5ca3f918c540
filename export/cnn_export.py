"""The baseline CNN (``nca_edge.baseline``) as a full-integer ``tflite-int8`` file, and its
integer parameters for ``firmware_sim.cnn``.

The PyTorch weights go into the same network in Keras (HWIO kernels; the fully connected layer,
which reads the last map in (H, W, C) order, becomes a convolution covering that map), which
TFLite's converter quantizes with a representative set of training images: int8 input (the grey
image, g / 255) and int8 logits, per-channel int8 kernels, int32 biases. Only CONV_2D and
RESHAPE: no FULLY_CONNECTED, whose int8 rescaling differs between TFLite's reference kernels
(double precision) and TFLite Micro (fixed point). ``quantization`` reads the file back into the
dict ``firmware_sim.cnn.derive`` takes.
"""

from __future__ import annotations

import numpy as np

from nca_edge.baseline import CNN, GRID
from nca_edge.errors import NCAEdgeError


def keras_cnn(model: CNN):
    from nca_edge.larq_mirror import _tf

    tf, _ = _tf()
    keras = tf.keras
    x = inp = keras.Input((GRID, GRID, 1), batch_size=1, name="image")
    convs = []
    for i, c in enumerate(model.convs):
        layer = keras.layers.Conv2D(c.out_channels, 3, strides=2, padding="valid", activation="relu", name=f"conv{i + 1}")
        x = layer(x)
        convs.append((layer, c))
    g = model.cfg.feature_grid()
    head = keras.layers.Conv2D(model.cfg.n_classes, g, padding="valid", name="head")
    km = keras.Model(inp, keras.layers.Flatten(name="logits")(head(x)), name="cnn_baseline")
    for layer, c in convs:
        layer.set_weights([np.transpose(c.weight.detach().numpy(), (2, 3, 1, 0)), c.bias.detach().numpy()])
    w = model.fc.weight.detach().numpy().reshape(model.cfg.n_classes, g, g, -1)  # (H, W, C) order: OHWI
    head.set_weights([np.transpose(w, (1, 2, 3, 0)), model.fc.bias.detach().numpy()])
    return km


def tflite_int8_bytes(model: CNN, calibration: np.ndarray) -> bytes:
    """``calibration``: uint8 training images [N, 28, 28] for the converter's ranges."""
    from .tflite_export import int8_convert

    km = keras_cnn(model)

    def representative():
        for g in calibration:
            yield [(np.asarray(g, np.float32) / np.float32(255.0))[None, :, :, None]]

    return int8_convert(km, representative)


def interpreter(data: bytes):
    from ai_edge_litert.interpreter import Interpreter

    from nca_edge.larq_mirror import quiet_stderr

    with quiet_stderr():
        it = Interpreter(model_content=data, experimental_op_resolver_type=_reference())
        it.allocate_tensors()
    return it


def _reference():
    from ai_edge_litert.interpreter import OpResolverType

    return OpResolverType.BUILTIN_REF


def quantization(it) -> dict:
    """The dict for ``firmware_sim.cnn.derive`` from an allocated interpreter of the file."""
    from .int8_graph import conv_quantization

    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = [o for o in it._get_ops_details() if o["op_name"] != "DELEGATE"]
    names = [o["op_name"] for o in ops]
    if names[-1:] != ["RESHAPE"] or set(names[:-1]) != {"CONV_2D"}:
        raise NCAEdgeError(f"not the baseline CNN graph nca-edge exports (ops {names})")

    convs = [o for o in ops if o["op_name"] == "CONV_2D"]
    return {"input": tuple(it.get_input_details()[0]["quantization"]),
            "convs": [conv_quantization(it, tensors, o, relu=i < len(convs) - 1) for i, o in enumerate(convs)]}


def run_tflite(it, grey: np.ndarray) -> np.ndarray:
    """int8 logits [B, classes] from the TFLite interpreter (one image per invoke)."""
    from firmware_sim.int8 import _pixel_lut

    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    lut = _pixel_lut(*(float(np.float32(v)) if i == 0 else int(v) for i, v in enumerate(inp["quantization"])))
    res = []
    for g in grey:
        it.set_tensor(inp["index"], lut[g][None, :, :, None])
        it.invoke()
        res.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(res)
