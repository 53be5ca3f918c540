"""The alive-cell fast path computes exactly the CA step's numbers (the trainer relies on it)."""

import torch

from nca_edge.ca import alive_mask, ca_step, seed_state
from nca_edge.cells import AliveCells


def test_forward_cells_equals_dense_conv(random_model, digit_pixels, cfg):
    state = seed_state(digit_pixels, cfg)
    state[:, 1:] = torch.randn_like(state[:, 1:]) * alive_mask(state, cfg)
    plan = AliveCells(digit_pixels, cfg)
    dense = random_model(state)[plan.b, :, plan.y, plan.x]
    cells = random_model.forward_cells(plan.patches(plan.gather(state)))
    torch.testing.assert_close(cells, dense, atol=1e-5, rtol=1e-5)


def test_twenty_steps_with_noise_and_masks_match_ca_step(random_model, digit_pixels, cfg):
    g = torch.Generator().manual_seed(0)
    state = seed_state(digit_pixels, cfg)
    plan = AliveCells(digit_pixels, cfg)
    hidden = plan.gather(state)
    for _ in range(20):
        fire = torch.rand(digit_pixels.shape, generator=g) <= 0.5
        noise = torch.randn(state[:, 1:].shape, generator=g) * 0.02
        state = ca_step(random_model, state, fire, noise)
        hidden = ca_step(random_model, hidden, plan.cells(fire), plan.cells(noise.permute(0, 2, 3, 1)), cells=plan)
    torch.testing.assert_close(plan.scatter(hidden, digit_pixels), state, atol=1e-4, rtol=1e-4)


def test_gradients_match_dense_path(random_model, digit_pixels, cfg):
    g = torch.Generator().manual_seed(3)
    fires = [torch.rand(digit_pixels.shape, generator=g) <= 0.5 for _ in range(5)]
    plan = AliveCells(digit_pixels, cfg)

    state = seed_state(digit_pixels, cfg)
    for f in fires:
        state = ca_step(random_model, state, f)
    (state[:, -10:] ** 2).sum().backward()
    dense_grads = [p.grad.clone() for p in random_model.parameters()]
    random_model.zero_grad()

    hidden = plan.gather(seed_state(digit_pixels, cfg))
    for f in fires:
        hidden = ca_step(random_model, hidden, plan.cells(f), cells=plan)
    (hidden[:, -10:] ** 2).sum().backward()
    for a, b in zip(dense_grads, [p.grad for p in random_model.parameters()]):
        torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-4)


def test_plan_counts_alive_cells_per_sample(digit_pixels, cfg):
    plan = AliveCells(digit_pixels, cfg)
    expected = (digit_pixels > cfg.alive_threshold).flatten(1).sum(1)
    assert plan.counts.tolist() == expected.tolist()
    assert plan.n == int(expected.sum())
