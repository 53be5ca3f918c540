"""Quantizers for quantization-aware training, with Larq's semantics.

Each quantizer is a forward map plus a pseudo-gradient for the backward pass.

``ste_sign`` (Larq ``ste_sign``)::

    forward:   q(x) = +1 if x >= 0 else -1          (sign(0) = +1, never 0)
    backward:  dq/dx = 1 if |x| <= clip_value else 0   (straight-through, clipped)

``ste_heaviside`` (Larq ``ste_heaviside``; the 1-bit analogue of ReLU)::

    forward:   h(x) = 1 if x > 0 else 0
    backward:  dh/dx = 1 if |x| <= clip_value else 0

    For a binary kernel it is the sign activation with folded constants, exactly:
    W . h(x) = W . (s + 1) / 2 = (W . s) / 2 + sum(W) / 2,  s = sign(x) with sign(0) := -1 here,
    so a device can still run XNOR/popcount on +-1 bits.

``approx_sign`` (Larq ``approx_sign``, Bi-Real Net)::

    forward:   as ste_sign
    backward:  dq/dx = 2 (1 - |x|) if |x| <= 1 else 0

``noisy_sign`` (training only; stochastic binary units)::

    forward:   q(x) = sign(x + sigma n), n ~ Logistic(0, 1)     (P(q = +1) = sigmoid(x / sigma))
    backward:  dq/dx = d/dx tanh(x / (2 sigma))                (the gradient of E[q])

``magnitude_aware_sign`` (Larq ``MagnitudeAwareSign``, for kernels; torch layout [out, in, kh, kw])::

    forward:   q(W)[o] = alpha_o * ste_sign(W[o]),   alpha_o = mean |W[o]|   (per output channel)
    backward:  alpha is treated as a constant (stop-gradient); ste_sign's clipped STE for W

``fake_quant_fixed`` (the int8 fixed-point state)::

    forward:   q(x) = clamp(round(x * 2**f), -2**(b-1), 2**(b-1) - 1) / 2**f   (round half to even)
    backward:  dq/dx = 1 inside the representable range, 0 outside (clipped straight-through)

``clip_latent_`` is Larq's ``weight_clip`` constraint: latent real weights are clipped to
[-1, 1] after every optimiser step, so the STE window stays meaningful.
"""

from __future__ import annotations

import torch


class _SteSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, clip_value: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.clip_value = clip_value
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        return _clipped_straight_through(ctx, dy), None


def _clipped_straight_through(ctx, dy: torch.Tensor) -> torch.Tensor:
    (x,) = ctx.saved_tensors
    if ctx.clip_value is None:
        return dy
    return dy * (x.abs() <= ctx.clip_value).to(dy.dtype)


class _ApproxSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (x,) = ctx.saved_tensors
        a = x.abs()
        return dy * torch.where(a <= 1.0, 2.0 * (1.0 - a), torch.zeros_like(a))


def ste_sign(x: torch.Tensor, clip_value: float | None = 1.0) -> torch.Tensor:
    return _SteSign.apply(x, clip_value)


class _SteHeaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, clip_value: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.clip_value = clip_value
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        return _clipped_straight_through(ctx, dy), None


def ste_heaviside(x: torch.Tensor, clip_value: float | None = 1.0) -> torch.Tensor:
    return _SteHeaviside.apply(x, clip_value)


class _NoisySign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.sigma = sigma
        return torch.where(x + sigma * noise >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (x,) = ctx.saved_tensors
        t = torch.tanh(x / (2.0 * ctx.sigma))
        return dy * (1.0 - t * t) / (2.0 * ctx.sigma), None, None


def noisy_sign(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarization (training): sign(x + sigma * n), n ~ Logistic(0, 1), so
    P(+1) = sigmoid(x / sigma) and E[q] = tanh(x / (2 sigma)); the gradient is that expectation's,
    (1 - tanh^2(x / (2 sigma))) / (2 sigma). A unit must keep |x| well above sigma to act
    deterministically, which gives the deterministic sign (inference) a margin."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype).clamp_(1e-6, 1 - 1e-6)
    return _NoisySign.apply(x, torch.log(u) - torch.log1p(-u), sigma)


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    return _ApproxSign.apply(x)


def channel_scale(w: torch.Tensor) -> torch.Tensor:
    """alpha_o = mean |W[o]| over every axis but the first (output channel), detached."""
    return w.detach().abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


def magnitude_aware_sign(w: torch.Tensor, clip_value: float | None = 1.0) -> torch.Tensor:
    return channel_scale(w) * ste_sign(w, clip_value)


@torch.no_grad()
def clip_latent_(w: torch.Tensor, clip_value: float = 1.0) -> None:
    w.clamp_(-clip_value, clip_value)


def fake_quant_fixed(x: torch.Tensor, frac_bits: int, bits: int = 8) -> torch.Tensor:
    """Signed fixed point with ``frac_bits`` fractional bits in ``bits`` bits (see module doc)."""
    scale = float(2**frac_bits)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q = torch.clamp(torch.round(x * scale), lo, hi) / scale
    inside = ((x * scale) >= lo - 0.5) & ((x * scale) <= hi + 0.5)
    return torch.where(inside, x + (q - x).detach(), q)
