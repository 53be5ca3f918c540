"""nca-edge robustness: the fault models, the baseline CNN's integer semantics, the rows."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from export import robustness as rb
from firmware_sim import cnn as cnn_sim
from firmware_sim import faults as F
from firmware_sim.int8 import int_matmul
from nca_edge.data import load_digits


@pytest.fixture(scope="module")
def digits():
    return load_digits("mnist")


@pytest.fixture(scope="module")
def bnn_step():
    return rb.ca_step("bnn")


@pytest.fixture(scope="module")
def cnn2k(digits):
    """(the shipped cnn-2k's tflite-int8 bytes, its firmware_sim parameters)."""
    from export.cnn_export import interpreter, quantization, tflite_int8_bytes
    from nca_edge.baseline import load

    model, _ = load("cnn-2k")
    data = tflite_int8_bytes(model, rb.calibration_images(digits))
    return data, cnn_sim.derive(quantization(interpreter(data)))


# ------------------------------------------------------------------ integer arithmetic


def test_int_matmul_is_the_integer_product_also_past_float_precision():
    rng = np.random.default_rng(0)
    a = rng.integers(-255, 256, (300, 180))
    b = rng.integers(-128, 128, (180, 80))
    assert np.array_equal(int_matmul(a, b), a.astype(np.int64) @ b.astype(np.int64))
    big = rng.integers(-(2**40), 2**40, (5, 7))  # bound past 2**53: the int64 path
    assert np.array_equal(int_matmul(big, b[:7]), big @ b[:7].astype(np.int64))


def test_baseline_cnn_in_firmware_sim_is_bit_exact_with_tflite_and_tflite_micro(cnn2k, digits, tmp_path):
    """Every logit, on test digits and on random images (which reach far more accumulator values),
    in TFLite's reference kernels and in TensorFlow Lite Micro's."""
    from export import tflm
    from export.cnn_export import interpreter, run_tflite

    data, p = cnn2k
    it = interpreter(data)
    assert [o["op_name"] for o in it._get_ops_details()] == ["CONV_2D"] * 4 + ["RESHAPE"]
    assert {np.dtype(t["dtype"]) for t in it.get_tensor_details()} <= {np.dtype(np.int8), np.dtype(np.int32)}
    grey = np.concatenate([digits.test_x[:300], np.random.default_rng(0).integers(0, 256, (2000, 28, 28), np.uint8)])
    assert np.array_equal(run_tflite(it, grey), cnn_sim.forward(p, grey))
    if not tflm.available():
        pytest.skip("tflite-micro is not installed")
    f = tmp_path / "cnn.tflite"
    f.write_bytes(data)
    micro = tflm.interpreter(f)
    lut = p.pixel_lut
    got = []
    for g in grey[:400]:
        micro.set_input(lut[g][None, :, :, None], 0)
        micro.invoke()
        got.append(micro.get_output(0)[0].copy())
    assert np.array_equal(np.stack(got), cnn_sim.forward(p, grey[:400]))


def test_baseline_accuracy_and_macs_match_the_shipped_record(cnn2k, digits):
    from nca_edge.baseline import load

    _, p = cnn2k
    _, meta = load("cnn-2k")
    acc = 100 * float(np.mean(cnn_sim.classify(p, digits.test_x) == digits.test_y))
    assert round(acc, 2) == meta["int8_test_accuracy"]
    assert cnn_sim.macs(p) == 13 * 13 * 4 * 9 + 6 * 6 * 8 * 9 * 4 + 2 * 2 * 16 * 9 * 8 + 10 * 2 * 2 * 16


# ------------------------------------------------------------------ fault models


def test_bit_flips_at_rate_zero_change_nothing_and_at_rate_one_invert_every_bit():
    a = np.random.default_rng(0).integers(-128, 128, (4, 5, 6), dtype=np.int8)
    assert np.array_equal(F.flip_bits(a, 0.0, np.random.default_rng(1)), a)
    assert np.array_equal(F.flip_bits(a, 1.0, np.random.default_rng(1)), ~a)


def test_bit_flips_hit_about_rate_of_the_bits_deterministically():
    a = np.zeros(200_000, np.int8)
    out = F.flip_bits(a, 1e-2, np.random.default_rng(7))
    flipped = int(np.unpackbits(out.view(np.uint8)).sum())
    assert 0.9e-2 * a.size * 8 < flipped < 1.1e-2 * a.size * 8
    assert np.array_equal(out, F.flip_bits(a, 1e-2, np.random.default_rng(7)))


def test_stuck_bits_force_a_value_only_where_they_hit():
    a = np.zeros(100_000, np.int8)
    stuck = F.stick_bits(a, 1e-2, np.random.default_rng(0))
    ones = int(np.unpackbits(stuck.view(np.uint8)).sum())
    assert 0.4e-2 * a.size * 8 < ones < 0.6e-2 * a.size * 8  # half the stuck bits are stuck at 1
    full = np.full(100_000, -1, np.int8)  # every bit 1: stuck-at-1 changes nothing, stuck-at-0 clears it
    cleared = a.size * 8 - int(np.unpackbits(F.stick_bits(full, 1.0, np.random.default_rng(0)).view(np.uint8)).sum())
    assert 0.45 * a.size * 8 < cleared < 0.55 * a.size * 8


def test_a_binary_kernel_stores_one_bit_per_weight_and_a_flip_negates_it():
    w = np.where(np.random.default_rng(0).random((8, 1, 1, 64)) < 0.5, -90, 90).astype(np.int8)
    w[3] = np.where(w[3] < 0, -20, 20)
    assert F.kernel_bits(w) == w.size
    hit = F.fault_kernel(w, "flip", 1.0, np.random.default_rng(0))
    assert np.array_equal(hit, -w)
    int8_w = w.copy()
    int8_w[0, 0, 0, 0] = 5
    assert F.kernel_bits(int8_w) == 8 * w.size


def test_the_bnn_stores_its_xnor_kernel_as_bits(bnn_step):
    step, _ = bnn_step
    assert F.binary_rows(step.conv2.weight) is not None  # the XNOR hidden layer
    assert F.binary_rows(step.conv1.weight) is None and F.binary_rows(step.conv3.weight) is None
    bits = F.stored_kernel_bits(step)
    assert bits == 8 * step.conv1.weight.size + step.conv2.weight.size + 8 * step.conv3.weight.size


def test_weight_faults_touch_kernels_only(bnn_step):
    step, _ = bnn_step
    hit = F.weight_faults(step, "flip", 1e-2, np.random.default_rng(0))
    assert not np.array_equal(hit.conv1.weight, step.conv1.weight)
    assert np.array_equal(hit.conv1.bias, step.conv1.bias) and np.array_equal(hit.conv1.multiplier, step.conv1.multiplier)
    assert hit.add == step.add and hit.alive_min == step.alive_min


def test_a_dead_cell_reads_empty_and_never_updates(bnn_step, digits):
    """What a step makes of a dead cell (before the hook clears it again) is still empty: its
    neighbours read zeros and it never fired; and the metrics leave it out (it is not alive)."""
    step, ca = bnn_step
    seen = []

    class Spy(rb.CAFault):
        def state(self, ids, t, s):
            before = s.copy()
            s = super().state(ids, t, s)
            seen.append((t, self.dead.copy(), before))
            return s

    from firmware_sim.protocol import run_int8

    run_int8(step, digits.test_x[:3], digits.test_y[:3].astype(np.int64), 10, 20, None, 0, "sync", 0.5,
             fault=Spy("dead_cells", 0.3, 0, 0))
    stepped = [(dead, s) for t, dead, s in seen if t >= 0]
    assert len(stepped) == 20
    for dead, s in stepped:
        assert dead.any()
        assert np.all(s[dead][:, 1:] == step.state_zero) and np.all(s[dead][:, 0] < step.alive_min)


# ------------------------------------------------------------------ input corruptions


def test_input_corruptions_are_seeded_and_keep_the_image_format(digits):
    g = digits.test_x[:6]
    for fault in rb.INPUT_FAULTS:
        for rate in rb.RATES[fault]:
            a = rb.corrupt(g, fault, rate, np.random.default_rng(3))
            b = rb.corrupt(g, fault, rate, np.random.default_rng(3))
            assert a.dtype == np.uint8 and np.array_equal(a, b), fault
            assert a.shape == (g.shape if fault != "scale" or rate <= 1 else (6, round(28 * rate), round(28 * rate)))
    assert np.array_equal(rb.corrupt(g, "invert", 1, None), 255 - g)
    assert np.array_equal(rb._shifted(g[0], 0, 0), g[0])
    assert np.array_equal(rb.crop28(rb.rescale(g, 2.0)).shape, (6, 28, 28))


# ------------------------------------------------------------------ rows


def test_every_fault_at_rate_zero_is_the_clean_run(bnn_step, digits):
    step, ca = bnn_step
    g, y = digits.test_x[:4], digits.test_y[:4].astype(np.int64)
    clean = rb.ca_row(step, ca, g, y, "none", 0, 0, 0, 60)
    for fault in ("state_bitflip", "weight_bitflip", "weight_stuck", "dead_cells", "dropped_updates"):
        assert rb.ca_row(step, ca, g, y, fault, 0, 0, 0, 60) == clean, fault


def test_robustness_rows_cover_every_fault_for_the_ca_and_the_cnn(bnn_step, cnn2k, digits):
    derived = {("ca", "bnn"): bnn_step, ("cnn", "cnn-2k"): cnn2k[1]}
    rows = rb.robustness(["bnn"], ["cnn-2k"], digits, 2, seed=0, progress=False, derived=derived)
    got = {(r["kind"], r["fault"]) for r in rows}
    for fault in rb.FAULTS:
        assert ("ca", fault) in got
        assert (("cnn", fault) in got) == (fault not in rb.CA_ONLY)
    for r in rows:
        assert {"variant", "fault", "rate", "accuracy_200", "agreement_200"} <= set(r)
        assert 0 <= r["accuracy_200"] <= 100
    clean = next(r for r in rows if r["kind"] == "ca" and r["fault"] == "none")["accuracy_200"]
    worst = next(r for r in rows if r["kind"] == "ca" and r["fault"] == "state_bitflip" and r["rate"] == 1e-2)
    assert worst["accuracy_200"] < clean - 30  # the upsets are really injected


def test_robustness_is_deterministic_per_seed_and_changes_with_it(bnn_step, digits):
    derived = {("ca", "bnn"): bnn_step}
    run = lambda seed: rb.robustness(["bnn"], [], digits, 3, seed=seed, faults=["state_bitflip"], progress=False,  # noqa: E731
                                     derived=derived)
    values = lambda rows: [(r["accuracy_200"], r["agreement_200"]) for r in rows]  # noqa: E731
    assert run(1) == run(1)
    assert values(run(1)) != values(run(2))


def test_robustness_cli_json_and_one_line_errors(monkeypatch, bnn_step, cnn2k):
    from nca_edge.cli import main

    monkeypatch.setattr(rb, "ca_step", lambda name: bnn_step)
    monkeypatch.setattr(rb, "baseline_cnn", lambda name, digits=None: cnn2k[1])
    r = CliRunner().invoke(main, ["robustness", "--variant", "bnn", "--baseline", "cnn-2k", "--fault", "shift",
                                  "--digits", "2", "--format", "json", "--no-progress"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert {(x["kind"], x["fault"]) for x in rows} == {("ca", "shift"), ("cnn", "shift")}
    bad = CliRunner().invoke(main, ["robustness", "--fault", "cosmic", "--no-progress"])
    assert bad.exit_code == 1 and "unknown fault" in bad.output and "Traceback" not in bad.output


# ------------------------------------------------------------------ the baseline checkpoints


def test_shipped_baselines_load_and_a_changed_weights_file_is_refused(tmp_path):
    import shutil

    from nca_edge.baseline import CNN, SHIPPED, baselines_dir, load
    from nca_edge.errors import NCAEdgeError

    for name, widths in SHIPPED.items():
        model, meta = load(name)
        assert model.cfg.widths == widths
        assert meta["parameters"] == sum(p.numel() for p in CNN(model.cfg).parameters())
    for ext in (".safetensors", ".json"):
        shutil.copy(baselines_dir() / f"cnn-2k{ext}", tmp_path / f"m{ext}")
    data = bytearray((tmp_path / "m.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "m.safetensors").write_bytes(bytes(data))
    with pytest.raises(NCAEdgeError, match="SHA-256"):
        load(str(tmp_path / "m"))


def test_baseline_training_is_deterministic_given_the_seed(digits):
    from dataclasses import replace

    from nca_edge.baseline import CNNConfig
    from train.baseline import train_cnn

    small = replace(digits, train_x=digits.train_x[:512], train_y=digits.train_y[:512])
    cfg = CNNConfig(widths=(4, 8, 16), epochs=1)
    a, _ = train_cnn(cfg, small, progress=False)
    b, _ = train_cnn(cfg, small, progress=False)
    c, _ = train_cnn(replace(cfg, seed=1), small, progress=False)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa)
    assert not all(np.array_equal(sa[k].numpy(), sc[k].numpy()) for k in sa)


def test_baseline_cli_trains_exports_and_refuses_to_overwrite(tmp_path):
    from nca_edge.baseline import load
    from nca_edge.cli import main

    out = tmp_path / "m"
    r = CliRunner().invoke(main, ["baseline", "train", "cnn-2k", "--epochs", "0", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    model, meta = load(str(out))
    assert meta["config"]["epochs"] == 0 and "int8_test_accuracy" in meta and meta["recipe"].startswith("nca-edge baseline train")
    f = tmp_path / "m.tflite"
    assert CliRunner().invoke(main, ["baseline", "export", str(out), "-o", str(f)]).exit_code == 0
    assert f.read_bytes()[4:8] == b"TFL3"
    again = CliRunner().invoke(main, ["baseline", "export", str(out), "-o", str(f)])
    assert again.exit_code == 1 and "--force" in again.output


def test_compare_gives_a_baseline_its_row_with_macs_and_file_size(tmp_path):
    from nca_edge.cli import main

    r = CliRunner().invoke(main, ["compare", "bnn", "--baseline", "cnn-2k", "--digits", "20", "--no-progress",
                                  "--no-export-sizes", "--format", "json"])
    assert r.exit_code == 0, r.output
    ca, cnn = json.loads(r.stdout)
    assert cnn["model"] == "cnn-2k" and cnn["variant"] == "cnn" and cnn["agreement_200"] is None
    assert cnn["macs"] == 21700 and cnn["tflite_int8_bytes"] > 2154 and cnn["packed_bytes"] == 2154 - 38 + 38 * 8
    assert ca["macs"] > 1000 * cnn["macs"]  # 200 steps of every alive, firing cell's three layers


def test_burst_and_baseline_errors_are_one_line(tmp_path):
    from nca_edge.cli import main

    for spec in ("x", "5", "500:0.1", "10:2"):
        r = CliRunner().invoke(main, ["simulate", "float", "--digit", "0", "--steps", "50", "--burst", spec,
                                      "--gif", str(tmp_path / "g.gif")])
        assert r.exit_code == 1 and "--burst" in r.output and "Traceback" not in r.output, spec
    r = CliRunner().invoke(main, ["robustness", "--variant", "float", "--baseline", "cnn-nope", "--no-progress"])
    assert r.exit_code == 1 and "cnn-nope" in r.output
