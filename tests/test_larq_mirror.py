"""The Larq mirror computes the same CA step as PyTorch, for every variant (weights transferred)."""

import numpy as np
import pytest
import torch

from firmware_sim.prng import fire_mask
from nca_edge.ca import ca_step, seed_state
from nca_edge.config import CAConfig
from nca_edge.data import load_digits, to_float
from nca_edge.model import CAModel
from nca_edge.size import packed_bytes

lm = pytest.importorskip("nca_edge.larq_mirror")
pytest.importorskip("larq")

VARIANTS = [("float", False, "sign", False), ("bwn", False, "sign", False), ("ban", False, "sign", False),
            ("bnn", False, "sign", False), ("bnn", True, "sign", False), ("bnn", False, "heaviside", False),
            ("bnn", False, "sign", True)]
REAL_ENDS = ("perceive", "update2")  # the first/last-layer exception (CAConfig.real_weights)


@pytest.fixture(scope="module")
def pixels():
    d = load_digits()
    return torch.from_numpy(to_float(d.test_x[:8]))


def _model(cfg: CAConfig) -> CAModel:
    torch.manual_seed(0)
    m = CAModel(cfg)
    torch.nn.init.normal_(m.update2.weight, std=0.1)
    for conv in (m.perceive, m.update1, m.update2):  # non-zero biases avoid exact +-1 sum ties
        torch.nn.init.normal_(conv.bias, std=0.1)
    if cfg.binary_input:
        with torch.no_grad():
            m.input_threshold.add_(torch.linspace(-0.05, 0.05, cfg.channels))
    if cfg.learned_scale:
        with torch.no_grad():
            for conv in m.binary_convs():
                conv.scale.uniform_(0.02, 0.2)
    if cfg.binary_activations:
        _make_exact(m)
    return m


@torch.no_grad()
def _make_exact(m: CAModel) -> None:
    """Binary activations jump at 0, so a one-ulp difference in a pre-activation near 0 (TF and
    PyTorch sum in different orders) flips a unit and the two trajectories part. With dyadic
    parameters (multiples of 2^-6), binary kernels of equal magnitude per output channel (alpha =
    mean |W[o]| is then exact) and a fixed-point state (multiples of 2^-4), every sum is exact in
    float32 in either order, so parity is exact rather than lucky."""
    q = 2.0**6
    for p in m.parameters():
        p.copy_(torch.round(p * q).clamp(-q, q) / q)
    for conv in m.binary_convs():
        mag = torch.round(conv.weight.abs().mean(dim=(1, 2, 3), keepdim=True) * q).clamp(min=1) / q
        conv.weight.copy_(torch.where(conv.weight >= 0, mag, -mag))


@pytest.mark.parametrize("quant, binary_input, act, learned_scale, real", [v + ((),) for v in VARIANTS] + [
    ("bwn", False, "sign", False, REAL_ENDS), ("bnn", False, "sign", True, REAL_ENDS)])
def test_same_next_state_and_labels_over_50_steps(quant, binary_input, act, learned_scale, real, pixels):
    cfg = CAConfig(quant=quant, binary_input=binary_input, binary_act=act, learned_scale=learned_scale,
                   real_weights=real, state_frac_bits=4 if quant in ("ban", "bnn") else None)
    m = _model(cfg)
    km = lm.build_step_model(cfg, 28, 28, batch=len(pixels))
    lm.load_torch_weights(km, m)
    s_torch = seed_state(pixels, cfg)
    s_keras = s_torch.permute(0, 2, 3, 1).numpy()
    for step in range(50):
        fire = torch.from_numpy(fire_mask(0, np.arange(len(pixels)), step, 28, 28))
        # one step from the same state: float tolerance
        with torch.no_grad():
            one = ca_step(m, torch.from_numpy(s_keras).permute(0, 3, 1, 2), fire).permute(0, 2, 3, 1).numpy()
            s_torch = ca_step(m, s_torch, fire)
        s_keras = km([s_keras, fire.numpy()[..., None].astype(np.float32)], training=False).numpy()
        np.testing.assert_allclose(s_keras, one, atol=1e-4, rtol=1e-5)
        # whole trajectories: identical class labels on every alive cell
        a = s_torch.permute(0, 2, 3, 1).numpy()
        alive = a[..., 0] > cfg.alive_threshold
        assert np.array_equal(a[..., -10:].argmax(-1)[alive], s_keras[..., -10:].argmax(-1)[alive]), f"step {step}"


@pytest.mark.parametrize("quant", ["float", "bwn", "bnn"])
def test_larq_memory_figure_differs_from_ours_only_by_the_scales_it_does_not_count(quant):
    from nca_edge.size import tensor_table

    cfg = CAConfig(quant=quant)
    s = lm.larq_summary(lm.build_step_model(cfg, 28, 28, batch=1))
    scales = sum(t.nbytes for t in tensor_table(cfg) if t.name.endswith(".scale"))
    # Larq prints KiB with 2 decimals (+-5 bytes); it derives alpha from the latent weights, so
    # it does not count the per-channel scales a device must store.
    assert abs(s["model_size_bytes"] - (packed_bytes(cfg) - scales)) <= 6


def test_fixed_point_state_equals_pytorch_except_at_rounding_ties(pixels):
    """state_frac_bits: the mirror rounds like training (half to even, clipped to int8). The two
    frameworks sum the convolutions in different orders, so a value within float rounding of a
    half quantum may land one quantum apart; everywhere else the next state is identical."""
    from dataclasses import replace

    cfg = CAConfig(quant="ban", state_frac_bits=4)
    m = _model(cfg)
    raw_model = CAModel(replace(cfg, state_frac_bits=None))  # same weights, no rounding
    raw_model.load_state_dict(m.state_dict())
    km = lm.build_step_model(cfg, 28, 28, batch=len(pixels))
    lm.load_torch_weights(km, m)
    s = seed_state(pixels, cfg)
    ties = 0
    for step in range(20):
        fire = torch.from_numpy(fire_mask(0, np.arange(len(pixels)), step, 28, 28))
        with torch.no_grad():
            nxt = ca_step(m, s, fire).permute(0, 2, 3, 1).numpy()
            raw = ca_step(raw_model, s, fire).permute(0, 2, 3, 1).numpy() * 16
        got = km([s.permute(0, 2, 3, 1).numpy(), fire.numpy()[..., None].astype(np.float32)], training=False).numpy()
        assert np.all(got * 16 == np.round(got * 16)) and np.abs(got[..., 1:]).max() <= 8  # on the int8 grid
        diff = got != nxt
        near_tie = np.abs(raw - np.floor(raw) - 0.5) < 1e-3
        assert np.all(near_tie[diff]) and np.all(np.abs(got - nxt)[diff] == 1 / 16), f"step {step}"
        ties += int(diff.sum())
        s = torch.from_numpy(nxt).permute(0, 3, 1, 2)
    assert ties < 1e-4 * 20 * nxt.size  # ties are rare