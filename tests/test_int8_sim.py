"""firmware_sim.int8 is bit-exact with TFLite's reference kernels on the shipped int8 exports.

The CI-sized runs here (a few digits, 400 steps, mutation at 200) use the same code as the full
run recorded in docs/RESULTS.md (``python scripts/verify_report.py``: 200 digits per variant).
"""

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from export import export_model
from export.verify import verify, verify_in_child
from firmware_sim import int8
from firmware_sim.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from nca_edge.cli import main

VARIANTS = ["float", "bwn"]  # the shipped variants with packed and C exports
INT8_VARIANTS = ["float", "bwn", "ban", "bnn"]  # the shipped variants with a tflite-int8 export


@pytest.fixture(scope="module")
def int8_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8sim")
    files = {}
    for v in INT8_VARIANTS:
        files[v] = out / f"{v}.tflite"
        export_model(v, "tflite-int8", files[v], batch=1)
    return files


@pytest.mark.parametrize("variant", INT8_VARIANTS)
@pytest.mark.parametrize("runtime,digits", [("litert", 3), ("tflite-runtime", 2)])
def test_simulator_is_bit_exact_with_reference_kernels_for_400_steps_with_mutation(int8_files, variant, runtime, digits):
    r = verify_in_child(int8_files[variant], runtime, reference=True, digits=digits, steps=400, mutate_at=200)
    assert r.values_compared == digits * 400 * 28 * 28 * 20
    assert r.bit_exact, r.first


def test_verify_locates_the_first_differing_layer(int8_files, monkeypatch):
    real = int8.derive

    def off_by_one(q):  # the simulator's last conv gets a wrong bias in one channel
        p = real(q)
        bias = p.conv3.bias.copy()
        bias[5] += 40_000
        return dataclasses.replace(p, conv3=dataclasses.replace(p.conv3, bias=bias))

    monkeypatch.setattr(int8, "derive", off_by_one)
    r = verify(str(int8_files["float"]), "litert", reference=True, digits=1, steps=5, mutate_at=None)
    assert not r.bit_exact
    assert r.first["step"] == 0 and r.first["channel"] == 5 + 1  # state channel = ds channel + 1
    assert r.first["layer"] == "conv3"


def test_verify_cli_reports_bit_exact_and_exits_0(int8_files):
    res = CliRunner().invoke(main, ["verify", str(int8_files["bwn"]), "--digits", "1", "--steps", "20"])
    assert res.exit_code == 0, res.output
    assert "bit-exact" in res.output and f"{20 * 28 * 28 * 20:,} values" in res.output


def test_verify_cli_refuses_a_float_artifact_in_one_line(tmp_path):
    path = tmp_path / "f.tflite"
    export_model("float", "tflite", path)
    res = CliRunner().invoke(main, ["verify", str(path), "--digits", "1", "--steps", "2"])
    assert res.exit_code == 1
    assert "full-integer" in res.output and "Traceback" not in res.output


# ------------------------------------------------------------------------- the ops, by hand


def _params(int8_file):
    from ai_edge_litert.interpreter import Interpreter

    from export.int8_graph import quantization

    it = Interpreter(model_path=str(int8_file))
    it.allocate_tensors()
    return int8.derive(quantization(it))


@pytest.mark.parametrize("variant", ["ban", "bnn"])
def test_binary_activations_are_saturating_step_convs_with_two_exact_outputs(int8_files, variant):
    """conv1 and conv2 of a binary-activation model write {0, 1} themselves: -128 for every
    accumulator <= 0 and 127 for every accumulator >= 1 (no comparison op), and the next
    convolution reads that tensor's zero point."""
    p = _params(int8_files[variant])
    assert p.act1 is not None and p.act2 is not None
    for act, nxt, prev in ((p.act1, p.conv2, p.conv1), (p.act2, p.conv3, p.conv2)):
        assert (act.on, act.off) == (127, -128) and nxt.input_zero == act.off
        assert int8.is_step(prev) and prev.output_zero == -128
        acc = np.array([-(1 << 20), -5000, -1, 0, 1, 2, 5000, 1 << 20], np.int64)[:, None]
        y = np.clip(multiply_by_quantized_multiplier(acc, prev.multiplier, prev.shift) + prev.output_zero, -128, 127)
        assert np.all(y[acc[:, 0] <= 0] == -128) and np.all(y[acc[:, 0] >= 1] == 127)
    float_params = _params(int8_files["float"])
    assert float_params.act1 is None and not int8.is_step(float_params.conv1) and not int8.is_step(float_params.conv2)


def test_a_resting_cell_keeps_its_state_exactly(int8_files):
    p = _params(int8_files["float"])
    rng = np.random.default_rng(0)
    s = rng.integers(-128, 128, size=(2, 6, 7, 20), dtype=np.int8)
    s[..., 0] = 127  # alive everywhere
    out = int8.step(p, s, np.zeros((2, 6, 7), bool))
    np.testing.assert_array_equal(out, s)


def test_dead_cells_never_change_and_the_pixel_is_copied(int8_files):
    p = _params(int8_files["bwn"])
    rng = np.random.default_rng(1)
    s = rng.integers(-128, 128, size=(1, 8, 8, 20), dtype=np.int8)
    s[..., 0] = np.where(rng.random((1, 8, 8)) < 0.5, p.alive_min - 1, 127)
    out = int8.step(p, s, np.ones((1, 8, 8), bool))
    dead = s[..., 0] < p.alive_min
    np.testing.assert_array_equal(out[dead], s[dead])
    np.testing.assert_array_equal(out[..., 0], s[..., 0])
    assert (out[~dead] != s[~dead]).any()


def test_alive_threshold_matches_the_float_comparison(int8_files):
    p = _params(int8_files["float"])
    # pixel value (q - Z) * S > 0.1: the integer comparison agrees away from the boundary
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(int8_files["float"]))
    scale, zero = next(d["quantization"] for d in it.get_input_details() if "state" in d["name"])
    q = np.arange(-128, 128)
    real_alive = (q - zero) * scale > 0.1
    assert (q >= p.alive_min)[np.abs((q - zero) * scale - 0.1) > scale].tolist() == real_alive[np.abs((q - zero) * scale - 0.1) > scale].tolist()


def test_derived_multipliers_reproduce_the_real_scale_ratio(int8_files):
    p = _params(int8_files["float"])
    c = p.conv1
    real = c.multiplier.astype(np.float64) * 2.0 ** (c.shift.astype(np.float64) - 31)
    x = np.full(len(real), 1 << 20)
    got = multiply_by_quantized_multiplier(x, c.multiplier, c.shift)
    np.testing.assert_allclose(got, np.round(real * (1 << 20)), atol=1)
    assert quantize_multiplier(0.5) == (1 << 30, 0)


def test_seed_and_mutation_are_integer_and_clear_the_dead_cells(int8_files):
    p = _params(int8_files["float"])
    grey = np.zeros((1, 5, 5), np.uint8)
    grey[0, 2, 2] = 255
    s = int8.seed(p, grey)
    assert s.dtype == np.int8 and s[0, 2, 2, 0] == p.pixel_lut[255] and (s[..., 1:] == p.state_zero).all()
    s[..., 1:] = 50
    new = np.zeros_like(grey)
    new[0, 0, 0] = 255
    m = int8.mutate(p, s, new)
    assert (m[0, 0, 0, 1:] == 50).all() and (m[0, 2, 2, 1:] == p.state_zero).all()
    assert m[0, 2, 2, 0] == p.pixel_lut[0]


# ------------------------------------------------------------------------- the packed blob


def _same_step(a: int8.Int8Step, b: int8.Int8Step) -> None:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x):
            _same_step(x, y)
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
            assert x.dtype == y.dtype, f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("variant", INT8_VARIANTS)
def test_packed_export_holds_exactly_the_int8_files_integers(int8_files, variant, tmp_path):
    from firmware_sim import blob, packed

    path = tmp_path / f"{variant}.ncap"
    export_model(variant, "packed", path)
    step, b = blob.load(path)
    _same_step(step, _params(int8_files[variant]))
    # binary kernels at 1 bit: the hidden layer of bwn and bnn; float and ban have none
    kinds = {n: b.dtypes[n] for n in ("conv1.w", "conv2.w", "conv3.w")}
    assert kinds == ({"conv1.w": packed.INT8, "conv2.w": packed.BITS, "conv3.w": packed.INT8} if variant in ("bwn", "bnn")
                     else dict.fromkeys(kinds, packed.INT8))
    # binary activations (ban, bnn): the two thresholds are in the blob, and only there
    assert ("act1" in b.tensors and "act2" in b.tensors) == (variant in ("ban", "bnn"))


def test_packed_blob_round_trips_and_refuses_a_non_step_blob(int8_files):
    from firmware_sim import blob, packed

    p = _params(int8_files["bwn"])
    data = blob.dumps(p, "bwn", 80, 80, 10, record=b"hello")
    q, b = blob.loads(data)
    _same_step(p, q)
    assert bytes(b.tensors["record"].astype(np.uint8)) == b"hello"
    other = packed.write(packed.Packed("bwn", 20, 80, 80, 10, tensors={"x": np.ones(3)}, dtypes={"x": packed.INT8}))
    with pytest.raises(packed.PackedFormatError, match="int8 step"):
        blob.loads(other)


def test_adversarial_extreme_inputs_stay_within_the_derived_bounds(int8_files):
    """States built to push conv1's accumulator of one channel to its extremes: the int32
    result equals the exact (int64) sum, and the bound derived from the weights holds."""
    p = _params(int8_files["float"])
    bounds = int8.accumulator_bounds(p)
    assert all(b < 2**31 - 1 for b in bounds.values())
    w = p.conv1.weight.astype(np.int64)  # [P, 3, 3, C]
    o = int(np.abs(w).sum((1, 2, 3)).argmax())
    for sign in (1, -1):
        patch = np.where(sign * w[o] > 0, 127, -128).astype(np.int8)  # [3, 3, C]
        patch[1, 1, 0] = 127  # the centre cell is alive
        s = patch[None].copy()
        trace = {}
        int8.step(p, s, np.ones((1, 3, 3), bool), trace)
        centre = [i for i, (y, x) in enumerate(zip(trace["cells"][1], trace["cells"][2])) if (y, x) == (1, 1)][0]
        exact = int((w[o] * (patch.astype(np.int64) - p.conv1.input_zero)).sum() + p.conv1.bias[o])
        assert abs(exact) <= bounds["conv1"]
        from firmware_sim.fixedpoint import multiply_by_quantized_multiplier as mbqm

        want = np.clip(mbqm(exact, p.conv1.multiplier[o], p.conv1.shift[o]) + p.conv1.output_zero,
                       p.conv1.act_min, p.conv1.act_max)
        assert trace["conv1"][centre, o] == want


def test_a_blob_whose_accumulators_could_overflow_is_refused(int8_files):
    from firmware_sim import blob, packed

    p = _params(int8_files["float"])
    huge = dataclasses.replace(p.conv1, bias=np.full_like(p.conv1.bias, 2**31 - 100))
    with pytest.raises(OverflowError, match="conv1"):
        int8.check_bounds(dataclasses.replace(p, conv1=huge))
    data = blob.dumps(dataclasses.replace(p, conv1=huge), "float", 80, 80, 10)
    with pytest.raises(packed.PackedFormatError, match="does not fit int32"):
        blob.loads(data)


# ------------------------------------------------------------------------- schedules, tools


def _grids(p, n=3):
    from nca_edge.data import load_digits

    d = load_digits()
    return d.test_x[:n], int8.seed(p, d.test_x[:n])


def test_schedules_sync_and_stale0_are_the_step_and_async_differs_only_by_order(int8_files):
    from firmware_sim.prng import fire_mask
    from firmware_sim.schedules import Runner

    p = _params(int8_files["float"])
    _, s = _grids(p)
    ids = np.arange(3)
    f = fire_mask(0, ids, 0, 28, 28)
    want = int8.step(p, s, f)
    np.testing.assert_array_equal(Runner(p, "sync").step(s, f, 0, ids), want)
    np.testing.assert_array_equal(Runner(p, "stale:0").step(s, f, 0, ids), want)
    a = Runner(p, "async", seed=0).step(s, f, 0, ids)
    np.testing.assert_array_equal(Runner(p, "async", seed=0).step(s, f, 0, ids), a)  # deterministic
    resting = ~f
    np.testing.assert_array_equal(a[resting], s[resting])  # only firing cells change
    assert not np.array_equal(a, want)  # neighbours updated earlier in the step are seen
    # one firing cell: the order cannot matter
    one = np.zeros_like(f)
    y, x = np.argwhere(s[0, ..., 0] >= p.alive_min)[0]
    one[0, y, x] = True
    np.testing.assert_array_equal(Runner(p, "async").step(s, one, 0, ids), int8.step(p, s, one))


def test_stale_neighbours_are_read_from_k_steps_ago(int8_files):
    from firmware_sim.prng import fire_mask
    from firmware_sim.schedules import Runner

    p = _params(int8_files["float"])
    _, s0 = _grids(p, 1)
    ids = np.arange(1)
    r = Runner(p, "stale:1")
    f0, f1 = fire_mask(0, ids, 0, 28, 28), fire_mask(0, ids, 1, 28, 28)
    s1 = r.step(s0, f0, 0, ids)
    np.testing.assert_array_equal(s1, int8.step(p, s0, f0))  # no older state yet: sees s0
    s2 = r.step(s1, f1, 1, ids)
    # by hand: each firing cell's neighbourhood from s0 with its own centre from s1
    b, yy, xx = np.nonzero(f1 & (s1[..., 0] >= p.alive_min))
    patches = int8._patches(s0.astype(np.int32), b, yy, xx, p.conv1.input_zero)
    patches[:, 1, 1] = s1[b, yy, xx]
    want = s1.copy()
    want[b, yy, xx, 1:] = int8.add_update(p, s1[b, yy, xx, 1:], int8.firing_update(p, patches))
    np.testing.assert_array_equal(s2, want)


def test_unknown_schedule_is_refused():
    from firmware_sim.schedules import parse

    for bad in ("", "stale:", "stale:-1", "random"):
        with pytest.raises(ValueError, match="unknown schedule"):
            parse(bad)


def test_simulate_writes_a_gif_and_refuses_bad_input(int8_files, tmp_path):
    from firmware_sim import blob

    ncap = tmp_path / "m.ncap"
    ncap.write_bytes(blob.dumps(_params(int8_files["float"]), "float", 80, 80, 10))
    gif = tmp_path / "run.gif"
    res = CliRunner().invoke(main, ["simulate", str(int8_files["float"]), "--digit", "0", "--steps", "6", "--gif", str(gif)])
    assert res.exit_code == 0, res.output
    from PIL import Image

    with Image.open(gif) as im:
        assert im.size == (28 * 8, 28 * 8)
    for args, msg in [(["--digit", "0", "--schedule", "later"], "unknown schedule"),
                      (["--image", str(ncap)], "not a readable image"),
                      ([], "exactly one of")]:
        res = CliRunner().invoke(main, ["simulate", str(int8_files["float"]), *args, "--gif", str(tmp_path / "x.gif")])
        assert res.exit_code == 1 and msg in res.output, res.output
        assert not (tmp_path / "x.gif").exists()


def test_vectors_replay_with_the_step_and_refuse_an_existing_directory(int8_files, tmp_path):
    import json

    out = tmp_path / "vec"
    res = CliRunner().invoke(main, ["vectors", str(int8_files["bwn"]), "-o", str(out), "--digits", "2", "--steps", "5",
                                    "--mutate-at", "3", "--hex"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "vectors.json").read_text())
    arr = {k: np.fromfile(out / v["file"], dtype=v["dtype"]).reshape(v["shape"]) for k, v in meta["arrays"].items()}
    from firmware_sim import blob

    p, _ = blob.load(out / "params.ncap")
    s = int8.seed(p, arr["input"])
    np.testing.assert_array_equal(s, arr["states"][:, 0])
    for t in range(5):
        if t == 3:
            s = int8.mutate(p, s, arr["mutate_input"])
        s = int8.step(p, s, arr["masks"][:, t].astype(bool))
        np.testing.assert_array_equal(s, arr["states"][:, t + 1])
    hexed = [int(v, 16) for v in (out / "labels.hex").read_text().split()]
    assert hexed == arr["labels"].reshape(-1).view(np.uint8).tolist()
    res = CliRunner().invoke(main, ["vectors", str(int8_files["bwn"]), "-o", str(out), "--digits", "1", "--steps", "1"])
    assert res.exit_code == 1 and "exists" in res.output


def test_binary_activation_models_simulate_and_write_vectors_from_their_int8_step(int8_files, tmp_path):
    res = CliRunner().invoke(main, ["vectors", str(int8_files["ban"]), "-o", str(tmp_path / "v"), "--digits", "1",
                                    "--steps", "2"])
    assert res.exit_code == 0, res.output
    from firmware_sim import blob

    step, _ = blob.load(tmp_path / "v" / "params.ncap")
    _same_step(step, _params(int8_files["ban"]))
    res = CliRunner().invoke(main, ["simulate", str(int8_files["ban"]), "--digit", "0", "--steps", "4",
                                    "--gif", str(tmp_path / "ban.gif")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ban.gif").stat().st_size > 0


# ------------------------------------------------------------------ the XNOR/popcount path


@pytest.mark.parametrize("variant", ["ban", "bnn"])
def test_accumulator_thresholds_turn_a_unit_on_exactly_where_requantization_does(int8_files, variant):
    """acc >= T[o] <=> clamp(MBQM(acc) + Zout) >= min_q, checked at T - 2 .. T + 2 for every unit and
    on 2,000 random accumulators inside the layer's bound."""
    from firmware_sim import xnor

    p = _params(int8_files[variant])
    bounds = int8.accumulator_bounds(p)
    rng = np.random.default_rng(0)
    for name, c, act, t in (("conv1", p.conv1, p.act1, xnor.thresholds(p)[0]), ("conv2", p.conv2, p.act2, xnor.thresholds(p)[1])):
        acc = np.concatenate([t[None, :] + np.arange(-2, 3)[:, None],
                              rng.integers(-bounds[name], bounds[name] + 1, (2000, t.size))])
        acc = np.clip(acc, -bounds[name], bounds[name]).astype(np.int32)
        q = np.clip(multiply_by_quantized_multiplier(acc, c.multiplier, c.shift) + c.output_zero, c.act_min, c.act_max)
        assert np.array_equal(q >= act.min_q, acc >= t), name
        assert np.all(q[2][t <= bounds[name]] >= act.min_q)  # T itself turns the unit on
        assert (t > -bounds[name]).any()  # not all trivially on: the threshold moves


@pytest.mark.parametrize("variant", INT8_VARIANTS)
def test_xnor_popcount_update_equals_the_int8_definition(int8_files, variant):
    """firmware_sim.xnor.firing_update (thresholds, folded biases, popcounts, sign-selected sums)
    gives the same m as int8.firing_update on real neighbourhoods (two digits, 30 steps) and on
    random ones, for every variant."""
    from firmware_sim import xnor
    from firmware_sim.prng import fire_mask

    p = _params(int8_files[variant])
    _, s = _grids(p, 2)
    patches = []
    for t in range(30):
        x = s.astype(np.int32)
        b, yy, xx = np.nonzero(x[..., 0] >= p.alive_min)
        patches.append(int8._patches(x, b, yy, xx, p.conv1.input_zero))
        s = int8.step(p, s, fire_mask(0, np.arange(2), t, 28, 28))
    rng = np.random.default_rng(1)
    patches.append(rng.integers(-128, 128, (500, 3, 3, p.channels)).astype(np.int32))
    patches = np.concatenate(patches)
    assert np.array_equal(xnor.firing_update(p, patches), int8.firing_update(p, patches))


@pytest.mark.parametrize("variant", INT8_VARIANTS)
def test_verify_cli_runs_a_packed_blobs_device_arithmetic_bit_exact(int8_files, variant, tmp_path):
    """`nca-edge verify BLOB.ncap`: the packed path (firmware_sim.xnor) against the int8 definition,
    400 steps with mutation (CI size: 2 digits; the full run is `--digits 200`)."""
    from firmware_sim import blob

    path = tmp_path / f"{variant}.ncap"
    path.write_bytes(blob.dumps(_params(int8_files[variant]), variant, 80, 80, 10))
    res = CliRunner().invoke(main, ["verify", str(path), "--digits", "2", "--steps", "400"])
    assert res.exit_code == 0, res.output
    assert "2 digits x 400 steps, 12,544,000 values" in res.output and res.output.strip().endswith("bit-exact")


def test_verify_of_a_packed_blob_reports_a_wrong_threshold(int8_files, tmp_path, monkeypatch):
    from firmware_sim import blob, xnor

    path = tmp_path / "bnn.ncap"
    path.write_bytes(blob.dumps(_params(int8_files["bnn"]), "bnn", 80, 80, 10))
    real = xnor.thresholds
    monkeypatch.setattr(xnor, "thresholds", lambda p: (real(p)[0] - 40, real(p)[1]))  # conv1 units turn on early
    res = CliRunner().invoke(main, ["verify", str(path), "--digits", "1", "--steps", "20"])
    assert res.exit_code == 1 and "first mismatch: step 0" in res.output


def test_popcount_counts_set_bits_of_uint32_words():
    from firmware_sim.xnor import popcount

    words = np.array([[0, 1, 0xFFFFFFFF], [0x80000001, 0x0F0F0F0F, 0x12345678]], np.uint32)
    assert popcount(words).tolist() == [33, 2 + 16 + 13]


def test_a_depthwise_kernel_is_stored_as_its_taps_and_read_back_dense(int8_files, tmp_path):
    """A depthwise 3x3 perception (the 4 KiB bnn layout): the blob holds 9 int8 taps per output
    (not 9 C), and the reader rebuilds the same dense kernel; a dense kernel (the shipped bnn's,
    the float's) is not mistaken for one."""
    import torch

    import export
    from firmware_sim import blob
    from nca_edge.checkpoint import save_checkpoint
    from nca_edge.config import CAConfig, Config
    from nca_edge.model import CAModel

    torch.manual_seed(3)
    m = CAModel(CAConfig(quant="bnn", depthwise=True, real_weights=("perceive", "update2"), state_frac_bits=4))
    torch.nn.init.uniform_(m.update2.weight, -0.05, 0.05)
    ckpt = save_checkpoint(tmp_path / "dw", m, Config(ca=m.cfg))
    p, _ = blob.loads(export.build(str(ckpt), "packed")[0])
    taps, mult = blob.depthwise_taps(p.conv1)
    assert taps.shape == (p.conv1.weight.shape[0], 9) and mult == p.conv1.weight.shape[0] // p.channels
    q, b = blob.loads(blob.dumps(p, "bnn", 80, 80, 10))
    _same_step(p, q)
    assert b.tensors["conv1.w"].shape == taps.shape
    assert blob.depthwise_taps(_params(int8_files["float"]).conv1) is None
    assert blob.depthwise_taps(_params(int8_files["bnn"]).conv1) is None


def test_protocol_run_reports_each_digits_total_agreement_at_the_last_step(int8_files):
    """run_int8's agree_last is each digit's total agreement at the last step (paired comparisons of
    two runs use it), and its mean is that step's agreement."""
    from firmware_sim.protocol import agreeing, run_int8
    from nca_edge.data import load_digits

    d = load_digits()
    r = run_int8(_params(int8_files["ban"]), d.test_x[:6], d.test_y[:6], steps=30, mutate_at=None, batch=4,
                 record_labels=True)
    last = r["labels"][:, -1]
    assert np.array_equal(r["agree_last"], agreeing(last, last >= 0))
    assert r["agreement"][-1] == pytest.approx(100 * r["agree_last"].mean())
    assert agreeing(np.array([[[1, 2], [1, 1]]]), np.array([[[True, False], [True, True]]])).tolist() == [True]
    assert agreeing(np.array([[[1, 2]]]), np.array([[[True, True]]])).tolist() == [False]
    assert agreeing(np.array([[[1, 1]]]), np.zeros((1, 1, 2), bool)).tolist() == [False]  # no alive cell


# ------------------------------------------------------------------ integer-only deployment


@pytest.mark.parametrize("variant", INT8_VARIANTS)
def test_int8_step_is_integer_only_every_tensor_int8_or_int32(int8_files, variant):
    """No bool or float32 tensor and no comparison, CAST or QUANTIZE: the 0/1 steps are saturating
    convolutions (what TFLite Micro's int8 kernels and the Ethos-U NPU run); the three layers run
    in 4 row bands of 7 rows (slice, pad, three convs each, then one concatenation)."""
    from collections import Counter

    from ai_edge_litert.interpreter import Interpreter

    from export.deploy import non_integer_tensors

    assert non_integer_tensors(int8_files[variant]) == []
    it = Interpreter(model_path=str(int8_files[variant]))
    ops = Counter(o["op_name"] for o in it._get_ops_details() if o["op_name"] != "DELEGATE")
    assert ops == Counter({"STRIDED_SLICE": 2 + 4, "PAD": 4, "CONV_2D": 1 + 3 * 4, "CONCATENATION": 2, "MUL": 2, "ADD": 1})


def test_integer_only_keeps_the_kernels_and_moves_sign_into_the_bias_and_row_bands_change_no_bit():
    """The rewrite keeps every int8 kernel and the converter's int32 biases, except +1 on the bias
    of a conv followed by sign's ``>=`` ([acc >= 0] = [acc + 1 >= 1]). Running the layers in row
    bands changes no output bit (same kernels and quantization, the edge rows padded with the zero
    point as a SAME convolution does)."""
    from unittest import mock

    from tensorflow.lite.tools import flatbuffer_utils as fu

    from export.calibrate import trajectory_samples
    from export.integer_only import integer_only
    from export.tflite_export import tflite_int8_bytes
    from nca_edge.checkpoint import load_checkpoint, resolve_model
    from nca_edge.data import load_digits

    model, _, _ = load_checkpoint(resolve_model("bnn"))
    samples = trajectory_samples(model, load_digits().train_x, n_digits=8, steps=24)
    with mock.patch("export.integer_only.integer_only", side_effect=lambda data: data), \
            mock.patch("export.row_bands.row_bands", side_effect=lambda data: data), \
            mock.patch("export.packed_export.int8_step_from_tflite"):  # the converter's own graph
        raw = tflite_int8_bytes(model, samples)
    before = fu.read_model_from_bytearray(bytearray(raw))
    after = fu.read_model_from_bytearray(bytearray(integer_only(raw)))

    def consts(m):
        return {t.name: np.asarray(m.buffers[t.buffer].data) for t in m.subgraphs[0].tensors
                if m.buffers[t.buffer].data is not None and (b"Conv2D" in t.name or b"BiasAdd" in t.name)}

    b, a = consts(before), consts(after)
    assert b.keys() == a.keys() and len(b) == 6
    for name in b:
        if b"BiasAdd" in name:
            old, new = b[name].view(np.int32).astype(np.int64), a[name].view(np.int32).astype(np.int64)
            sign_follows = b"perceive" in name or b"update1" in name
            np.testing.assert_array_equal(new, old + 1 if sign_follows else old)
        else:
            np.testing.assert_array_equal(a[name], b[name])
    ops = lambda m: sorted(m.operatorCodes[o.opcodeIndex].builtinCode for o in m.subgraphs[0].operators)  # noqa: E731
    assert len(ops(before)) == 18 and len(ops(after)) == 10

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from export.row_bands import row_bands

    whole = integer_only(raw)
    outs = []
    rng = np.random.default_rng(0)
    state = rng.integers(-128, 128, size=(1, 28, 28, 20), dtype=np.int8)
    fire = rng.choice(np.array([-128, 127], np.int8), size=(1, 28, 28, 1))
    for data in (whole, row_bands(whole, rows=7), row_bands(whole, rows=5)):
        it = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
        ins = {d["name"]: d["index"] for d in it.get_input_details()}
        it.set_tensor(next(i for n, i in ins.items() if "state" in n), state)
        it.set_tensor(next(i for n, i in ins.items() if "fire" in n), fire)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    assert (outs[0] != state).any()
    np.testing.assert_array_equal(outs[1], outs[0])
    np.testing.assert_array_equal(outs[2], outs[0])


@pytest.mark.parametrize("variant", INT8_VARIANTS)
def test_tflite_micro_runs_the_int8_step_bit_exact_and_reports_its_arena(int8_files, variant):
    from export import tflm

    if not tflm.available():
        pytest.skip("tflite-micro is not installed (pip install tflite-micro)")
    r = verify_in_child(int8_files[variant], "tflm", True, digits=1, steps=400, mutate_at=200)
    assert r.bit_exact, r.first
    # row bands: one band's activations live at once. Whole-grid integer-only files needed 142-210 KB
    # (bwn's 28x28x160 hidden layer); before they were integer-only, ban/bnn needed 336,032 bytes
    assert 32 * 1024 < r.meta["arena_bytes"] <= 96 * 1024


def test_tflite_micro_refuses_optimized_kernels_in_one_line(int8_files):
    res = CliRunner().invoke(main, ["verify", str(int8_files["float"]), "--runtime", "tflm", "--optimized"])
    assert res.exit_code != 0 and "reference kernels only" in res.output and "Traceback" not in res.output


def test_deploy_report_puts_every_operator_on_the_npu_and_names_missing_tools(monkeypatch):
    """deploy-report's JSON row for the bnn: integer-only, TFLM arena, vela's Ethos-U55 compilation
    with no operator left on the CPU; a tool that is absent is a note, not an error."""
    import json
    import shutil

    from export import deploy, tflm

    res = CliRunner().invoke(main, ["deploy-report", "bnn", "--format", "json", "--no-progress"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    assert row["model"] == "bnn" and row["non_integer_tensors"] == 0 and row["tflite_int8_bytes"] > 0
    if tflm.available():
        assert 0 < row["tflm_arena_bytes"] <= 160 * 1024
    if deploy.vela_available():
        assert row["vela_cpu_ops"] == 0 and row["vela_npu_ops"] >= 7 and row["vela_cycles_per_step"] > 0
        assert row["vela_ms_per_classification"] > 0
    if shutil.which("arm-none-eabi-gcc"):
        assert row["c_m4_flash_bytes"] <= 32 * 1024 and row["c_m4_ram_bytes"] <= 32 * 1024
    monkeypatch.setattr(deploy, "vela_available", lambda: False)
    monkeypatch.setattr(deploy.shutil, "which", lambda name: None)
    res = CliRunner().invoke(main, ["deploy-report", "float", "--no-progress"])
    assert res.exit_code == 0 and "vela is not installed (pip install ethos-u-vela)" in res.output
    assert "Traceback" not in res.output


def test_the_int8_files_signature_runs_the_step_like_its_graph_output(int8_files):
    """The rewrite renumbers tensors; the converter's serving_default signature must follow, or a
    signature runner would return some other tensor."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(int8_files["bnn"]))
    it.allocate_tensors()
    runner = it.get_signature_runner()
    state = np.zeros((1, 28, 28, 20), np.int8)
    state[..., 0] = 127
    fire = np.full((1, 28, 28, 1), 127, np.int8)
    names = it.get_signature_list()["serving_default"]
    out = {k: v.copy() for k, v in runner(**dict(zip(sorted(names["inputs"], key=lambda n: "fire" in n), (state, fire)))).items()}
    it = Interpreter(model_path=str(int8_files["bnn"]))  # a second interpreter: the runner holds the first's buffers
    it.allocate_tensors()
    ins = {d["name"]: d["index"] for d in it.get_input_details()}
    it.set_tensor(next(i for n, i in ins.items() if "state" in n), state)
    it.set_tensor(next(i for n, i in ins.items() if "fire" in n), fire)
    it.invoke()
    expected = it.get_tensor(it.get_output_details()[0]["index"])
    (got,) = out.values()
    assert got.shape == expected.shape and got.dtype == np.int8
    np.testing.assert_array_equal(got, expected)


def test_skipping_resting_cells_in_the_add_changes_no_bit(int8_files, monkeypatch):
    """The step adds only the firing cells' updates when a resting cell's ADD is the identity; with
    the shortcut off (the ADD over every cell) the next states are the same, on random states."""
    rng = np.random.default_rng(5)
    for variant in int8_files:
        p = _params(int8_files[variant])
        assert int8.resting_is_identity(p)
        s = rng.integers(-128, 128, size=(3, 12, 12, p.channels)).astype(np.int8)
        fire = rng.random((3, 12, 12)) < 0.5
        fast = int8.step(p, s, fire)
        monkeypatch.setattr(int8, "resting_is_identity", lambda params: False)
        assert np.array_equal(int8.step(p, s, fire), fast), variant
        monkeypatch.undo()
