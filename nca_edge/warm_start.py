"""Warm starts derived from a trained model: widening its hidden layer by splitting units.

Net2Net-style (Chen et al. 2016): every hidden unit j becomes K copies with the same incoming
kernel row, bias and scale, and each copy gets 1/K of unit j's outgoing weights in update2::

    h' = [h, h, ..., h]          (K copies)
    W2' = [W2 / K, ..., W2 / K]  so  W2' h' = W2 h

so the widened model computes the same update. Identical copies get identical gradients forever,
so every copy but the first gets Gaussian noise of ``noise`` x its row's RMS on its latent
incoming weights: in a binary kernel this flips the signs of the smallest latent weights
differently in every copy, and the widened model is then close to, not equal to, the original.
"""

from __future__ import annotations

import dataclasses

import torch

from .model import CAModel


def widen_hidden(src: CAModel, factor: int, noise: float, seed: int = 0) -> CAModel:
    """The widened model (see the module docstring); ``src`` is not modified."""
    cfg = dataclasses.replace(src.cfg, hidden=src.cfg.hidden * factor)
    model = CAModel(cfg)
    gen = torch.Generator().manual_seed(seed)
    sd = {k: v.detach().clone() for k, v in src.state_dict().items()}
    w1 = sd["update1.weight"]  # [H, P, 1, 1]
    rms = w1.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    copies = [w1 + noise * rms * torch.randn(w1.shape, generator=gen) if k else w1 for k in range(factor)]
    sd["update1.weight"] = torch.cat(copies).clamp(-1.0, 1.0) if src.cfg.binary_kernel("update1") else torch.cat(copies)
    sd["update1.bias"] = sd["update1.bias"].repeat(factor)
    if "update1.scale" in sd:
        sd["update1.scale"] = sd["update1.scale"].repeat(factor)
    sd["update2.weight"] = sd["update2.weight"].repeat(1, factor, 1, 1) / factor
    model.load_state_dict(sd)
    return model
