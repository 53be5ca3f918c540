"""``lce``: the Larq mirror's step converted by Larq Compute Engine (bitpacked binary layers).

``larq_compute_engine.convert_keras_model`` turns the mirror's ``QuantConv2D`` layers with binary
inputs into LCE ops: ``LceQuantize`` bitpacks an activation (32-bit words along channels, LSB
first, bit 1 = -1), and a layer whose kernel is binary too becomes ``LceBconv2d`` (XNOR/popcount,
float output). Real-kernel layers stay TFLite ``CONV_2D`` on the dequantized (+-1) values.
Inputs and output are float32 NHWC like ``tflite``. It runs only in LCE's interpreter
(``larq_compute_engine.tflite.python.interpreter``): stock TFLite runtimes do not know the ops.
"""

from __future__ import annotations

from nca_edge.model import CAModel


def lce_bytes(model: CAModel, height: int = 28, width: int = 28, batch: int = 1) -> bytes:
    from nca_edge.larq_mirror import _tf, quiet_stderr

    _tf()  # TensorFlow + Larq with the legacy Keras they need, before LCE imports Larq
    import larq_compute_engine as lce

    from .tflite_export import keras_step

    km = keras_step(model, height, width, batch)
    with quiet_stderr():
        return lce.convert_keras_model(km)
