"""The fire-mask PRNG (firmware_sim.prng) against an independent pure-Python reading of its spec."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np

from firmware_sim.prng import fire_mask, fire_threshold, mix32

M32 = 0xFFFFFFFF


def ref_mix(x: int) -> int:
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def ref_fire(seed, stream, step, row, col, rate):
    k = ref_mix(seed ^ 0x9E3779B9)
    k = ref_mix(k ^ stream)
    k = ref_mix(k ^ step)
    k = ref_mix(k ^ ((row << 16) | col))
    return (k >> 8) < round(rate * (1 << 24))


def test_mix32_matches_the_spec_and_pinned_values():
    xs = [0, 1, 2, 0xDEADBEEF, M32]
    assert mix32(np.array(xs, dtype=np.uint32)).tolist() == [ref_mix(x) for x in xs]
    assert ref_mix(1) == 1753845952  # pinned: devices must produce this


def test_masks_match_the_spec_cell_by_cell():
    m = fire_mask(seed=5, streams=[0, 7], step=3, height=5, width=6, fire_rate=0.5)
    for s, stream in enumerate([0, 7]):
        for r in range(5):
            for c in range(6):
                assert m[s, r, c] == ref_fire(5, stream, 3, r, c, 0.5)


def test_masks_do_not_depend_on_grid_size():
    small = fire_mask(1, [3], 9, 28, 28)
    big = fire_mask(1, [3], 9, 64, 40)
    assert np.array_equal(small, big[:, :28, :28])


def test_fire_rate_extremes_and_mean():
    assert not fire_mask(0, [0], 0, 8, 8, 0.0).any()
    assert fire_mask(0, [0], 0, 8, 8, 1.0).all()
    assert abs(fire_mask(0, np.arange(64), 0, 28, 28).mean() - 0.5) < 0.01
    assert fire_threshold(0.5) == 1 << 23


def test_firmware_sim_imports_numpy_only():
    root = Path(__file__).resolve().parents[1] / "firmware_sim"
    for f in root.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [] if node.level else [node.module.split(".")[0]]
            else:
                continue
            for m in mods:
                assert m in {"numpy", *sys.stdlib_module_names}, f"{f.name} imports {m}"
    out = subprocess.run(
        [sys.executable, "-c", "import sys, firmware_sim; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch','tensorflow','nca_edge','onnx'}))"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "[]"
