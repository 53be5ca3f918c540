"""Alive-cell layout: the CA step, computed only for the cells that can change.

Dead cells never change and their mutable channels are always 0, so a batch of states is
fully described by the (constant) pixel grids plus the mutable channels of the alive cells,
``hidden [N, C-1]`` (N = alive cells in the whole batch). One step then is:

    patches[n] = the 3x3 neighbourhood of cell n, (dy, dx, c) order, dead neighbours = 0
                 except their pixel channel, out-of-grid neighbours = 0 (zero padding)
    ds         = model.forward_cells(patches) (+ noise)     # only for the cells that fire
    hidden'    = hidden + ds * fire[n]

``ca.ca_step(model, hidden, fire, noise, cells=plan)`` runs a step in this layout; it is the
dense step restricted to alive cells (tests/test_cells.py checks it). It computes ds only for
the cells that fire (the others' ds is multiplied by 0 and passes no gradient), so on MNIST,
where most cells are dead and about half of the alive ones fire, it does several times less
arithmetic than the dense step (measured speed: docs/RESULTS.md, "Training throughput").
"""

from __future__ import annotations

import torch

from .config import CAConfig

_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


class AliveCells:
    """Gather plan for one batch of pixel grids [B, H, W]."""

    def __init__(self, pixels: torch.Tensor, cfg: CAConfig):
        self.cfg = cfg
        self.shape = tuple(pixels.shape)
        b, h, w = self.shape
        alive = pixels > cfg.alive_threshold
        self.b, self.y, self.x = alive.nonzero(as_tuple=True)
        n = self.b.numel()
        self.n = n
        # Index of each alive cell in `hidden`; every other position points at a zero row (n).
        idx = torch.full((b, h + 2, w + 2), n, dtype=torch.long, device=pixels.device)
        idx[self.b, self.y + 1, self.x + 1] = torch.arange(n, device=pixels.device)
        pix = torch.nn.functional.pad(pixels, (1, 1, 1, 1))
        nbr, nbr_pix = [], []
        for dy, dx in _OFFSETS:
            nbr.append(idx[self.b, self.y + 1 + dy, self.x + 1 + dx])
            nbr_pix.append(pix[self.b, self.y + 1 + dy, self.x + 1 + dx])
        self.nbr = torch.stack(nbr, 1).reshape(-1)  # [N*9]
        self.nbr_pix = torch.stack(nbr_pix, 1).unsqueeze(-1)  # [N, 9, 1]
        self.counts = torch.bincount(self.b, minlength=b)  # alive cells per sample

    def gather(self, state: torch.Tensor) -> torch.Tensor:
        """Dense state [B, C, H, W] -> hidden [N, C-1] of the alive cells."""
        return state[self.b, 1:, self.y, self.x]

    def scatter(self, hidden: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """hidden [N, C-1] + pixels [B, H, W] -> dense state [B, C, H, W]."""
        b, h, w = self.shape
        state = hidden.new_zeros((b, self.cfg.channels, h, w))
        state[:, 0] = pixels
        state[self.b, 1:, self.y, self.x] = hidden
        return state

    def cells(self, grid_values: torch.Tensor) -> torch.Tensor:
        """Pick per-cell values [B, H, W] (e.g. a fire mask) at the alive cells -> [N]."""
        return grid_values[self.b, self.y, self.x]

    def patches(self, hidden: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """3x3 neighbourhoods [len(rows), 9*C] of the alive cells ``rows`` (default: all)."""
        table = torch.cat([hidden, hidden.new_zeros((1, hidden.shape[1]))], 0)
        nbr = self.nbr.view(self.n, 9)
        pix = self.nbr_pix
        if rows is not None:
            nbr, pix = nbr[rows], pix[rows]
        nb = table.index_select(0, nbr.reshape(-1)).view(nbr.shape[0], 9, hidden.shape[1])
        return torch.cat([pix.to(hidden.dtype), nb], -1).reshape(nbr.shape[0], -1)
