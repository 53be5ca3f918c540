"""One CA step as a frozen, inference-only PyTorch module: the graph the ONNX exporters trace.

The step is ``nca_edge.ca.ca_step`` in the dense layout with every trained choice frozen into
constants: binary kernels are baked as their values ``+-alpha_o`` (so a runtime never sees
latent weights), binary activations are written with ``>=`` / ``>`` comparisons (ONNX
``Sign(0) = 0`` would differ from training's ``sign(0) = +1``)::

    inputs   state [B, C, H, W] float32 (channel 0 = the grey pixel), fire [B, 1, H, W] (1 = fires)
    x      = pad(state, 1)                                  # out-of-grid neighbours are empty
    x      = where(x - t >= 0, 1, -1)                        # binary_input only
    p      = act(conv3x3(x; W1) + b1)
    h      = act(conv1x1(p; W2) + b2)
    ds     = conv1x1(h; W3) + b3
    upd    = fire * (state[:, :1] > alive_threshold)
    output = concat(state[:, :1], state[:, 1:] + ds * upd)  # (fixed-point rounding if the
                                                             #  variant has an int8 state)

act = ReLU (float, bwn), where(x >= 0, 1, -1) (sign) or where(x > 0, 1, 0) (heaviside).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nca_edge.ca import quantize_state
from nca_edge.config import CAConfig
from nca_edge.model import CAModel


class FrozenStep(nn.Module):
    def __init__(self, model: CAModel):
        super().__init__()
        self.cfg: CAConfig = model.cfg
        with torch.no_grad():
            w1, w2, w3 = (w.detach().clone().float() for w in model.kernels())
        self.register_buffer("w1", w1)
        self.register_buffer("w2", w2)
        self.register_buffer("w3", w3)
        for name, conv in zip(("b1", "b2", "b3"), model.convs()):
            self.register_buffer(name, conv.bias.detach().clone().float())
        if self.cfg.binary_input:
            self.register_buffer("t", model.input_threshold.detach().clone().float().view(1, -1, 1, 1))

    def act(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cfg.binary_activations:
            return torch.relu(x)
        one = torch.ones_like(x)
        if self.cfg.binary_act == "heaviside":
            return torch.where(x > 0, one, torch.zeros_like(x))
        return torch.where(x >= 0, one, -one)

    def forward(self, state: torch.Tensor, fire: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = F.pad(state, (1, 1, 1, 1))
        if cfg.binary_input:
            d = x - self.t
            x = torch.where(d >= 0, torch.ones_like(d), -torch.ones_like(d))
        p = self.act(F.conv2d(x, self.w1, self.b1))
        h = self.act(F.conv2d(p, self.w2, self.b2))
        ds = F.conv2d(h, self.w3, self.b3)
        upd = fire * (state[:, :1] > cfg.alive_threshold).to(state.dtype)
        return torch.cat([state[:, :1], quantize_state(state[:, 1:] + ds * upd, cfg)], dim=1)
