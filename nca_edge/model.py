"""The cell's update network: perception (3x3 conv) and update (two 1x1 convs).

float (the article's model)::

    ds = W3 · relu(W2 · relu(conv3x3(state; W1) + b1) + b2) + b3

Parameters (defaults): W1 [80, 20, 3, 3] + b1 [80], W2 [80, 80, 1, 1] + b2 [80],
W3 [19, 80, 1, 1] + b3 [19] (zero-initialised, so an untrained CA starts as the identity):
14,480 + 6,480 + 1,539 = 22,499.

Quantized variants (``CAConfig.quant``; quantizers in ``nca_edge.quant``, Larq semantics):

* bwn: every kernel W_i is replaced by ``magnitude_aware_sign(W_i)`` = alpha_o * sign(W_i[o]);
  activations stay real (ReLU).
* ban: real kernels; the inputs of the 2nd and 3rd convs are binary: ``sign(pre-activation)``
  replaces ReLU (sign(relu(x)) would be constantly +1), so each bias acts as a threshold.
  ``binary_act="heaviside"`` uses 0/1 instead (the 1-bit ReLU: a cell whose hidden units are
  all off produces ds = b3).
  With ``binary_input`` the state entering the 3x3 conv is binary too:
  ``sign(state_c - t_c)`` with a learned threshold per channel; out-of-grid neighbours are
  empty cells (state 0), quantized like any other cell (pad, then quantize).
* bnn: both.
* ``real_weights`` (bwn, bnn): the named layers keep real kernels (the first/last-layer
  exception of binary networks; int8 on a device).
* ``int4`` (any variant): the named real kernels are int4 (per output channel, fake-quantized).
* ``learned_scale`` (bwn, bnn): alpha_o is a trained parameter (``<layer>.scale``, initialised
  to mean |W[o]|, kept > 0) rather than Larq's stop-gradient mean |W[o]|.

The same parameters are applied in two layouts that compute the same function:

* ``forward(state)``: dense grids ``[B, C, H, W]`` (zero-padded state), the definition;
* ``forward_cells(patches)``: a list of cells, each with its 3x3 neighbourhood flattened in
  (dy, dx, channel) order ``[N, 9*C]``; used by the alive-cell fast path (``nca_edge.cells``),
  which computes only the cells that can change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import LAYERS, CAConfig
from .experimental import int4_weights
from .quant import channel_scale, clip_latent_, magnitude_aware_sign, noisy_sign, ste_heaviside, ste_sign

def param_shapes(cfg: CAConfig) -> dict[str, tuple[int, ...]]:
    """Tensor names in checkpoints (safetensors keys) and their shapes for a config."""
    c, p, h = cfg.channels, cfg.perception, cfg.hidden
    shapes = {
        "perceive.weight": (p, 1 if cfg.depthwise else c, 3, 3),
        "perceive.bias": (p,),
        "update1.weight": (h, p, 1, 1),
        "update1.bias": (h,),
        "update2.weight": (c - 1, h, 1, 1),
        "update2.bias": (c - 1,),
    }
    if cfg.binary_input:
        shapes["input_threshold"] = (c,)
    if cfg.learned_scale:
        shapes.update({f"{n}.scale": (o,) for n, o in zip(LAYERS, (p, h, c - 1)) if cfg.binary_kernel(n)})
    return shapes


class CAModel(nn.Module):
    def __init__(self, cfg: CAConfig = CAConfig()):
        super().__init__()
        self.cfg = cfg
        # Stochastic binary activations during training (TrainConfig.act_noise): (sigma, generator).
        self.act_noise: tuple[float, torch.Generator | None] | None = None
        c, p, h = cfg.channels, cfg.perception, cfg.hidden
        self.perceive = nn.Conv2d(c, p, 3, padding=0, groups=c if cfg.depthwise else 1)
        self.update1 = nn.Conv2d(p, h, 1)
        self.update2 = nn.Conv2d(h, c - 1, 1)
        # Keras defaults, as in the article's notebook: glorot-uniform kernels, zero biases;
        # the last kernel starts at zero ("do nothing" initial behaviour).
        for conv in (self.perceive, self.update1):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.update2.weight)
        nn.init.zeros_(self.update2.bias)
        if cfg.binary_kernel("update2"):
            # A binarized all-zero kernel has scale 0 and passes no gradient: start tiny instead.
            nn.init.uniform_(self.update2.weight, -1e-3, 1e-3)
        if cfg.learned_scale:
            for conv in self.binary_convs():
                conv.register_parameter("scale", nn.Parameter(torch.empty(conv.out_channels)))
            self.reset_scales()
        if cfg.binary_input:
            # Thresholds between "empty" (0) and typical values: the pixel's is the alive threshold.
            t = torch.zeros(c)
            t[0] = cfg.alive_threshold
            self.input_threshold = nn.Parameter(t)

    # ------------------------------------------------------------------ quantized pieces
    def convs(self) -> tuple[nn.Conv2d, nn.Conv2d, nn.Conv2d]:
        return self.perceive, self.update1, self.update2

    def binary_convs(self) -> list[nn.Conv2d]:
        """The convolutions whose kernels are binary (none for float/ban; see CAConfig.real_weights)."""
        return [conv for name, conv in zip(LAYERS, self.convs()) if self.cfg.binary_kernel(name)]

    @torch.no_grad()
    def reset_scales(self) -> None:
        """learned_scale: set every alpha_o to mean |W[o]| of the current latent kernel."""
        for conv in self.binary_convs():
            conv.scale.copy_(channel_scale(conv.weight).flatten())

    def kernels(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The kernels the step uses: real, or binary (+-alpha_o per output channel)."""
        return tuple(self._kernel(name, conv) for name, conv in zip(LAYERS, self.convs()))

    def dense_perceive_weight(self) -> torch.Tensor:
        """The perception kernel as a dense [P, C, 3, 3] tensor (a depthwise one expanded with zeros:
        output o reads channel o // (P / C) only), so every layout and exporter sees one shape."""
        w = self.perceive.weight
        if not self.cfg.depthwise:
            return w
        p, c = self.cfg.perception, self.cfg.channels
        mask = (torch.arange(c, device=w.device)[None, :] == (torch.arange(p, device=w.device) // (p // c))[:, None])
        return w.expand(p, c, 3, 3) * mask[:, :, None, None].to(w.dtype)

    def _kernel(self, name: str, conv: nn.Conv2d) -> torch.Tensor:
        if name == "perceive" and self.cfg.depthwise:  # real (CAConfig enforces it)
            w = self.dense_perceive_weight()
            return int4_weights(w) if name in self.cfg.int4 else w
        if not self.cfg.binary_kernel(name):
            return int4_weights(conv.weight) if name in self.cfg.int4 else conv.weight
        if self.cfg.learned_scale:
            return conv.scale.view(-1, 1, 1, 1) * ste_sign(conv.weight)
        return magnitude_aware_sign(conv.weight)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cfg.binary_activations:
            return F.relu(x)
        if self.act_noise is not None:  # stochastic binarization (training only)
            sigma, gen = self.act_noise
            q = noisy_sign(x, sigma, gen)
            return (q + 1.0) / 2.0 if self.cfg.binary_act == "heaviside" else q
        return ste_heaviside(x) if self.cfg.binary_act == "heaviside" else ste_sign(x)

    def quantize_input(self, x: torch.Tensor, channel_dim: int) -> torch.Tensor:
        if not self.cfg.binary_input:
            return x
        shape = [1] * x.dim()
        shape[channel_dim] = -1
        return ste_sign(x - self.input_threshold.view(shape))

    def clip_latent_weights(self) -> None:
        """Larq's weight_clip: keep latent binary kernels in [-1, 1] (call after each step)."""
        for conv in self.binary_convs():
            clip_latent_(conv.weight)
        if self.cfg.learned_scale:  # alpha > 0 keeps sign(alpha * acc + b) foldable into a threshold
            with torch.no_grad():
                for conv in self.binary_convs():
                    conv.scale.clamp_(min=1e-6)

    # ------------------------------------------------------------------ the two layouts
    def _activations(self, pre: torch.Tensor, w2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Channels-last pre-activations of the 3x3 conv [..., P] -> the two hidden activations
        (inputs of update1 [..., P] and of update2 [..., H])."""
        a1 = self.act(pre)
        return a1, self.act(self._hidden_pre(a1, w2))

    def _hidden_pre(self, a1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        """update1's pre-activations [..., H] from its input activations [..., P]."""
        return F.linear(a1, w2.flatten(1), self.update1.bias)

    def _update(self, pre: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor) -> torch.Tensor:
        """Channels-last pre-activations of the 3x3 conv [..., P] -> ds [..., C-1]."""
        return F.linear(self._activations(pre, w2)[1], w3.flatten(1), self.update2.bias)

    def _perceive(self, state: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
        """Dense layout: state [B, C, H, W] -> channels-last pre-activations [B, H, W, P]."""
        x = self.quantize_input(F.pad(state, (1, 1, 1, 1)), channel_dim=1)
        return F.conv2d(x, w1, self.perceive.bias).permute(0, 2, 3, 1)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Dense layout: state [B, C, H, W] -> residual update ds [B, C-1, H, W]."""
        w1, w2, w3 = self.kernels()
        return self._update(self._perceive(state, w1), w2, w3).permute(0, 3, 1, 2)

    def activations(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense layout: the two hidden activations of every cell, [B, H, W, P] and [B, H, W, H]
        (what ``forward`` feeds update1 and update2; for diagnostics and warm starts)."""
        w1, w2, _ = self.kernels()
        return self._activations(self._perceive(state, w1), w2)

    def preactivations(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense layout: what the two hidden activations are taken of, [B, H, W, P] and
        [B, H, W, H] (``activations`` is ``act`` of these; for diagnostics)."""
        w1, w2, _ = self.kernels()
        pre = self._perceive(state, w1)
        return pre, self._hidden_pre(self.act(pre), w2)

    def forward_cells(self, patches: torch.Tensor) -> torch.Tensor:
        """Cell layout: patches [N, 9*C] in (dy, dx, c) order -> ds [N, C-1]."""
        w1, w2, w3 = self.kernels()
        n = patches.shape[0]
        x = self.quantize_input(patches.view(n, 9, -1), channel_dim=2).reshape(n, -1)
        pre = F.linear(x, w1.permute(0, 2, 3, 1).reshape(w1.shape[0], -1), self.perceive.bias)
        return self._update(pre, w2, w3)
