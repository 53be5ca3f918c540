"""The baseline int8 CNN classifier, as TFLite's reference integer kernels compute it (numpy only).

The conventional alternative to the CA on a microcontroller (``nca-edge robustness``,
``nca-edge compare``): a few 3x3 convolutions with stride 2 and no padding (VALID), each with a
fused ReLU, then one fully connected layer to the class logits. Its ``tflite-int8`` file
(``export.cnn_export``) holds CONV_2D, RESHAPE and FULLY_CONNECTED on int8 tensors::

    x0      = quantize(grey / 255)                          # the host's input encoding (pixel_lut)
    x_{l+1} = conv(x_l; conv_l)   3x3, stride 2, VALID      # acc = bias + sum w * (x - Zin)
    logits  = fc(flatten(x_L))    (H, W, C) order           # the same arithmetic, one output per class
    class   = argmax(logits)      ties: the lowest index

with each layer's requantization ``clamp(mbqm(acc, M[o], shift[o]) + Zout, act_min, act_max)``
(``firmware_sim.int8.Conv``; ``act_min`` = max(-128, Zout) for a fused ReLU). A per-channel fc
layer rescales with TFLite's int64 ``mbqm`` instead (one rounding; ``fixedpoint``), as its
reference kernel does.

``derive`` computes the integers from the file's scales as TFLite's ``Prepare`` does:
per-channel convolutions take ``M[o] = double(S_in) * double(S_w[o]) / double(S_out)``;
a per-tensor fully connected layer multiplies the two input scales in float32 first
(``GetQuantizedConvolutionMultipler``: ``double(S_in * S_w) / double(S_out)``).

``forward`` takes ``faults``: a function ``(layer index, int8 activations) -> int8
activations`` applied to the input (index 0) and every layer's output, to model upsets in the
activation memory (``firmware_sim.faults``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixedpoint import multiply_by_quantized_multiplier as mbqm
from .fixedpoint import multiply_by_quantized_multiplier_int64 as mbqm64
from .fixedpoint import quantize_multiplier
from .int8 import Conv, _pixel_lut, int_matmul


@dataclass(frozen=True)
class Int8CNN:
    """Every integer of the int8 CNN: convs (OHWI kernels, 3x3, stride 2, VALID) then the fc
    layer (a Conv with kernel [classes, 1, 1, H*W*C])."""

    input_zero: int
    pixel_lut: np.ndarray  # int8 [256]: the input for a grey level 0..255
    convs: tuple[Conv, ...]
    fc: Conv
    fc_per_channel: bool  # how the fc layer rescales (see ``fc``)
    stride: int = 2

    @property
    def n_classes(self) -> int:
        return int(self.fc.weight.shape[0])

    def layers(self) -> tuple[Conv, ...]:
        return (*self.convs, self.fc)


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
    return _requantize(acc, c, single_rounding=False).reshape(b, oh, ow, o)


def fc(x: np.ndarray, c: Conv, per_channel: bool) -> np.ndarray:
    """int8 [B, K] -> int8 [B, classes]: FULLY_CONNECTED. Per-channel, TFLite's reference kernel
    rescales with the int64 MultiplyByQuantizedMultiplier (one rounding, 16-bit multiplier);
    per-tensor, with the int32 one (two roundings), as a convolution does."""
    acc = int_matmul(x.astype(np.int32) - np.int32(c.input_zero), c.weight.reshape(c.weight.shape[0], -1).T)
    return _requantize(acc + c.bias.astype(np.int64), c, single_rounding=per_channel)


def _requantize(acc: np.ndarray, c: Conv, single_rounding: bool) -> np.ndarray:
    scaled = (mbqm64 if single_rounding else mbqm)(acc, c.multiplier, c.shift)
    return np.clip(scaled + c.output_zero, c.act_min, c.act_max).astype(np.int8)


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
    flat = x.reshape(len(x), -1)  # RESHAPE: (H, W, C) order, quantization unchanged
    if flat.shape[-1] != params.fc.weight.shape[-1]:
        raise ValueError(f"the fc layer takes {params.fc.weight.shape[-1]} inputs, the convolutions gave "
                         f"{flat.shape[-1]}: the CNN runs on the grid it was trained on only")
    return hook(len(params.convs) + 1, fc(flat, params.fc, params.fc_per_channel))


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
    return total + int(params.fc.weight.size)


def derive(q: dict) -> Int8CNN:
    """Integer parameters from the file's quantization (offline, once per model).

    ``q``: ``input`` (scale, zero); ``convs``: list of {weight int8 OHWI, weight_scales [O],
    bias int32 [O], output (scale, zero), relu}; ``fc``: the same, weight [classes, K]."""
    f32 = lambda v: float(np.float32(v))  # noqa: E731
    s_in, z_in = f32(q["input"][0]), int(q["input"][1])
    convs, scale, zero = [], s_in, z_in
    for c in q["convs"]:
        ws = np.asarray(c["weight_scales"], np.float32)
        mult = [quantize_multiplier(scale * float(s) / f32(c["output"][0])) for s in ws]
        convs.append(_layer(c, mult, zero, relu=bool(c["relu"])))
        scale, zero = f32(c["output"][0]), int(c["output"][1])
    fcq = q["fc"]
    ws = np.asarray(fcq["weight_scales"], np.float32)
    if len(ws) == 1:  # per-tensor: float32 product first, as GetQuantizedConvolutionMultipler
        mult = [quantize_multiplier(float(np.float32(scale) * ws[0]) / f32(fcq["output"][0]))]
    else:
        mult = [quantize_multiplier(scale * float(s) / f32(fcq["output"][0])) for s in ws]
    w = np.asarray(fcq["weight"], np.int8)
    fc_layer = _layer({**fcq, "weight": w.reshape(w.shape[0], 1, 1, -1)}, mult, zero, relu=bool(fcq["relu"]))
    return Int8CNN(input_zero=z_in, pixel_lut=_pixel_lut(s_in, z_in), convs=tuple(convs), fc=fc_layer,
                   fc_per_channel=len(ws) > 1)


def _layer(c: dict, mult: list, in_zero: int, relu: bool) -> Conv:
    w = np.asarray(c["weight"], np.int8)
    m, sh = zip(*mult)
    o = w.shape[0]
    z_out = int(c["output"][1])
    return Conv(weight=w, bias=np.asarray(c["bias"], np.int32),
                multiplier=np.broadcast_to(np.array(m, np.int32), (o,)).copy(),
                shift=np.broadcast_to(np.array(sh, np.int32), (o,)).copy(), input_zero=in_zero,
                output_zero=z_out, act_min=max(-128, z_out) if relu else -128, act_max=127)
