"""The C export is bit-exact with firmware_sim: on the host (-O2, and with sanitizers) and on an
emulated Cortex-M4 (qemu-system-arm, mps2-an386).

CI-sized here; the full run (100 digits x 400 steps per variant) is
`nca-edge verify DIR --digits 100` (docs/firmware.md, scripts/firmware_report.py).
"""

import re

import numpy as np
import pytest
from click.testing import CliRunner

from export import export_model
from export.c_export import depthwise_pairs, input_lanes, sliced_layer, words64
from export.verify_c import toolchain_missing, verify_c
from nca_edge.cli import main

VARIANTS = ["float", "bwn", "ban", "bnn"]


@pytest.fixture(scope="module")
def c_dirs(tmp_path_factory):
    out = tmp_path_factory.mktemp("c")
    dirs = {}
    for v in VARIANTS:
        dirs[v] = out / v
        export_model(v, "c", dirs[v])
    return dirs


@pytest.mark.parametrize("variant", VARIANTS)
def test_host_c_is_bit_exact_for_400_steps_with_mutation(c_dirs, variant):
    if toolchain_missing("host"):
        pytest.skip(f"no host compiler: {toolchain_missing('host')}")
    r = verify_c(c_dirs[variant], digits=6, steps=400, mutate_at=200)
    assert r.values_compared == 6 * 400 * 28 * 28 * 20
    assert r.bit_exact, r.first


@pytest.mark.parametrize("variant", ["bwn", "bnn"])  # int8 kernels; binary activations (XNOR/popcount)
def test_host_c_is_clean_under_address_and_undefined_behaviour_sanitizers(c_dirs, variant):
    if toolchain_missing("host"):
        pytest.skip(f"no host compiler: {toolchain_missing('host')}")
    r = verify_c(c_dirs[variant], digits=2, steps=60, mutate_at=30, sanitize=True)
    assert r.bit_exact, r.first


@pytest.mark.parametrize("variant", VARIANTS)
def test_cortex_m4_build_under_qemu_is_bit_exact(c_dirs, variant):
    missing = toolchain_missing("m4")
    if missing:
        pytest.skip(f"Cortex-M toolchain absent ({missing}); .ci/run installs gcc-arm-none-eabi, "
                    "libnewlib-arm-none-eabi and qemu-system-arm")
    r = verify_c(c_dirs[variant], digits=2, steps=400, mutate_at=200, target="m4")
    assert r.bit_exact, r.first


def test_generated_step_uses_no_heap_no_float_and_only_stdint_string(c_dirs):
    src = (c_dirs["bwn"] / "nca_step.c").read_text() + (c_dirs["bwn"] / "nca_step.h").read_text()
    code = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    assert set(re.findall(r"#include <([^>]+)>", code)) == {"stdint.h", "string.h"}
    for banned in ("malloc", "free(", "float", "double"):
        assert banned not in code, banned


def test_verify_reports_a_wrong_constant_with_its_first_mismatch(c_dirs, tmp_path):
    if toolchain_missing("host"):
        pytest.skip("no host compiler")
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in c_dirs["float"].iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    header = (bad / "nca_model.h").read_text()
    # the last layer's first bias, off by a lot: every firing cell's channel 1 moves
    header = re.sub(r"(static const int32_t nca_b2\[19\] = \{\n    )(-?\d+)", lambda m: m.group(1) + str(int(m.group(2)) + 50000),
                    header, count=1)
    (bad / "nca_model.h").write_text(header)
    res = CliRunner().invoke(main, ["verify", str(bad), "--digits", "1", "--steps", "5"])
    assert res.exit_code == 1, res.output
    assert "first mismatch: step 0" in res.output and "channel 1:" in res.output


def _trained_like(cfg_kwargs: dict, tmp_path, name: str):
    """A random checkpoint whose cells compute once exported (small updates keep the calibrated state
    scale near a trained model's; non-zero biases avoid exact ties at 0 in binary dot products)."""
    import torch

    from nca_edge.checkpoint import save_checkpoint
    from nca_edge.config import CAConfig, Config
    from nca_edge.model import CAModel

    torch.manual_seed(3)
    m = CAModel(CAConfig(**cfg_kwargs))
    torch.nn.init.uniform_(m.update2.weight, -0.05, 0.05)
    for conv in m.convs():
        torch.nn.init.normal_(conv.bias, std=0.05)
    return save_checkpoint(tmp_path / name, m, Config(ca=m.cfg))


def test_bnn_header_stores_a_dense_int8_perception_and_xnor_constants(c_dirs):
    """The shipped BNN's C model: a dense int8 3x3 perception (74 x 180 weights) thresholded on its
    accumulators; the binary hidden kernel by input as 64-bit words of outputs (74 inputs x 2
    words), with its bounds bit-sliced (10 planes, counting the inputs on or off) in place of folded
    biases and thresholds; the last layer by input in 16-bit lanes; folded biases for the last
    layer's binary input."""
    header = (c_dirs["bnn"] / "nca_model.h").read_text()
    assert re.search(r"static const int8_t nca_w0\[13320\]", header)
    assert re.search(r"static const uint64_t nca_x1\[148\]", header)  # 74 inputs x 2 words
    assert re.search(r"static const uint64_t nca_z1\[40\]", header)  # 2 x 10 planes x 2 words
    assert re.search(r"static const uint64_t nca_l2\[400\]", header)
    for name in ("nca_t0", "nca_c0_2", "nca_c1_2"):
        assert f"static const int32_t {name}[" in header, name
    for absent in ("nca_p0", "nca_m0", "nca_m1", "nca_b1", "nca_b2", "nca_w1", "nca_t1", "nca_c0_1"):
        assert absent not in header, absent


def test_a_depthwise_bnn_header_stores_two_outputs_taps_an_int64(tmp_path):
    """A depthwise BNN (the 4 KiB layout): 9 taps per perception output (not 9 C), two outputs'
    taps an int64; thresholds on accumulators in place of requantization."""
    ckpt = _trained_like(dict(quant="bnn", depthwise=True, real_weights=("perceive", "update2"), state_frac_bits=4),
                         tmp_path, "dw")
    export_model(str(ckpt), "c", tmp_path / "c")
    header = (tmp_path / "c" / "nca_model.h").read_text()
    assert re.search(r"static const int64_t nca_p0\[360\]", header)
    assert re.search(r"static const uint64_t nca_x1\[160\]", header)  # 80 inputs x 2 words
    assert "static const int32_t nca_t0[" in header and "nca_w0" not in header
    assert "conv 0, 1, 2: DEPTHWISE_BITS, SLICED, LANES" in (tmp_path / "c" / "nca_config.h").read_text()
    if toolchain_missing("host"):
        pytest.skip("no host compiler")
    r = verify_c(tmp_path / "c", digits=2, steps=60, mutate_at=30)
    assert r.bit_exact, r.first


def test_c_layouts_hold_the_kernels_exactly():
    """The C header's layouts are rearrangements, not new arithmetic: pairs split back into the two
    outputs' taps, 16-bit lanes hold w + 128 by input, 64-bit words hold the 32-bit words' bits."""
    rng = np.random.default_rng(0)
    taps = rng.integers(-128, 128, (6, 9)).astype(np.int8)
    x = rng.integers(-128, 128, 9)
    s = depthwise_pairs(taps) @ x  # one 64-bit sum per pair of outputs
    lo = (s + 2**31) % 2**32 - 2**31
    assert np.array_equal(lo, taps[0::2].astype(np.int64) @ x)
    assert np.array_equal((s - lo) // 2**32, taps[1::2].astype(np.int64) @ x)
    w = rng.integers(-128, 128, (5, 7))
    lanes = input_lanes(w)
    assert lanes.shape == (7, 2)
    got = np.array([[(int(lanes[j, o // 4]) >> (16 * (o % 4))) & 0xFFFF for o in range(5)] for j in range(7)])
    assert np.array_equal(got, w.T + 128)
    assert int(lanes[0, 1]) >> 16 == 0  # padding outputs hold 0
    with pytest.raises(ValueError, match="overflows"):
        input_lanes(np.zeros((1, 258)))
    words32 = np.array([[0x89ABCDEF, 0x01234567, 0xFFFF]], np.uint32)
    assert [int(v) for v in words64(words32)[0]] == [0x0123456789ABCDEF, 0xFFFF]


def _sliced_units(cols, planes, x, out):
    """The C step's conv_sliced, bit for bit in Python: count the columns of the shorter list
    into planes, add the bounds and n, subtract (inputs on) or add (off) twice the count, mod 2^10."""
    n, k = int(x.sum()), len(x)
    use_on = 2 * n <= k
    listed = np.nonzero(x if use_on else ~x)[0]
    ones = (1 << 64) - 1
    units = np.zeros(out, bool)
    for q in range(cols.shape[1]):
        cnt = [0] * 8
        for j in listed:  # one column at a time (the C step adds 4 with carry-save adders: the same sums)
            carry = int(cols[j, q])
            for p in range(8):
                cnt[p], carry = cnt[p] ^ carry, cnt[p] & carry
        flip = ones if use_on else 0
        twice = [0] + cnt + [0]
        c1, c2, r = 0, flip, 0
        for p in range(10):
            b, m, y = int(planes[0 if use_on else 1, p, q]), ones if n >> p & 1 else 0, twice[p] ^ flip
            s = b ^ m ^ c1
            c1 = (b & m) | (c1 & (b ^ m))
            r = s ^ y ^ c2
            c2 = (s & y) | (c2 & (s ^ y))
        for o in range(64 * q, min(out, 64 * q + 64)):
            units[o] = not (r >> (o - 64 * q)) & 1
    return units


def test_c_bit_sliced_layer_gives_the_accumulator_thresholds_units():
    """conv_sliced's planes encode c0 + a (n - 2 pc) >= thr exactly, for any inputs, counting the
    inputs on or off, with thresholds far outside the reachable range clamped (always on/off)."""
    rng = np.random.default_rng(1)
    out, k, a = 70, 90, 3
    w = np.where(rng.random((out, k)) < 0.5, -1, 1)
    c0 = rng.integers(-300, 300, out)
    thr = rng.integers(-300, 300, out)
    thr[:3] = [-10**6, 10**6, 0]
    cols, planes = sliced_layer(w, c0, thr, a)
    assert cols.shape == (k, 2) and planes.shape == (2, 10, 2)
    for density in (0.0, 0.1, 0.5, 0.9, 1.0):
        for _ in range(10):
            x = rng.random(k) < density
            pc = ((w < 0) & x).sum(1)
            expected = c0 + a * (int(x.sum()) - 2 * pc) >= thr
            assert np.array_equal(_sliced_units(cols, planes, x, out), expected)
    with pytest.raises(ValueError, match="a > 0"):
        sliced_layer(w, c0, thr, -3)


def test_a_benchmark_run_writes_no_states_and_prints_its_stepping_time(c_dirs, tmp_path):
    if toolchain_missing("host"):
        pytest.skip("no host compiler")
    import subprocess

    import numpy as np

    from export.verify_c import build

    exe = build(c_dirs["bnn"], tmp_path)
    (tmp_path / "input.bin").write_bytes(np.zeros(2 * 28 * 28, np.uint8).tobytes())
    before = sorted(p.name for p in tmp_path.iterdir())
    res = subprocess.run([str(exe), str(tmp_path), "2", "5", "28", "28", "0", "8388608", "0", "-"],
                         capture_output=True, text=True, check=True)
    assert float(res.stdout) >= 0.0 and sorted(p.name for p in tmp_path.iterdir()) == before


def test_c_step_compiles_only_the_models_kernels_and_refuses_a_model_needing_another(c_dirs, tmp_path):
    """nca_config.h names the kernels of the model's layers; a build without one of them refuses
    the model (nca_step returns -1, the driver says why) instead of computing something else."""
    if toolchain_missing("host"):
        pytest.skip("no host compiler")
    import subprocess

    from export.verify_c import build

    config = (c_dirs["bnn"] / "nca_config.h").read_text()
    assert "conv 0, 1, 2: PATCH, SLICED, LANES" in config
    assert "#define NCA_USE_SLICED 1" in config and "#define NCA_USE_DEPTHWISE_BITS 0" in config
    assert "#define NCA_USE_SLICED 0" in (c_dirs["float"] / "nca_config.h").read_text()
    src = tmp_path / "src"
    src.mkdir()
    for f in c_dirs["bnn"].iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    (src / "nca_config.h").write_text(config.replace("#define NCA_USE_SLICED 1", "#define NCA_USE_SLICED 0"))
    work = tmp_path / "work"
    work.mkdir()
    exe = build(src, work)
    (work / "input.bin").write_bytes(np.full(28 * 28, 255, np.uint8).tobytes())
    res = subprocess.run([str(exe), str(work), "1", "2", "28", "28", "0", "8388608", "0", "-"], capture_output=True, text=True)
    assert res.returncode == 6 and "kernel is not compiled in" in res.stderr


def test_c_export_refuses_what_it_cannot_build(tmp_path):
    res = CliRunner().invoke(main, ["verify", str(tmp_path), "--digits", "1", "--steps", "1"])
    assert res.exit_code == 1 and "not a C export" in res.output


def test_c_export_refuses_layers_wider_than_the_c_step_holds():
    from export import _check_supported
    from nca_edge.config import CAConfig
    from nca_edge.errors import NCAEdgeError

    _check_supported("c", CAConfig(hidden=256))
    with pytest.raises(NCAEdgeError, match="at most 256 units"):
        _check_supported("c", CAConfig(hidden=257))
    _check_supported("c", CAConfig(quant="bnn", perception=128, real_weights=("perceive",)))
    with pytest.raises(NCAEdgeError, match="at most 128 inputs"):  # the bit-sliced hidden layer's 10-bit counts
        _check_supported("c", CAConfig(quant="bnn", perception=160, real_weights=("perceive",)))


@pytest.mark.parametrize("cfg", [
    dict(quant="ban", hidden=160),  # the last layer's binary input in three 64-bit words (lanes)
    dict(quant="bnn", hidden=160, real_weights=("perceive",)),  # bit-sliced into 3 words, then XNOR over 3 words
], ids=["ban-hidden-160", "bnn-hidden-160"])
def test_layers_wider_than_128_units_are_bit_exact(cfg, tmp_path):
    """Past two 64-bit words a layer: NCA_MAX_UNITS from nca_config.h, and the popcounts over any
    number of words, against firmware_sim."""
    if toolchain_missing("host"):
        pytest.skip("no host compiler")
    from firmware_sim import blob, int8
    from nca_edge.data import load_digits

    ckpt = _trained_like(cfg, tmp_path, "wide")
    export_model(str(ckpt), "c", tmp_path / "c")
    assert "#define NCA_MAX_UNITS 160" in (tmp_path / "c" / "nca_config.h").read_text()
    params, _ = blob.loads((tmp_path / "c" / "model.ncap").read_bytes())
    state = int8.seed(params, load_digits("mnist").test_x[:2])
    trace = {}
    nxt = int8.step(params, state, np.ones(state.shape[:3], bool), trace=trace)
    units = trace["conv2"][:, 128:] >= params.act2.min_q  # the third word's hidden units (a step conv's 0/1 output)
    assert units.any() and not units.all() and (nxt != state).mean() > 0.05  # the cells compute, word 3 varies
    r = verify_c(tmp_path / "c", digits=2, steps=60, mutate_at=30, sanitize=True)
    assert r.bit_exact, r.first
