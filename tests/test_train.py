"""The trainer: the loss, the lr schedule, learning on a small subset, exact resume."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from nca_edge.cells import AliveCells
from nca_edge.config import CAConfig, Config, TrainConfig
from nca_edge.data import Digits, load_digits
from train import Trainer, cell_loss, train


def test_l2_loss_on_a_hand_made_case():
    cfg = CAConfig(channels=13, n_classes=10)  # 12 mutable: 2 hidden + 10 scores
    px = torch.zeros(2, 3, 3)
    px[0, 0, 0] = px[0, 1, 1] = 1.0  # sample 0: two alive cells
    px[1, 2, 2] = 1.0  # sample 1: one alive cell
    plan = AliveCells(px, cfg)
    hidden = torch.zeros(plan.n, 12)
    hidden[0, 2 + 3] = 1.0  # cell (0,0,0) says 3: correct -> 0
    hidden[1, 2 + 5] = 0.5  # cell (0,1,1) says 5 weakly: (0.5)^2 + (1)^2 = 1.25
    hidden[2, 2 + 7] = 2.0  # sample 1's cell says 7 with 2.0; label 7 -> (1)^2 = 1
    labels = torch.tensor([3, 7])
    # sample 0: mean(0, 1.25) = 0.625; sample 1: 1.0; batch mean 0.8125
    assert float(cell_loss(hidden, plan, labels, 10)) == pytest.approx(0.8125)


def test_piecewise_learning_rate():
    tc = TrainConfig()
    assert tc.lr_at(0) == 1e-3 and tc.lr_at(29_999) == 1e-3
    assert tc.lr_at(30_000) == pytest.approx(1e-4) and tc.lr_at(70_000) == pytest.approx(1e-5)


@pytest.fixture(scope="module")
def small_digits():
    d = load_digits("mnist")
    return Digits(d.train_x[:200], d.train_y[:200], d.test_x[:50], d.test_y[:50], "mnist", d.source_sha256)


def small_config(iterations, **kw):
    tc = TrainConfig(iterations=iterations, batch_size=8, pool_size=32, n_fresh=2, n_mutate=2, steps=10,
                     lr=2e-3, checkpoint_every=5, **kw)
    return Config(ca=CAConfig(), train=tc)


def _probe_loss(model, digits: Digits, n=32, steps=10) -> float:
    """Loss on a fixed batch after a fixed number of all-firing steps (no noise)."""
    from nca_edge.ca import ca_step, seed_state
    from nca_edge.data import to_float

    px = torch.from_numpy(to_float(digits.train_x[:n]))
    plan = AliveCells(px, model.cfg)
    hidden = plan.gather(seed_state(px, model.cfg))
    with torch.no_grad():
        for _ in range(steps):
            hidden = ca_step(model, hidden, torch.ones(plan.n, dtype=torch.bool), cells=plan)
    return float(cell_loss(hidden, plan, torch.from_numpy(digits.train_y[:n].astype("int64")), 10))


def test_a_short_run_on_a_small_subset_lowers_the_loss(tmp_path, small_digits):
    t = Trainer(small_config(60), small_digits, tmp_path, torch.device("cpu"))
    before = _probe_loss(t.model, small_digits)
    assert before == pytest.approx(1.0)  # the untrained CA is the identity: scores 0 -> loss 1
    for _ in range(60):
        t.train_step()
    assert _probe_loss(t.model, small_digits) < before - 0.02


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, small_digits):
    full = train(small_config(10), small_digits, tmp_path / "a", device="cpu", progress=False, recipe="x")
    train(small_config(5), small_digits, tmp_path / "b", device="cpu", progress=False, recipe="x")
    resumed = train(small_config(10), small_digits, tmp_path / "b", device="cpu", resume=True, progress=False, recipe="x")
    assert resumed.iteration == 10
    for (n, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), n
    assert torch.equal(full.pool_x, resumed.pool_x)
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == [str(i) for i in range(1, 11)]


def test_every_save_keeps_a_snapshot_of_the_model(tmp_path, small_digits):
    from nca_edge.checkpoint import load_checkpoint

    cfg = small_config(4)
    cfg = Config(ca=cfg.ca, train=replace(cfg.train, checkpoint_every=2))
    t = train(cfg, small_digits, tmp_path / "r", device="cpu", progress=False, recipe="x")
    snaps = sorted(p.name for p in (tmp_path / "r" / "snapshots").glob("*.safetensors"))
    assert snaps == ["model-000002.safetensors", "model-000004.safetensors"]
    last, _, meta = load_checkpoint(tmp_path / "r" / "snapshots" / "model-000004")
    assert meta["iterations"] == 4
    for a, b in zip(last.state_dict().values(), t.model.state_dict().values()):
        assert torch.equal(a, b)


def test_same_seed_same_weights_different_seed_different_weights(tmp_path, small_digits):
    runs = [Trainer(small_config(3, seed=s), small_digits, tmp_path / str(i), torch.device("cpu"))
            for i, s in enumerate((4, 4, 5))]
    for r in runs:
        for _ in range(3):
            r.train_step()
    w = [r.model.update2.weight for r in runs]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path, small_digits):
    from nca_edge.errors import NCAEdgeError

    with pytest.raises(NCAEdgeError, match="no train_state"):
        train(small_config(2), small_digits, tmp_path / "r", device="cpu", resume=True, progress=False)
    train(small_config(2), small_digits, tmp_path / "r", device="cpu", progress=False)
    with pytest.raises(NCAEdgeError, match="already holds a training run"):
        train(small_config(2), small_digits, tmp_path / "r", device="cpu", progress=False)


def test_checkpoint_records_recipe_data_and_iterations(tmp_path, small_digits):
    from nca_edge.checkpoint import load_checkpoint

    train(small_config(5), small_digits, tmp_path, device="cpu", progress=False, recipe="nca-edge train --x")
    _, config, meta = load_checkpoint(tmp_path / "model")
    assert config.train.iterations == 5 and meta["iterations"] == 5
    assert meta["recipe"] == "nca-edge train --x"
    assert meta["data"] == {"dataset": "mnist", "sha256": small_digits.source_sha256}
    assert meta["train_seconds"] >= 0 and meta["device"].startswith("cpu")


def test_cuda_request_without_cuda_is_a_clear_error():
    from nca_edge.errors import NCAEdgeError
    from train import pick_device

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(NCAEdgeError, match="no CUDA device"):
        pick_device("cuda")


def test_sigterm_stops_after_the_current_iteration_with_a_checkpoint(tmp_path, small_digits, monkeypatch):
    import os
    import signal

    t = Trainer(small_config(50), small_digits, tmp_path, torch.device("cpu"))
    real_step = t.train_step

    def step():
        loss = real_step()
        if t.iteration == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(t, "train_step", step)
    t.run(progress=False)
    assert t.interrupted and t.iteration == 3
    assert Trainer.read_state_meta(tmp_path)["iteration"] == 3
    assert signal.getsignal(signal.SIGTERM) is not None  # handlers restored


def test_a_non_finite_loss_stops_training_with_a_clear_error(tmp_path, small_digits):
    from nca_edge.errors import NCAEdgeError

    t = Trainer(small_config(5), small_digits, tmp_path, torch.device("cpu"))
    with torch.no_grad():
        t.model.update2.bias.fill_(float("nan"))
    with pytest.raises(NCAEdgeError, match="loss became nan at iteration 1"):
        t.train_step()


def test_distillation_term_is_zero_for_an_identical_teacher_and_positive_otherwise(tmp_path, small_digits):
    from nca_edge.checkpoint import save_checkpoint

    base = small_config(1)
    plain = Trainer(base, small_digits, tmp_path / "p", torch.device("cpu"))
    save_checkpoint(tmp_path / "same", plain.model, base)  # the student's own initial weights
    other = Trainer(replace(base, train=replace(base.train, seed=9)), small_digits, tmp_path / "o", torch.device("cpu"))
    torch.nn.init.normal_(other.model.update2.weight, std=0.1)
    save_checkpoint(tmp_path / "other", other.model, base)

    def first_loss(teacher):
        cfg = replace(base, train=replace(base.train, distill_from=str(tmp_path / teacher), distill_weight=1.0))
        return Trainer(cfg, small_digits, tmp_path / teacher / "run", torch.device("cpu")).train_step()

    reference = Trainer(base, small_digits, tmp_path / "r", torch.device("cpu")).train_step()
    assert first_loss("same") == pytest.approx(reference, abs=1e-6)
    assert first_loss("other") > reference + 1e-3
