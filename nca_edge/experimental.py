"""Experimental, alive: what trains and evaluates but does not export yet, in one place.

* int4 kernels (``CAConfig.int4``, a recipe's ``int4 = ["update2"]``): the named real layers' kernels
  are int4 instead of int8, per output channel, symmetric::

      forward:   q(W)[o] = s_o * clamp(round(W[o] / s_o), -7, 7),   s_o = max |W[o]| / 7   (nothing clamps)
      backward:  dq/dW = 1 (straight-through for every weight)

  Counted at 4 bits plus a 32-bit scale per channel (``nca_edge.size``). The exporters and the
  Larq mirror refuse a model that uses it, with one line: it is a lever for the 8 KiB and 4 KiB
  BNN budgets (issue 26), not a deployable format yet.

Options that were experimental and lost are gone (``nca_edge.config.RETIRED``).
"""

from __future__ import annotations

import torch


def int4_weights(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int4 (see the module docstring), straight-through gradient."""
    s = (w.detach().abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 7.0).clamp_min(1e-12)
    q = torch.clamp(torch.round(w.detach() / s), -7, 7) * s
    return w + (q - w.detach())
