"""The cellular automaton: state layout, the one CA step, mutation, fire-mask sources.

State: float tensor [B, C, H, W]. Channel 0 is the grey pixel (immutable, in [0, 1]);
channels 1..C-1 are the cell's mutable state, the last ``n_classes`` are class scores.
A cell is *alive* when its pixel > ``alive_threshold``; only alive cells ever change, so a
dead cell's mutable channels stay exactly 0 forever.

``ca_step`` below is the one definition of a step. It runs in two layouts: dense grids, and
the alive-cell layout (``nca_edge.cells``) that training and evaluation use because it skips
the cells that cannot change; tests/test_cells.py checks that both give the same numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

from .config import CAConfig
from .quant import fake_quant_fixed

if TYPE_CHECKING:
    from .cells import AliveCells

# A fire-mask source: (step index, grid shape (B, H, W)) -> bool tensor [B, H, W].
# True = the cell updates at this step (before the alive mask is applied).


class MaskSource(Protocol):
    def __call__(self, step: int, shape: tuple[int, int, int]) -> torch.Tensor: ...


def random_masks(fire_rate: float, seed: int, device: torch.device | str = "cpu") -> MaskSource:
    """Bernoulli(fire_rate) masks from a seeded torch generator: u ~ U[0,1), fire = u <= rate.

    Deterministic given the seed and the sequence of calls.
    """
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)

    def source(step: int, shape: tuple[int, int, int]) -> torch.Tensor:
        return torch.rand(shape, generator=gen, device=device) <= fire_rate

    return source


def seed_state(pixels: torch.Tensor, cfg: CAConfig) -> torch.Tensor:
    """Initial state for grey images [B, H, W] in [0, 1]: pixel channel + zeros."""
    b, h, w = pixels.shape
    state = pixels.new_zeros((b, cfg.channels, h, w))
    state[:, 0] = quantize_state(pixels, cfg)
    return state


def quantize_state(x: torch.Tensor, cfg: CAConfig) -> torch.Tensor:
    """The fixed-point state (``cfg.state_frac_bits``), as a fake-quantized float; identity if None."""
    if cfg.state_frac_bits is None:
        return x
    return fake_quant_fixed(x, cfg.state_frac_bits, bits=8)


def alive_mask(state: torch.Tensor, cfg: CAConfig) -> torch.Tensor:
    """Bool [B, 1, H, W]: the cells that may change (pixel > alive_threshold)."""
    return state[:, :1] > cfg.alive_threshold


def ca_step(
    model,
    state: torch.Tensor,
    fire: torch.Tensor,
    noise: torch.Tensor | None = None,
    cells: "AliveCells | None" = None,
) -> torch.Tensor:
    """One CA step: the only definition, used by training, evaluation and export.

        ds = model(perception of state) (+ noise)          # noise: training only
        state'[0]  = state[0]                              # the pixel never changes
        state'[1:] = state[1:] + ds * (fire and alive)     # dead cells never change
        state'     = fixed_point(state')                   # only with cfg.state_frac_bits

    Two layouts of the same arithmetic:

    * dense (``cells=None``): state [B, C, H, W], fire bool [B, H, W], noise [B, C-1, H, W];
    * alive cells (``cells`` = an ``AliveCells`` plan for the batch's pixels): state is the
      mutable channels of the alive cells only [N, C-1], fire bool [N], noise [N, C-1].
      Dead cells are left out because they cannot change, and ds is computed only for the
      cells that fire (see ``nca_edge.cells``).
    """
    if cells is None:
        cfg: CAConfig = model.cfg
        ds = model(state)
        update = fire.unsqueeze(1) & alive_mask(state, cfg)
        if noise is not None:
            ds = ds + noise
        return torch.cat([state[:, :1], quantize_state(state[:, 1:] + ds * update.to(ds.dtype), cfg)], dim=1)
    rows = fire.nonzero().squeeze(1)  # ds of a cell that does not fire is never used: skip it
    ds = model.forward_cells(cells.patches(state, rows))
    if noise is not None:
        ds = ds + noise[rows]
    return quantize_state(state.index_add(0, rows, ds), model.cfg)


def mutate(state: torch.Tensor, new_pixels: torch.Tensor, cfg: CAConfig) -> torch.Tensor:
    """Swap the underlying digit (the article's mutation).

    The pixel channel becomes the new digit; mutable state is kept where the new digit is
    alive and erased elsewhere (cells alive only in the new digit start from the zeros that
    every dead cell holds).
    """
    out = seed_state(new_pixels, cfg)
    keep = alive_mask(out, cfg).to(state.dtype)
    out[:, 1:] = state[:, 1:] * keep
    return out

