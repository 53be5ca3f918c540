"""The baseline int8 CNN classifier, as TFLite's reference integer kernels compute it (numpy only).

The conventional alternative to the CA on a microcontroller (``nca-edge robustness``,
``nca-edge compare``): a few 3x3 convolutions with stride 2 and no padding (VALID), each with a
fused ReLU, then the classifier head: one convolution whose kernel covers the whole last feature
map (a fully connected layer written as CONV_2D, so that every layer has the convolution's
integer semantics, the same in TFLite's reference kernels and in TFLite Micro). Its
``tflite-int8`` file (``export.cnn_export``) holds CONV_2D and RESHAPE on int8 tensors::

    x0      = quantize(grey / 255)                         # the host's input encoding (pixel_lut)
    x_{l+1} = conv(x_l; conv_l)   3x3, stride 2, VALID     # acc = bias + sum w * (x - Zin)
    logits  = conv(x_L; head)     G x G, VALID -> 1 x 1    # G = the last map's size
    class   = argmax(logits)      ties: the lowest index

with each layer's requantization ``clamp(mbqm(acc, M[o], shift[o]) + Zout, act_min, act_max)``
(``firmware_sim.int8.Conv``; ``act_min`` = max(-128, Zout) for a fused ReLU, -128 for the head).

``derive`` computes the integers from the file's scales as TFLite's ``Prepare`` does for a
per-channel convolution: ``M[o] = double(S_in) * double(S_w[o]) / double(S_out)``.

``forward`` takes ``faults``: a function ``(layer index, int8 activations) -> int8
activations`` applied to the input (index 0) and every layer's output, to model upsets in the
activation memory (``firmware_sim.faults``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixedpoint import multiply_by_quantized_multiplier as mbqm
from .fixedpoint import quantize_multiplier
from .int8 import Conv, _pixel_lut, int_matmul


@dataclass(frozen=True)
class Int8CNN:
    """Every integer of the int8 CNN: convs (OHWI kernels, 3x3, stride 2, VALID), then the head
    (kernel [classes, G, G, C] over the last G x G map)."""

    input_zero: int
    pixel_lut: np.ndarray  # int8 [256]: the input for a grey level 0..255
    convs: tuple[Conv, ...]
    head: Conv
    stride: int = 2

    @property
    def n_classes(self) -> int:
        return int(self.head.weight.shape[0])

    def layers(self) -> tuple[Conv, ...]:
        return (*self.convs, self.head)


def conv(x: np.ndarray, c: Conv, stride: int) -> np.ndarray:
    """int8 NHWC [B, H, W, I] -> int8 [B, H', W', O]: 3x3 (kernel size from c), VALID, stride."""
    b, h, w, cin = x.shape
    o, kh, kw, _ = c.weight.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"a {h}x{w} input is too small for a {kh}x{kw} stride-{stride} convolution")
    xi = x.astype(np.int32) - np.int32(c.input_zero)
    cols = [xi[:, dy: dy + stride * (oh - 1) + 1: stride, dx: dx + stride * (ow - 1) + 1: stride]
            for dy in range(kh) for dx in range(kw)]  # (dy, dx, channel): TFLite's OHWI order
    patches = np.concatenate(cols, axis=-1).reshape(b * oh * ow, kh * kw * cin)
    acc = int_matmul(patches, c.weight.reshape(o, -1).T) + c.bias.astype(np.int64)
    y = np.clip(mbqm(acc, c.multiplier, c.shift) + c.output_zero, c.act_min, c.act_max)
    return y.astype(np.int8).reshape(b, oh, ow, o)


def forward(params: Int8CNN, grey: np.ndarray, faults=None) -> np.ndarray:
    """Logits int8 [B, classes] for uint8 images [B, H, W] (H = W = the trained 28)."""
    grey = np.asarray(grey)
    if grey.dtype != np.uint8 or grey.ndim != 3:
        raise ValueError("grey images must be uint8 [B, H, W]")
    x = params.pixel_lut[grey][..., None]
    hook = faults or (lambda i, a: a)
    x = hook(0, x)
    for i, c in enumerate(params.convs):
        x = hook(i + 1, conv(x, c, params.stride))
    if x.shape[1:3] != params.head.weight.shape[1:3]:
        raise ValueError(f"the head covers a {params.head.weight.shape[1]}x{params.head.weight.shape[2]} map, the "
                         f"convolutions gave {x.shape[1]}x{x.shape[2]}: the CNN runs on the grid it was trained on only")
    return hook(len(params.convs) + 1, conv(x, params.head, 1)).reshape(len(x), -1)  # RESHAPE


def classify(params: Int8CNN, grey: np.ndarray, faults=None, batch: int = 500) -> np.ndarray:
    """Predicted classes [B] (argmax of the int8 logits, ties to the lowest index)."""
    out = [np.argmax(forward(params, grey[i: i + batch], faults), axis=1) for i in range(0, len(grey), batch)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def macs(params: Int8CNN, height: int = 28, width: int = 28) -> int:
    """Multiply-accumulates of one classification."""
    total, h, w = 0, height, width
    for c in params.convs:
        o, kh, kw, cin = c.weight.shape
        h, w = (h - kh) // params.stride + 1, (w - kw) // params.stride + 1
        total += h * w * o * kh * kw * cin
    return total + int(params.head.weight.size)


def derive(q: dict) -> Int8CNN:
    """Integer parameters from the file's quantization (offline, once per model).

    ``q``: ``input`` (scale, zero); ``convs``: the layers in order, the head last, each
    {weight int8 OHWI, weight_scales [O], bias int32 [O], output (scale, zero), relu}."""
    f32 = lambda v: float(np.float32(v))  # noqa: E731
    s_in, z_in = f32(q["input"][0]), int(q["input"][1])
    layers, scale, zero = [], s_in, z_in
    for c in q["convs"]:
        ws = np.asarray(c["weight_scales"], np.float32)
        s_out, z_out = f32(c["output"][0]), int(c["output"][1])
        m, sh = zip(*(quantize_multiplier(scale * float(s) / s_out) for s in ws))
        layers.append(Conv(weight=np.asarray(c["weight"], np.int8), bias=np.asarray(c["bias"], np.int32),
                           multiplier=np.array(m, np.int32), shift=np.array(sh, np.int32), input_zero=zero,
                           output_zero=z_out, act_min=max(-128, z_out) if c["relu"] else -128, act_max=127))
        scale, zero = s_out, z_out
    return Int8CNN(input_zero=z_in, pixel_lut=_pixel_lut(s_in, z_in), convs=tuple(layers[:-1]), head=layers[-1])
