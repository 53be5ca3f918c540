"""The article's metrics: hand-computed cases, determinism, batch-size independence."""

import numpy as np
import pytest
import torch

from nca_edge.cells import AliveCells
from nca_edge.config import CAConfig
from nca_edge.data import load_digits
from firmware_sim.protocol import mutation_targets
from nca_edge.evaluate import EvalResult, _step_metrics, evaluate, markdown_table


def test_step_metrics_on_a_hand_made_example():
    cfg = CAConfig(channels=11, n_classes=10)  # mutable channels = the 10 scores
    px = torch.zeros(3, 2, 2)
    px[0] = 1.0  # 4 alive cells
    px[1, 0, 0] = px[1, 1, 1] = 1.0  # 2 alive cells
    px[2, 0, 1] = 1.0  # 1 alive cell
    plan = AliveCells(px, cfg)
    labels_per_cell = [2, 2, 2, 2, 5, 3, 9]  # sample 0 all say 2; sample 1 disagrees; sample 2 says 9
    hidden = torch.nn.functional.one_hot(torch.tensor(labels_per_cell), 10).float()
    y = torch.tensor([2, 3, 4])
    correct, alive, agree = _step_metrics(hidden, plan, y, 10)
    assert (correct, alive, agree) == (4 + 1 + 0, 7, 2)  # agreement counts samples 0 and 2 (wrong but unanimous)


def test_mutation_targets_are_a_seeded_derangement():
    t = mutation_targets(50, seed=3)
    assert np.all(t != np.arange(50)) and t.min() >= 0 and t.max() < 50
    assert np.array_equal(t, mutation_targets(50, seed=3))
    assert not np.array_equal(t, mutation_targets(50, seed=4))


def test_summary_reads_step_200_and_top_before_mutation():
    acc = np.linspace(10, 90, 400)
    acc[99] = 95.0  # the top before mutation
    acc[300] = 99.0  # after mutation: not a "top"
    r = EvalResult(accuracy=acc, agreement=acc / 2, n_digits=1, steps=400, mutate_at=200, mask_seed=0)
    s = r.summary()
    assert s["top_accuracy"] == 95.0 and s["top_accuracy_step"] == 100
    assert s["accuracy_200"] == round(acc[199], 2) and s["accuracy_400"] == 90.0
    assert "| 95.0 at 100 |" in markdown_table([{"model": "m", **s}])


@pytest.fixture(scope="module")
def test_digits():
    d = load_digits("mnist")
    return d.test_x[:6], d.test_y[:6]


def test_results_do_not_depend_on_batch_size(random_model, test_digits):
    x, y = test_digits
    a = evaluate(random_model, x, y, steps=8, mutate_at=4, batch_size=6)
    b = evaluate(random_model, x, y, steps=8, mutate_at=4, batch_size=2)
    np.testing.assert_allclose(a.accuracy, b.accuracy)
    np.testing.assert_allclose(a.agreement, b.agreement)


def test_mask_seed_changes_the_trajectory(random_model, test_digits):
    x, y = test_digits
    a = evaluate(random_model, x, y, steps=6, mutate_at=None, mask_seed=0)
    b = evaluate(random_model, x, y, steps=6, mutate_at=None, mask_seed=1)
    assert not np.allclose(a.accuracy, b.accuracy)


def test_shipped_model_beats_chance_on_a_few_digits(test_digits):
    from nca_edge.checkpoint import load_checkpoint, resolve_model

    model, _, _ = load_checkpoint(resolve_model("float"))
    d = load_digits("mnist")
    r = evaluate(model, d.test_x[:40], d.test_y[:40], steps=60, mutate_at=None)
    assert r.accuracy[-1] > 30.0  # chance is 10%
