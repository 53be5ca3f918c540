"""The cell's update network: perception (3x3 conv) and update (two 1x1 convs).

    ds = W3 · relu(W2 · relu(conv3x3(state; W1) + b1) + b2) + b3

Parameters (defaults): W1 [80, 20, 3, 3] + b1 [80], W2 [80, 80, 1, 1] + b2 [80],
W3 [19, 80, 1, 1] + b3 [19] (zero-initialised, so an untrained CA starts as the identity):
14,480 + 6,480 + 1,539 = 22,499.

The same parameters are applied in two layouts that compute the same function:

* ``forward(state)``: dense grids ``[B, C, H, W]`` (zero padding), the definition;
* ``forward_cells(patches)``: a list of cells, each with its 3x3 neighbourhood flattened in
  (dy, dx, channel) order ``[N, 9*C]``; used by the alive-cell fast path (``nca_edge.cells``),
  which computes only the cells that can change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import CAConfig

# Tensor names in checkpoints (safetensors keys) and their shapes for a config.
PARAM_NAMES = ("perceive.weight", "perceive.bias", "update1.weight", "update1.bias", "update2.weight", "update2.bias")


def param_shapes(cfg: CAConfig) -> dict[str, tuple[int, ...]]:
    c, p, h = cfg.channels, cfg.perception, cfg.hidden
    return {
        "perceive.weight": (p, c, 3, 3),
        "perceive.bias": (p,),
        "update1.weight": (h, p, 1, 1),
        "update1.bias": (h,),
        "update2.weight": (c - 1, h, 1, 1),
        "update2.bias": (c - 1,),
    }


class CAModel(nn.Module):
    def __init__(self, cfg: CAConfig = CAConfig()):
        super().__init__()
        self.cfg = cfg
        c, p, h = cfg.channels, cfg.perception, cfg.hidden
        self.perceive = nn.Conv2d(c, p, 3, padding=1)
        self.update1 = nn.Conv2d(p, h, 1)
        self.update2 = nn.Conv2d(h, c - 1, 1)
        # Keras defaults, as in the article's notebook: glorot-uniform kernels, zero biases;
        # the last kernel starts at zero ("do nothing" initial behaviour).
        for conv in (self.perceive, self.update1):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.update2.weight)
        nn.init.zeros_(self.update2.bias)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Dense layout: state [B, C, H, W] -> residual update ds [B, C-1, H, W]."""
        x = F.relu(self.perceive(state))
        x = F.relu(self.update1(x))
        return self.update2(x)

    def forward_cells(self, patches: torch.Tensor) -> torch.Tensor:
        """Cell layout: patches [N, 9*C] in (dy, dx, c) order -> ds [N, C-1]."""
        w1 = self.perceive.weight.permute(0, 2, 3, 1).reshape(self.perceive.out_channels, -1)
        x = F.relu(F.linear(patches, w1, self.perceive.bias))
        x = F.relu(F.linear(x, self.update1.weight.flatten(1), self.update1.bias))
        return F.linear(x, self.update2.weight.flatten(1), self.update2.bias)
