"""Quantizers on hand-made tensors (Larq semantics), per-channel scales, and the variants' models."""

import numpy as np
import pytest
import torch

from nca_edge.ca import ca_step, seed_state
from nca_edge.cells import AliveCells
from nca_edge.config import CAConfig
from nca_edge.model import CAModel
from nca_edge.quant import approx_sign, channel_scale, clip_latent_, magnitude_aware_sign, ste_sign


def test_ste_sign_forward_has_sign_of_zero_plus_one():
    x = torch.tensor([-2.0, -1.0, -1e-7, 0.0, 1e-7, 1.0, 3.0])
    assert ste_sign(x).tolist() == [-1, -1, -1, 1, 1, 1, 1]


def test_ste_sign_gradient_is_clipped_at_one_inclusive():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0001, 2.0], requires_grad=True)
    ste_sign(x).backward(torch.arange(1.0, 9.0))
    assert x.grad.tolist() == [0, 2, 3, 4, 5, 6, 0, 0]


def test_ste_sign_without_clip_passes_every_gradient():
    x = torch.tensor([-5.0, 0.0, 5.0], requires_grad=True)
    ste_sign(x, clip_value=None).sum().backward()
    assert x.grad.tolist() == [1, 1, 1]


def test_ste_heaviside_is_a_one_bit_relu():
    from nca_edge.quant import ste_heaviside

    x = torch.tensor([-1.5, -0.5, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    y = ste_heaviside(x)
    assert y.tolist() == [0, 0, 0, 1, 1, 1]  # Larq: sign(relu(x)), so h(0) = 0
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 0]


def test_heaviside_layer_equals_sign_layer_with_folded_constants():
    from nca_edge.quant import ste_heaviside

    torch.manual_seed(0)
    w, x = torch.randn(7, 30), torch.randn(100, 30)
    s = torch.where(x > 0, 1.0, -1.0)  # sign with sign(0) := -1 (ties have measure zero here)
    torch.testing.assert_close(ste_heaviside(x) @ w.T, (s @ w.T) / 2 + w.sum(1) / 2)


def test_approx_sign_gradient():
    x = torch.tensor([-1.5, -0.5, 0.0, 0.25, 1.0], requires_grad=True)
    y = approx_sign(x)
    assert y.tolist() == [-1, -1, 1, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == pytest.approx([0.0, 1.0, 2.0, 1.5, 0.0])


def test_magnitude_aware_sign_uses_the_mean_abs_per_output_channel():
    w = torch.tensor([[[[0.5]], [[-0.25]]], [[[-2.0]], [[0.0]]]])  # [out=2, in=2, 1, 1]
    assert channel_scale(w).flatten().tolist() == [0.375, 1.0]
    q = magnitude_aware_sign(w)
    assert q.flatten().tolist() == [0.375, -0.375, -1.0, 1.0]


def test_magnitude_aware_sign_treats_the_scale_as_constant():
    w = torch.tensor([[0.5, -0.25, 2.0]], requires_grad=True)  # one output channel
    magnitude_aware_sign(w).sum().backward()
    alpha = (0.5 + 0.25 + 2.0) / 3
    assert w.grad[0].tolist() == pytest.approx([alpha, alpha, 0.0])  # |2.0| > 1: clipped


def test_latent_weight_clip():
    w = torch.tensor([-3.0, -0.5, 0.75, 1.7])
    clip_latent_(w)
    assert w.tolist() == [-1.0, -0.5, 0.75, 1.0]


@pytest.mark.parametrize("quant, binary_input", [("bwn", False), ("ban", False), ("bnn", False), ("bnn", True)])
def test_variant_kernels_and_activations_are_binary(quant, binary_input, digit_pixels):
    cfg = CAConfig(quant=quant, binary_input=binary_input)
    torch.manual_seed(0)
    m = CAModel(cfg)
    for w in m.kernels():
        per_channel = w.flatten(1).abs()
        if cfg.binary_weights:  # every weight of an output channel is +-alpha_o
            assert torch.allclose(per_channel, per_channel[:, :1].expand_as(per_channel))
    if cfg.binary_activations:
        assert set(m.act(torch.randn(100)).tolist()) == {-1.0, 1.0}
    assert sum(p.numel() for p in m.parameters()) == cfg.param_count()


@pytest.mark.parametrize("quant, binary_input, act, scale", [
    ("bwn", False, "sign", False), ("ban", False, "sign", False), ("bnn", False, "sign", False),
    ("bnn", True, "sign", False), ("bnn", False, "heaviside", False), ("bwn", False, "sign", True)])
def test_alive_cell_layout_matches_the_dense_step_for_every_variant(quant, binary_input, act, scale, digit_pixels):
    cfg = CAConfig(quant=quant, binary_input=binary_input, binary_act=act, learned_scale=scale)
    torch.manual_seed(2)
    m = CAModel(cfg)
    torch.nn.init.normal_(m.update2.weight, std=0.3)
    for conv in (m.perceive, m.update1):  # non-zero biases: with +-1 inputs and +-alpha weights a zero
        torch.nn.init.normal_(conv.bias, std=0.1)  # bias makes exact ties, which float summation order breaks
    g = torch.Generator().manual_seed(0)
    state = seed_state(digit_pixels, cfg)
    plan = AliveCells(digit_pixels, cfg)
    hidden = plan.gather(state)
    for _ in range(10):
        fire = torch.rand(digit_pixels.shape, generator=g) <= 0.5
        state = ca_step(m, state, fire)
        hidden = ca_step(m, hidden, plan.cells(fire), cells=plan)
    torch.testing.assert_close(plan.scatter(hidden, digit_pixels), state, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("scale", [False, True])
def test_real_weights_keep_the_named_kernels_real_and_the_others_binary(scale):
    cfg = CAConfig(quant="bnn", real_weights=("perceive", "update2"), learned_scale=scale)
    torch.manual_seed(0)
    m = CAModel(cfg)
    w1, w2, w3 = m.kernels()
    assert w1 is m.perceive.weight and w3 is m.update2.weight  # real: the trained tensor itself
    assert not m.update2.weight.any()  # a real last layer starts at zero, like float's
    assert set(w2.flatten(1).abs().unique(dim=1).shape[1:]) == {1}  # +-alpha_o per output channel
    assert [n for n, _ in m.named_parameters() if n.endswith(".scale")] == (["update1.scale"] if scale else [])
    assert sum(p.numel() for p in m.parameters()) == cfg.param_count()
    with torch.no_grad():
        m.perceive.weight.fill_(3.0)
        m.update1.weight.fill_(3.0)
    m.clip_latent_weights()  # only latent binary kernels are clipped to [-1, 1]
    assert m.perceive.weight.max() == 3.0 and m.update1.weight.max() == 1.0


@pytest.mark.parametrize("bad", [("conv9",), ("perceive", "perceive")])
def test_real_weights_must_name_distinct_layers(bad):
    with pytest.raises(ValueError, match="real_weights"):
        CAConfig(quant="bwn", real_weights=bad)
    with pytest.raises(ValueError, match="binary weights"):
        CAConfig(quant="ban", real_weights=("perceive",))


def test_binary_input_rejected_without_binary_activations():
    with pytest.raises(ValueError):
        CAConfig(quant="bwn", binary_input=True)


def test_fixed_point_fake_quant_forward_and_backward():
    from nca_edge.quant import fake_quant_fixed

    x = torch.tensor([0.0, 0.03, 0.04, -0.5, 7.9, 9.0, -8.0, -9.0], requires_grad=True)
    q = fake_quant_fixed(x, frac_bits=4)  # step 1/16, range [-8, 127/16]
    assert q.tolist() == [0.0, 0.0, 0.0625, -0.5, 7.875, 7.9375, -8.0, -8.0]
    q.sum().backward()
    assert x.grad.tolist() == [1, 1, 1, 1, 1, 0, 1, 0]  # no gradient where it saturates


def test_fixed_point_state_stays_on_the_int8_grid_in_both_layouts(digit_pixels):
    cfg = CAConfig(state_frac_bits=4)
    torch.manual_seed(3)
    m = CAModel(cfg)
    torch.nn.init.normal_(m.update2.weight, std=0.3)
    g = torch.Generator().manual_seed(0)
    state = seed_state(digit_pixels, cfg)
    plan = AliveCells(state[:, 0], cfg)
    hidden = plan.gather(state)
    for _ in range(10):
        fire = torch.rand(digit_pixels.shape, generator=g) <= 0.5
        state = ca_step(m, state, fire)
        hidden = ca_step(m, hidden, plan.cells(fire), cells=plan)
    q = state * 16
    assert torch.equal(q, q.round()) and q.min() >= -128 and q.max() <= 127
    # the layouts sum in different orders: a value landing on a rounding tie may differ by one step
    assert (plan.scatter(hidden, state[:, 0]) != state).float().mean() < 0.005


def test_learned_scales_receive_gradients_and_start_at_mean_abs(digit_pixels):
    cfg = CAConfig(quant="bwn", learned_scale=True)
    torch.manual_seed(0)
    m = CAModel(cfg)
    torch.testing.assert_close(m.perceive.scale, m.perceive.weight.abs().mean((1, 2, 3)))
    assert sum(p.numel() for p in m.parameters()) == cfg.param_count() == 22_499 + 80 + 80 + 19
    torch.nn.init.normal_(m.update2.weight, std=0.3)
    m.reset_scales()
    state = ca_step(m, seed_state(digit_pixels, cfg), torch.ones(digit_pixels.shape, dtype=torch.bool))
    state[:, -10:].pow(2).sum().backward()
    assert all(conv.scale.grad is not None and conv.scale.grad.abs().sum() > 0 for conv in m.convs())
    with torch.no_grad():
        m.update2.scale.fill_(-1.0)
    m.clip_latent_weights()
    assert m.update2.scale.min() > 0


def test_noisy_sign_is_binary_with_the_logistic_probability_and_the_expectations_gradient():
    from nca_edge.quant import noisy_sign

    g = torch.Generator().manual_seed(0)
    x = torch.tensor([-0.2, 0.0, 0.1, 0.3]).repeat(20000, 1).requires_grad_(True)
    q = noisy_sign(x, 0.1, g)
    assert set(q.unique().tolist()) == {-1.0, 1.0}
    p_plus = (q > 0).float().mean(0)
    np.testing.assert_allclose(p_plus.numpy(), torch.sigmoid(x[0].detach() / 0.1).numpy(), atol=0.02)
    q.sum().backward()
    t = torch.tanh(x[0].detach() / 0.2)
    np.testing.assert_allclose(x.grad[0].numpy(), ((1 - t * t) / 0.2).numpy(), rtol=1e-5)


def test_act_noise_is_training_only(digit_pixels):
    from nca_edge.ca import seed_state

    torch.manual_seed(0)
    m = CAModel(CAConfig(quant="ban"))
    torch.nn.init.normal_(m.update2.weight, std=0.2)  # the real init starts the last layer at zero
    s = seed_state(digit_pixels, m.cfg)
    exact = m(s)
    m.act_noise = (0.1, torch.Generator().manual_seed(1))
    assert not torch.equal(m(s), exact)  # noise changes the forward pass in training ...
    m.act_noise = None
    assert torch.equal(m(s), exact)  # ... and the default (inference) is the exact sign


def test_depthwise_perception_equals_a_grouped_conv_and_counts_9p_weights(digit_pixels):
    import torch.nn.functional as F

    from nca_edge.ca import seed_state

    cfg = CAConfig(depthwise=True)
    torch.manual_seed(0)
    m = CAModel(cfg)
    s = seed_state(digit_pixels, cfg)
    s[:, 1:] = torch.randn_like(s[:, 1:])
    dense = F.conv2d(F.pad(s, (1, 1, 1, 1)), m.dense_perceive_weight(), m.perceive.bias)
    grouped = F.conv2d(F.pad(s, (1, 1, 1, 1)), m.perceive.weight, m.perceive.bias, groups=cfg.channels)
    torch.testing.assert_close(dense, grouped)
    assert cfg.param_count() == CAConfig().param_count() - 9 * 20 * 80 + 9 * 80
    with pytest.raises(ValueError, match="perceive to real_weights"):
        CAConfig(quant="bnn", depthwise=True)


def test_act_noise_anneals_geometrically_then_holds():
    from nca_edge.config import TrainConfig

    tc = TrainConfig(act_noise=0.4, act_noise_end=0.1, act_noise_ramp=100)
    assert tc.act_sigma(0) == pytest.approx(0.4)
    assert tc.act_sigma(50) == pytest.approx(0.2)  # halfway in log space
    assert tc.act_sigma(100) == pytest.approx(0.1) and tc.act_sigma(10_000) == pytest.approx(0.1)
    assert TrainConfig(act_noise=0.3).act_sigma(10_000) == 0.3  # no ramp: constant
    with pytest.raises(ValueError, match="act_noise_end"):
        TrainConfig(act_noise=0.1, act_noise_end=0.2, act_noise_ramp=10)


def test_int4_weights_round_to_seven_levels_of_each_rows_max_over_seven_with_a_straight_through_gradient():
    from nca_edge.experimental import int4_weights

    w = torch.tensor([[0.7, -0.35, 0.04, 0.06], [-1.4, 0.5, 0.0, 0.1]], requires_grad=True)
    q = int4_weights(w)
    # row 0: s = 0.1 -> 7, -3.5 (round half to even: -4), 0.4 (0), 0.6 (1); row 1: s = 0.2
    torch.testing.assert_close(q.detach(), torch.tensor([[0.7, -0.4, 0.0, 0.1], [-1.4, 0.4, 0.0, 0.0]]))
    q.sum().backward()
    torch.testing.assert_close(w.grad, torch.ones_like(w))


def test_int4_layers_are_counted_at_four_bits_used_in_the_step_and_validated():
    from nca_edge.size import kernel_bits, tensor_table

    cfg = CAConfig(quant="bnn", perception=40, hidden=64, real_weights=("perceive", "update2"),
                   int4=("perceive", "update2"))
    table = {t.name: t for t in tensor_table(cfg)}
    assert table["perceive.weight"].bits == 4 and table["perceive.weight"].nbytes == 40 * 20 * 9 // 2
    assert table["update2.weight"].nbytes == 19 * 64 // 2 and table["update2.scale"].note == "int4 kernel scale"
    assert kernel_bits(cfg) == "4,1,4"
    model = CAModel(CAConfig(quant="ban", perception=12, hidden=6, int4=("update1",)))
    w = model.kernels()[1]
    levels = (w / (model.update1.weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 7)).detach()
    torch.testing.assert_close(levels, levels.round())
    assert not torch.equal(w, model.update1.weight)
    dw = CAModel(CAConfig(quant="ban", depthwise=True, perception=40, int4=("perceive",)))
    w = dw.kernels()[0]
    levels = w / (dw.perceive.weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 7)
    torch.testing.assert_close(levels, levels.round())
    assert not torch.equal(w, dw.dense_perceive_weight())
    for bad in (dict(quant="bnn", int4=("update1",)), dict(quant="ban", int4=("conv9",)),
                dict(quant="ban", int4=("update1", "update1"))):
        with pytest.raises(ValueError):
            CAConfig(**bad)
