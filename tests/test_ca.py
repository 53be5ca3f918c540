"""The CA step's invariants: dead cells never change, the pixel is immutable, masks gate updates."""

import torch

from nca_edge.ca import alive_mask, ca_step, mutate, random_masks, seed_state
from nca_edge.config import CAConfig
from nca_edge.model import CAModel


def test_default_model_has_the_articles_22499_parameters(cfg):
    assert cfg.param_count() == 22_499
    assert sum(p.numel() for p in CAModel(cfg).parameters()) == 22_499


def test_shapes(random_model, digit_pixels, cfg):
    state = seed_state(digit_pixels, cfg)
    assert state.shape == (4, 20, 28, 28)
    assert random_model(state).shape == (4, 19, 28, 28)


def test_untrained_model_is_the_identity(digit_pixels, cfg):
    model = CAModel(cfg)  # zero-initialised last layer
    state = seed_state(digit_pixels, cfg)
    out = ca_step(model, state, torch.ones(4, 28, 28, dtype=torch.bool))
    assert torch.equal(out, state)


def test_dead_cells_stay_exactly_zero_and_pixels_never_change(random_model, digit_pixels, cfg):
    masks = random_masks(0.5, seed=0)
    state = seed_state(digit_pixels, cfg)
    dead = ~alive_mask(state, cfg)
    for t in range(100):
        noise = torch.randn(state[:, 1:].shape) * 0.02
        state = ca_step(random_model, state, masks(t, (4, 28, 28)), noise)
    assert torch.equal(state[:, 0], digit_pixels)
    assert torch.count_nonzero(state[:, 1:] * dead) == 0
    assert torch.count_nonzero(state[:, 1:] * ~dead) > 0  # alive cells did change


def test_cells_that_do_not_fire_keep_their_state(random_model, digit_pixels, cfg):
    state = seed_state(digit_pixels, cfg)
    state = ca_step(random_model, state, torch.ones(4, 28, 28, dtype=torch.bool))
    fire = torch.rand(4, 28, 28) < 0.5
    nxt = ca_step(random_model, state, fire)
    still = (~fire).unsqueeze(1).expand_as(state)
    assert torch.equal(nxt[still], state[still])
    moved = (fire.unsqueeze(1) & alive_mask(state, cfg)).expand(-1, 19, -1, -1)
    assert not torch.equal(nxt[:, 1:][moved], state[:, 1:][moved])


def test_mutation_keeps_state_only_where_the_new_digit_is_alive(digit_pixels, cfg):
    state = seed_state(digit_pixels[:1], cfg)
    state[:, 1:] = 1.0 * alive_mask(state, cfg)  # old digit's cells hold 1s
    new = digit_pixels[1:2]
    out = mutate(state, new, cfg)
    old_alive = digit_pixels[0] > 0.1
    new_alive = new[0] > 0.1
    assert torch.equal(out[0, 0], new[0])
    both = old_alive & new_alive
    assert torch.all(out[0, 1:, both] == 1.0)
    assert torch.all(out[0, 1:, ~both] == 0.0)  # erased where the new digit is dead, zero where newly alive


def test_random_masks_are_deterministic_and_near_the_fire_rate():
    a, b = random_masks(0.5, seed=7), random_masks(0.5, seed=7)
    ma, mb = a(0, (8, 28, 28)), b(0, (8, 28, 28))
    assert torch.equal(ma, mb)
    assert 0.45 < ma.float().mean() < 0.55


def test_config_rejects_unknown_variant():
    import pytest

    with pytest.raises(ValueError):
        CAConfig(quant="int3")


def test_preactivations_are_what_the_hidden_activations_are_taken_of(digit_pixels):
    for quant, act in (("float", torch.relu), ("bnn", lambda x: torch.where(x >= 0, 1.0, -1.0))):
        cfg = CAConfig(quant=quant, real_weights=("perceive",) if quant == "bnn" else ())
        torch.manual_seed(0)
        model = CAModel(cfg)
        for p in model.parameters():  # the untrained model's update is zero: give it real weights
            p.data.normal_(0, 0.3)
        state = seed_state(digit_pixels, cfg)
        state[:, 1:] = torch.randn_like(state[:, 1:]) * (state[:, :1] > 0)
        with torch.no_grad():
            pre, hid = model.preactivations(state)
            a1, a2 = model.activations(state)
        assert pre.shape[-1] == cfg.perception and hid.shape[-1] == cfg.hidden
        assert torch.equal(act(pre), a1) and torch.equal(act(hid), a2)
        assert (pre != 0).float().mean() > 0.5 and (hid != 0).float().mean() > 0.5
