"""Warm starts derived from a trained model: widening the hidden layer by splitting units, and
narrowing the perception and hidden layers by dropping units."""

import pytest
import torch

from nca_edge.config import CAConfig
from nca_edge.model import CAModel
from nca_edge.warm_start import activation_stats, narrow, widen_hidden


def _trained_like(cfg: CAConfig) -> CAModel:
    """A model with every tensor non-zero (update2 is zero-initialised in a fresh model, and a
    binary layer's bias too: with a zero bias an XNOR sum of equal terms can be exactly 0, whose
    sign then depends on the summation order of the machine's matrix kernel)."""
    torch.manual_seed(0)
    model = CAModel(cfg)
    with torch.no_grad():
        model.update1.bias.uniform_(-0.1, 0.1)
        model.update2.weight.uniform_(-0.5, 0.5)
        model.update2.bias.uniform_(-0.1, 0.1)
    return model


@pytest.mark.parametrize("cfg", [
    CAConfig(perception=12, hidden=6),
    CAConfig(quant="bwn", perception=12, hidden=6, real_weights=("perceive", "update2"), learned_scale=True),
    CAConfig(quant="bnn", perception=12, hidden=6, real_weights=("perceive",)),
], ids=["float", "bwn-learned-scale", "bnn"])
def test_widening_without_noise_computes_the_same_update(cfg):
    src = _trained_like(cfg)
    wide = widen_hidden(src, factor=3, noise=0.0)
    assert wide.cfg.hidden == 18 and wide.update1.weight.shape[0] == 18
    state = torch.randn(2, cfg.channels, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(wide(state), src(state), rtol=1e-5, atol=1e-5)


def test_noise_breaks_the_symmetry_of_the_copies_but_not_the_first():
    cfg = CAConfig(quant="bwn", perception=12, hidden=6, real_weights=("perceive", "update2"))
    src = _trained_like(cfg)
    wide = widen_hidden(src, factor=2, noise=0.5, seed=1)
    w_src, w = src.update1.weight.detach(), wide.update1.weight.detach()
    torch.testing.assert_close(w[:6], w_src)
    assert (torch.sign(w[6:]) != torch.sign(w_src)).any()
    assert w.abs().max() <= 1.0  # latent binary weights stay clipped
    w2 = wide.update2.weight.detach()
    torch.testing.assert_close(w2[:, :6] + w2[:, 6:], src.update2.weight.detach())
    again = widen_hidden(src, factor=2, noise=0.5, seed=1)
    assert torch.equal(again.update1.weight, wide.update1.weight)  # deterministic given the seed


def test_a_widen_stage_records_how_it_widened(tmp_path):
    """A recipe's widen stage writes the widened checkpoint with the widening (factor, noise, seed)
    and the recipe in its sidecar; its tensors are widen_hidden's."""
    import json

    from nca_edge.checkpoint import load_checkpoint, save_checkpoint
    from nca_edge.config import Config
    from nca_edge.data import load_digits
    from nca_edge.recipe import parse_recipe
    from train.recipes import run_recipe

    cfg = CAConfig(quant="bwn", perception=12, hidden=6, real_weights=("perceive", "update2"))
    save_checkpoint(tmp_path / "src", _trained_like(cfg), Config(ca=cfg))
    text = f"[[stage]]\nname = 'w'\nkind = 'widen'\ninit = '{tmp_path / 'src'}'\nfactor = 2\nnoise = 0.2\nseed = 3\n"
    run_recipe(parse_recipe(text, "wide"), tmp_path / "run", load_digits(), say=lambda _: None)
    meta = json.loads((tmp_path / "run" / "w" / "model.json").read_text())
    assert meta["widening"] == {"factor": 2, "noise": 0.2, "seed": 3} and meta["recipe_toml"] == text
    wide, config, _ = load_checkpoint(tmp_path / "run" / "w" / "model")
    assert config.ca.hidden == 12
    assert torch.equal(wide.update1.weight, widen_hidden(_trained_like(cfg), 2, 0.2, seed=3).update1.weight)


@pytest.mark.parametrize("cfg", [
    CAConfig(quant="ban", perception=12, hidden=8),
    CAConfig(quant="bnn", perception=12, hidden=8, real_weights=("perceive", "update2"), learned_scale=True),
], ids=["ban", "bnn-learned-scale"])
def test_narrowing_drops_the_constant_units_and_folds_them_into_the_biases(cfg):
    """Units whose binary activation never changes carry no information: narrowing drops exactly
    them (zero variance, the lowest score) and folds their constant into the next layer's bias, so
    the narrowed model computes the same update on any state."""
    src = _trained_like(cfg)
    with torch.no_grad():
        src.update1.bias.uniform_(0.01, 0.05)  # no exact ties at 0 (binary sums are integers)
        src.perceive.bias[[1, 5, 9]] = -1e4  # perception features 1, 5, 9: always -1
        src.update1.bias[[0, 6]] = 1e4  # hidden units 0, 6: always +1
    pixels = torch.rand(3, 8, 8)
    small = narrow(src, perception=9, hidden=6, stats=activation_stats(src, pixels, steps=4))
    assert (small.cfg.perception, small.cfg.hidden) == (9, 6)
    kept_p = [0, 2, 3, 4, 6, 7, 8, 10, 11]
    torch.testing.assert_close(small.perceive.weight, src.perceive.weight[kept_p])
    torch.testing.assert_close(small.update1.weight, src.update1.weight[[1, 2, 3, 4, 5, 7]][:, kept_p])
    state = torch.randn(2, cfg.channels, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(small(state), src(state), rtol=1e-5, atol=1e-4)


def test_narrowing_keeps_the_units_whose_loss_costs_most():
    cfg = CAConfig(quant="ban", perception=12, hidden=8)
    src = _trained_like(cfg)
    with torch.no_grad():
        src.update2.weight[:, 3] *= 100.0  # hidden unit 3 matters most downstream
        src.update2.weight[:, 4] = 0.0  # hidden unit 4 does not matter at all
    small = narrow(src, perception=12, hidden=1, stats=activation_stats(src, torch.rand(3, 8, 8), steps=4))
    torch.testing.assert_close(small.update1.weight, src.update1.weight[[3]])
    small = narrow(src, perception=12, hidden=7, stats=activation_stats(src, torch.rand(3, 8, 8), steps=4))
    torch.testing.assert_close(small.update1.weight, src.update1.weight[[0, 1, 2, 3, 5, 6, 7]])


def test_a_narrow_stage_records_how_it_narrowed_and_refuses_a_wider_target(tmp_path):
    import json

    from nca_edge.checkpoint import load_checkpoint, save_checkpoint
    from nca_edge.config import Config
    from nca_edge.data import load_digits
    from nca_edge.errors import NCAEdgeError
    from nca_edge.recipe import parse_recipe
    from train.recipes import run_recipe

    cfg = CAConfig(quant="ban", perception=12, hidden=8)
    save_checkpoint(tmp_path / "src", _trained_like(cfg), Config(ca=cfg))
    stage = f"[[stage]]\nname = 'n'\nkind = 'narrow'\ninit = '{tmp_path / 'src'}'\n"
    run_recipe(parse_recipe(stage + "perception = 10\nhidden = 4\n", "thin"), tmp_path / "run", load_digits(), say=lambda _: None)
    meta = json.loads((tmp_path / "run" / "n" / "model.json").read_text())
    assert meta["narrowing"] == {"perception": 10, "hidden": 4, "digits": 64, "steps": 60}
    small, config, _ = load_checkpoint(tmp_path / "run" / "n" / "model")
    assert (config.ca.perception, config.ca.hidden) == (10, 4) and small.update1.weight.shape[:2] == (4, 10)
    with pytest.raises(NCAEdgeError, match="cannot narrow"):
        run_recipe(parse_recipe(stage + "perception = 13\nhidden = 4\n", "wide"), tmp_path / "bad", load_digits(), say=lambda _: None)
    assert not (tmp_path / "bad" / "n" / "model.json").exists()
