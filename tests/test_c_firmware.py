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
from export.c_export import depthwise_pairs, input_lanes, words64
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


def test_bnn_header_stores_the_depthwise_taps_and_xnor_constants(c_dirs):
    """The BNN's C model: 9 taps per perception output (not 9 C), two outputs' taps an int64;
    the binary kernel as 64-bit words, the last layer by input in 16-bit lanes; thresholds on
    accumulators in place of requantization for the binary activations, folded biases for
    binary inputs."""
    header = (c_dirs["bnn"] / "nca_model.h").read_text()
    assert re.search(r"static const int64_t nca_p0\[360\]", header)
    assert re.search(r"static const uint64_t nca_w1\[160\]", header)
    assert re.search(r"static const uint64_t nca_l2\[400\]", header)
    for name in ("nca_t0", "nca_t1", "nca_c0_1", "nca_c0_2", "nca_c1_2"):
        assert f"static const int32_t {name}[" in header, name
    for absent in ("nca_m0", "nca_m1", "nca_b1", "nca_b2"):
        assert absent not in header, absent


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


def test_c_export_refuses_what_it_cannot_build(tmp_path):
    res = CliRunner().invoke(main, ["verify", str(tmp_path), "--digits", "1", "--steps", "1"])
    assert res.exit_code == 1 and "not a C export" in res.output


def test_c_export_refuses_layers_wider_than_the_c_step_holds():
    from export import _check_supported
    from nca_edge.config import CAConfig
    from nca_edge.errors import NCAEdgeError

    _check_supported("c", CAConfig(hidden=128))
    with pytest.raises(NCAEdgeError, match="at most 128 units"):
        _check_supported("c", CAConfig(hidden=160))
