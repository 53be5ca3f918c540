"""TFLite exports of one CA step, through the Larq/Keras mirror (``nca_edge.larq_mirror``).

``tflite-int8`` (full integer): the same graph converted with a representative dataset of
real CA trajectories (``export.calibrate``); int8 state in and out with one shared scale
and zero point (the converter gives the concatenated next state the input's parameters), so
the host loop stays in integers. The converter's graph is then made integer-only
(``export.integer_only``: its comparison chains become saturating step convolutions), so the
file holds int8 and int32 tensors only, in STRIDED_SLICE, CONV_2D (per-channel), MUL, ADD and
CONCATENATION: what ``firmware_sim`` models, TFLite Micro runs and vela puts on an Ethos-U NPU.

Binary activations (ban, bnn) are not converted from the Larq mirror (its ``ste_sign`` has no
integer kernel) but from ``int8_keras_step``: plain convolutions with the model's effective
kernels (binary ones as +-alpha_o, stored exactly as +-127 per channel) and each binary
activation written as the 0/1 step ``[x >= 0]`` (``[x > 0]`` for heaviside), which the converter
turns into GREATER_EQUAL -> CAST -> QUANTIZE (an exact {0, 1} int8 tensor: scale 1/255, zero
point -128), which ``export.integer_only`` then replaces by the conv itself, saturating. sign(x) = 2 [x >= 0] - 1 is folded into the next layer: W . sign(x) + b =
(2W) . [x >= 0] + (b - sum W). The training's fixed-point state (``state_frac_bits``) is not
imposed: the int8 state takes the calibrated scale, as for every variant.

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

from nca_edge.errors import NCAEdgeError
from nca_edge.model import CAModel


def keras_step(model: CAModel, height: int, width: int, batch: int):
    from nca_edge import larq_mirror as lm

    km = lm.build_step_model(model.cfg, height, width, batch=batch)
    lm.load_torch_weights(km, model)
    return km


def int8_step_weights(model: CAModel) -> tuple[list, list]:
    """The kernels and biases (torch, OIHW) the int8 step holds: the model's effective kernels, with
    sign folded into the 0/1 step for binary activations: W . sign(x) + b = (2W) . [x >= 0] + (b - sum W)
    for the two layers after a sign activation. The one place this fold is written (the converter
    input here, the fake-quant model in export.fakequant)."""
    kernels = [k.detach().float().cpu() for k in model.kernels()]
    biases = [c.bias.detach().float().cpu() for c in model.convs()]
    if model.cfg.binary_activations and model.cfg.binary_act == "sign":
        for i in (1, 2):
            biases[i] = biases[i] - kernels[i].sum(dim=(1, 2, 3))
            kernels[i] = 2.0 * kernels[i]
    return kernels, biases


def int8_keras_step(model: CAModel, height: int, width: int, batch: int):
    """The step for integer conversion of a binary-activation model (module docstring)."""
    import numpy as np

    from nca_edge import larq_mirror as lm

    cfg = model.cfg
    if cfg.binary_input:
        raise NCAEdgeError("binary_input models have no int8 step yet; use --format tflite, onnx or lce")
    tf, _ = lm._tf()
    keras = tf.keras
    strict = cfg.binary_act == "heaviside"
    kernels, biases = int8_step_weights(model)
    state = keras.Input((height, width, cfg.channels), batch_size=batch, name="state")
    fire = keras.Input((height, width, 1), batch_size=batch, name="fire")
    x = keras.layers.ZeroPadding2D(1, name="pad")(state)
    layers = []
    for i, name in enumerate(("perceive", "update1", "update2")):
        if i:  # a binary activation: the 0/1 step of the previous pre-activation
            fn = (lambda t: tf.cast(t > 0, tf.float32)) if strict else (lambda t: tf.cast(t >= 0, tf.float32))
            x = keras.layers.Lambda(fn, name=f"{name}_input")(x)
        conv = keras.layers.Conv2D(kernels[i].shape[0], kernels[i].shape[2], name=name)
        x = conv(x)
        layers.append(conv)
    _, CAUpdate, _ = lm._layers()
    nxt = CAUpdate(cfg.alive_threshold, None, name="ca_update")([state, x, fire])
    km = keras.Model([state, fire], nxt, name=f"nca_step_{cfg.quant}_int8")
    for conv, w, b in zip(layers, kernels, biases):
        conv.set_weights([np.transpose(w.numpy(), (2, 3, 1, 0)), b.numpy()])
    return km


def tflite_float_bytes(model: CAModel, height: int = 28, width: int = 28, batch: int = 1) -> bytes:
    from nca_edge.larq_mirror import _tf

    tf, _ = _tf()
    km = keras_step(model, height, width, batch)
    converter = tf.lite.TFLiteConverter.from_keras_model(km)
    return _quiet(converter.convert)


def tflite_int8_bytes(model: CAModel, samples, height: int = 28, width: int = 28, batch: int = 1) -> bytes:
    """Full-integer int8 step: int8 state in and out (one scale and zero point, shared), int8 fire.

    ``samples``: calibration (state, fire) pairs from ``export.calibrate.trajectory_samples``.
    Kernels are int8 per output channel (scale max|W[o]| / 127), so a binary kernel +-alpha_o
    is stored exactly as +-127 with scale alpha_o / 127; biases int32.
    """
    from .calibrate import calibration_batches

    if model.cfg.binary_activations:
        km = int8_keras_step(model, height, width, batch)
    else:
        km = keras_step(model, height, width, batch)

    def representative():
        yield from calibration_batches(samples, batch)

    converted = int8_convert(km, representative)
    from .integer_only import integer_only
    from .packed_export import int8_step_from_tflite
    from .row_bands import row_bands

    data = row_bands(integer_only(converted))
    int8_step_from_tflite(data)  # firmware_sim's derive: raises OverflowError if acc << shift could overflow int32
    return data


def int8_convert(km, representative) -> bytes:
    """TFLite's full-integer conversion of a Keras model: int8 inputs and outputs, int8 builtins only,
    ranges from the ``representative`` generator (what every tflite-int8 export here uses)."""
    import warnings

    from nca_edge.larq_mirror import _tf

    tf, _ = _tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(km)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # "Statistics for quantized inputs were expected": the converter's own
        warnings.simplefilter("ignore", UserWarning)  # calibration covers the inputs
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
