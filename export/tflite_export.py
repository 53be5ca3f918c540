"""TFLite exports of one CA step, through the Larq/Keras mirror (``nca_edge.larq_mirror``).

``tflite`` (float32): the mirror with the PyTorch weights, converted by
``tf.lite.TFLiteConverter``. Fixed shapes: inputs ``state`` [B, H, W, C] and ``fire``
[B, H, W, 1] (float32, 1 = fires), output the next state [B, H, W, C] (NHWC, TFLite's
layout). Batch and grid are fixed at export time (``--batch``, ``--grid``); export another
file for another canvas.

tflite-runtime 2.14 must not share a process with TensorFlow: with ``tensorflow`` imported
first, its interpreter fails on every model with ``ValueError: vector::reserve`` (two copies of
the TFLite/flatbuffers bindings). ``export.runtimes`` therefore runs it in a child process.
"""

from __future__ import annotations

from nca_edge.model import CAModel


def keras_step(model: CAModel, height: int, width: int, batch: int):
    from nca_edge import larq_mirror as lm

    km = lm.build_step_model(model.cfg, height, width, batch=batch)
    lm.load_torch_weights(km, model)
    return km


def tflite_float_bytes(model: CAModel, height: int = 28, width: int = 28, batch: int = 1) -> bytes:
    from nca_edge.larq_mirror import _tf

    tf, _ = _tf()
    km = keras_step(model, height, width, batch)
    converter = tf.lite.TFLiteConverter.from_keras_model(km)
    return _quiet(converter.convert)


def with_record(flatbuffer: bytes, record: bytes) -> bytes:
    """Append the artifact record (``export.artifact``) as a metadata entry named ``nca_edge``."""
    from nca_edge.larq_mirror import _tf

    _tf()
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema_fb
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = fu.read_model_from_bytearray(bytearray(flatbuffer))
    buf = schema_fb.BufferT()
    buf.data = np.frombuffer(record, dtype=np.uint8).copy()
    m.buffers.append(buf)
    md = schema_fb.MetadataT()
    md.name = "nca_edge"
    md.buffer = len(m.buffers) - 1
    m.metadata = (m.metadata or []) + [md]
    return bytes(fu.convert_object_to_bytearray(m))


def _quiet(fn):
    from nca_edge.larq_mirror import quiet_stderr

    with quiet_stderr():
        return fn()
