"""The Larq/Keras mirror of the CA step: the bridge to TFLite and Larq Compute Engine.

`build_step_model(cfg, height, width, batch)` builds one CA step as a Keras model from
`larq.layers.QuantConv2D` layers, NHWC::

    inputs:  state [B, H, W, C] float32, fire [B, H, W, 1] float32 (1 = fires)
    x    = ZeroPadding2D(1)(state)                        # out-of-grid cells are empty
    x    = InputThreshold(x)           (binary_input only: ste_sign(x - t_c))
    pre  = QuantConv2D(P, 3, valid, kernel_quantizer=q_w)(x)
    h    = QuantConv2D(H, 1, input_quantizer=q_a, kernel_quantizer=q_w)(act(pre))
    ds   = QuantConv2D(C-1, 1, input_quantizer=q_a, kernel_quantizer=q_w)(act(h))
    next = concat(state[..., :1], state[..., 1:] + ds * fire * (state[..., :1] > thr))
    next = fixed_point(next)                              (state_frac_bits only, as in training)

with q_w = "magnitude_aware_sign" for binary kernels (bwn, bnn; not the layers named in
``real_weights``) and q_a = "ste_sign" for
binary activations (ban, bnn; then act = identity, since the next layer's input quantizer
binarizes; otherwise act = ReLU). With ``learned_scale`` each conv is a bias-free
``QuantConv2D(kernel_quantizer="ste_sign")`` followed by ``ScaleBias`` (y * alpha_o + b_o). The same semantics as ``nca_edge.model.CAModel``;
`load_torch_weights` copies a PyTorch model's parameters (OIHW -> HWIO).

TensorFlow is imported lazily with ``TF_USE_LEGACY_KERAS=1`` (Larq needs Keras 2, tf-keras).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

import numpy as np

from .config import CAConfig
from .errors import NCAEdgeError


@contextlib.contextmanager
def quiet_stderr():
    """Silence file descriptor 2 (TensorFlow's and TFLite's C++ start-up chatter); errors still raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tf():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with quiet_stderr():
            import larq as lq
            import tensorflow as tf
    except ImportError as e:  # pragma: no cover - the deploy extra is part of the setup
        raise NCAEdgeError(f"the Larq mirror needs tensorflow, tf-keras and larq ({e}); run scripts/setup.sh") from None
    return tf, lq


def build_step_model(cfg: CAConfig, height: int = 28, width: int = 28, batch: int | None = None):
    if cfg.int4:
        raise NCAEdgeError("the Larq mirror has no int4 kernels (int4) yet")
    tf, lq = _tf()
    keras = tf.keras
    c, p, h = cfg.channels, cfg.perception, cfg.hidden
    q_a = ("ste_heaviside" if cfg.binary_act == "heaviside" else "ste_sign") if cfg.binary_activations else None
    act = None if cfg.binary_activations else "relu"
    InputThreshold, CAUpdate, ScaleBias = _layers()

    state = keras.Input((height, width, c), batch_size=batch, name="state")
    fire = keras.Input((height, width, 1), batch_size=batch, name="fire")
    x = keras.layers.ZeroPadding2D(1, name="pad")(state)
    if cfg.binary_input:
        x = InputThreshold(c, name="input_threshold")(x)
    def conv(x, filters, size, name, input_quantizer=None, activation=None):
        binary = cfg.binary_kernel(name)
        q_w = "magnitude_aware_sign" if binary else None
        clip = "weight_clip" if binary else None  # as in training (latent weights in [-1, 1])
        if not (cfg.learned_scale and binary):
            return lq.layers.QuantConv2D(filters, size, padding="valid", input_quantizer=input_quantizer,
                                         kernel_quantizer=q_w, kernel_constraint=clip, activation=activation,
                                         name=name)(x)
        # learned alpha: sign kernel without bias, then alpha_o * y + b_o (exactly alpha*sign(W) conv + b)
        y = lq.layers.QuantConv2D(filters, size, padding="valid", input_quantizer=input_quantizer,
                                  kernel_quantizer="ste_sign", kernel_constraint=clip, use_bias=False,
                                  name=name)(x)
        y = ScaleBias(filters, name=f"{name}_scale_bias")(y)
        return keras.layers.Activation(activation, name=f"{name}_act")(y) if activation else y

    x = conv(x, p, 3, "perceive", activation=act)
    x = conv(x, h, 1, "update1", input_quantizer=q_a, activation=act)
    ds = conv(x, c - 1, 1, "update2", input_quantizer=q_a)
    nxt = CAUpdate(cfg.alive_threshold, cfg.state_frac_bits, name="ca_update")([state, ds, fire])
    return keras.Model([state, fire], nxt, name=f"nca_step_{cfg.quant}")


@functools.lru_cache(maxsize=None)
def _layers():
    tf, lq = _tf()

    class InputThreshold(tf.keras.layers.Layer):
        """ste_sign(x - t_c): binarizes the state with a learned threshold per channel."""

        def __init__(self, channels: int, **kw):
            super().__init__(**kw)
            self.channels = channels

        def build(self, input_shape):
            self.threshold = self.add_weight(name="threshold", shape=(self.channels,), initializer="zeros")

        def call(self, x):
            return lq.quantizers.ste_sign(x - self.threshold)

        def get_config(self):
            return {**super().get_config(), "channels": self.channels}

    class ScaleBias(tf.keras.layers.Layer):
        """y * alpha_o + b_o per output channel (learned binary-kernel scale, then bias)."""

        def __init__(self, channels: int, **kw):
            super().__init__(**kw)
            self.channels = channels

        def build(self, input_shape):
            self.scale = self.add_weight(name="scale", shape=(self.channels,), initializer="ones")
            self.bias = self.add_weight(name="bias", shape=(self.channels,), initializer="zeros")

        def call(self, y):
            return y * self.scale + self.bias

        def get_config(self):
            return {**super().get_config(), "channels": self.channels}

    class CAUpdate(tf.keras.layers.Layer):
        """state' = [pixel, q(state[1:] + ds * fire * (pixel > threshold))], q = identity, or with
        ``frac_bits`` the int8 fixed point clip(round(x * 2^f), -128, 127) / 2^f (round half to even,
        as torch.round; nca_edge.quant.fake_quant_fixed)."""

        def __init__(self, alive_threshold: float, frac_bits: int | None = None, **kw):
            super().__init__(**kw)
            self.alive_threshold = alive_threshold
            self.frac_bits = frac_bits

        def call(self, inputs):
            state, ds, fire = inputs
            pixel = state[..., :1]
            alive = tf.cast(pixel > self.alive_threshold, state.dtype)
            mutable = state[..., 1:] + ds * fire * alive
            if self.frac_bits is not None:
                scale = float(2**self.frac_bits)
                mutable = tf.clip_by_value(tf.round(mutable * scale), -128.0, 127.0) / scale
            return tf.concat([pixel, mutable], axis=-1)

        def get_config(self):
            return {**super().get_config(), "alive_threshold": self.alive_threshold, "frac_bits": self.frac_bits}

    return InputThreshold, CAUpdate, ScaleBias


def load_torch_weights(keras_model, torch_model) -> None:
    """Copy a CAModel's parameters into the mirror (conv kernels OIHW -> HWIO)."""
    sd = {k: v.detach().cpu().numpy() for k, v in torch_model.state_dict().items()}
    if torch_model.cfg.depthwise:  # the mirror's perception is dense: the depthwise kernel, expanded
        sd["perceive.weight"] = torch_model.dense_perceive_weight().detach().cpu().numpy()
    for name in ("perceive", "update1", "update2"):
        kernel = np.transpose(sd[f"{name}.weight"], (2, 3, 1, 0))
        if torch_model.cfg.learned_scale and torch_model.cfg.binary_kernel(name):
            keras_model.get_layer(name).set_weights([kernel])
            keras_model.get_layer(f"{name}_scale_bias").set_weights([sd[f"{name}.scale"], sd[f"{name}.bias"]])
        else:
            keras_model.get_layer(name).set_weights([kernel, sd[f"{name}.bias"]])
    if torch_model.cfg.binary_input:
        keras_model.get_layer("input_threshold").set_weights([sd["input_threshold"]])


def larq_summary(keras_model) -> dict:
    """Larq's own memory accounting (``larq.models.summary``): its text and "Model size" in bytes."""
    import re

    _, lq = _tf()
    lines: list[str] = []
    lq.models.summary(keras_model, print_fn=lambda s, **kw: lines.append(s))
    text = "\n".join(lines)
    m = re.search(r"Model size\s+([\d.]+)\s*(B|KiB|MiB)\b", text)
    size = None if m is None else float(m.group(1)) * {"B": 1, "KiB": 1024, "MiB": 1024**2}[m.group(2)]
    return {"text": text, "model_size_bytes": size}
