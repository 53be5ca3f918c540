"""Warm starts derived from a trained model: widening its hidden layer by splitting units, and
narrowing its perception and hidden layers by dropping the units that carry the least.

Widening:

Net2Net-style (Chen et al. 2016): every hidden unit j becomes K copies with the same incoming
kernel row, bias and scale, and each copy gets 1/K of unit j's outgoing weights in update2::

    h' = [h, h, ..., h]          (K copies)
    W2' = [W2 / K, ..., W2 / K]  so  W2' h' = W2 h

so the widened model computes the same update. Identical copies get identical gradients forever,
so every copy but the first gets Gaussian noise of ``noise`` x its row's RMS on its latent
incoming weights: in a binary kernel this flips the signs of the smallest latent weights
differently in every copy, and the widened model is then close to, not equal to, the original.

Narrowing (``narrow``): a unit j feeding the next layer through column W[:, j] is dropped with its
mean activation folded into the next layer's bias, b += W[:, j] E[a_j], so what it contributed on
average stays; what is lost is W[:, j] (a_j - E[a_j]), of energy ||W[:, j]||^2 Var(a_j) (for a
binary kernel, ||alpha * sign(W[:, j])||^2). The units kept are those of largest loss, hidden units
first (scored through update2), then perception features (scored through the kept hidden units).
The activation statistics come from the model's own rollouts (``activation_stats``).
A binary kernel without ``learned_scale`` derives alpha_o = mean |W[o]| from its remaining latent
weights, so narrowing its inputs changes its scale a little; the folding is exact otherwise.
"""

from __future__ import annotations

import dataclasses

import torch

from .ca import alive_mask, ca_step, seed_state
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


@torch.no_grad()
def activation_stats(model: CAModel, pixels: torch.Tensor, steps: int, seed: int = 0):
    """Mean and variance of each perception feature's and hidden unit's activation over the alive
    cells of every step of a rollout (fire masks from ``seed``) on grey images [B, H, W]."""
    gen = torch.Generator().manual_seed(seed)
    state = seed_state(pixels, model.cfg)
    acts: list[list[torch.Tensor]] = [[], []]
    for _ in range(steps):
        alive = alive_mask(state, model.cfg)[:, 0]
        a1, a2 = (a[alive] for a in model.activations(state))
        acts[0].append(a1)
        acts[1].append(a2)
        fire = torch.rand(state[:, 0].shape, generator=gen) <= model.cfg.fire_rate
        state = ca_step(model, state, fire)
    return [(torch.cat(a).mean(0), torch.cat(a).var(0)) for a in acts]


def narrow(src: CAModel, perception: int, hidden: int, stats) -> CAModel:
    """``src`` with ``perception`` features and ``hidden`` units kept (see the module docstring);
    ``stats`` = ``activation_stats(src, ...)``. ``src`` is not modified."""
    cfg = dataclasses.replace(src.cfg, perception=perception, hidden=hidden)
    if cfg.depthwise:
        raise ValueError("narrowing a depthwise perception is not supported")
    (m1, v1), (m2, v2) = stats
    _, w2, w3 = (k.detach().flatten(1) for k in src.kernels())  # the kernels the step uses
    sd = {k: v.detach().clone() for k, v in src.state_dict().items()}
    keep_h = torch.argsort(w3.pow(2).sum(0) * v2, descending=True)[:hidden].sort().values
    drop_h = torch.ones(len(m2), dtype=torch.bool)
    drop_h[keep_h] = False
    sd["update2.bias"] += w3[:, drop_h] @ m2[drop_h]
    keep_p = torch.argsort(w2[keep_h].pow(2).sum(0) * v1, descending=True)[:perception].sort().values
    drop_p = torch.ones(len(m1), dtype=torch.bool)
    drop_p[keep_p] = False
    sd["update1.bias"] += w2[:, drop_p] @ m1[drop_p]
    for name in ("perceive.weight", "perceive.bias", "perceive.scale"):
        if name in sd:
            sd[name] = sd[name][keep_p]
    sd["update1.weight"] = sd["update1.weight"][keep_h][:, keep_p]
    for name in ("update1.bias", "update1.scale"):
        if name in sd:
            sd[name] = sd[name][keep_h]
    sd["update2.weight"] = sd["update2.weight"][:, keep_h]
    model = CAModel(cfg)
    model.load_state_dict(sd)
    return model
