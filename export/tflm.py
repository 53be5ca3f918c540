"""TensorFlow Lite for Microcontrollers (pip ``tflite-micro``) as a runtime for ``tflite-int8`` files.

TFLM is what a microcontroller runs a ``.tflite`` with: its int8 kernels are TFLite's reference
integer kernels, its memory is one static arena that must hold every tensor live at once. Its
Python package runs the same C++ on the host, so ``nca-edge verify --runtime tflm`` checks the
file bit for bit against ``firmware_sim`` exactly as a board would compute it, and
``arena_bytes`` reports the arena the file needs (the allocator's recorded total).

Optional: every function raises ``NCAEdgeError`` naming the install command when the package is
absent.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

from nca_edge.errors import NCAEdgeError

INSTALL = "pip install tflite-micro"


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as e:
        raise NCAEdgeError(f"TFLite Micro is not installed ({INSTALL})") from e
    return runtime


def available() -> bool:
    try:
        _runtime()
    except NCAEdgeError:
        return False
    return True


ARENA_LIMIT = 64 << 20  # bytes offered to TFLM; the recording allocator reports what it uses


def interpreter(path):
    return _runtime().Interpreter.from_file(str(path), arena_size=ARENA_LIMIT)


class TFLMStep:
    """One CA step in TFLM: ``step(int8 state [B, H, W, C], int8 fire [B, H, W]) -> next state``."""

    def __init__(self, path):
        self.it = interpreter(path)
        shapes = [tuple(int(v) for v in self.it.get_input_details(i)["shape"]) for i in range(2)]
        self.state_index = next(i for i, s in enumerate(shapes) if s[-1] != 1)
        self.fire_index = 1 - self.state_index
        if self.it.get_input_details(self.state_index)["dtype"] != np.int8:
            raise NCAEdgeError("TFLM runs full-integer (tflite-int8) artifacts only")
        shape = shapes[self.state_index]
        self.batch, self.grid = shape[0], shape[1:3]

    def __call__(self, s: np.ndarray, fire_q: np.ndarray) -> np.ndarray:
        self.it.set_input(np.ascontiguousarray(s, np.int8), self.state_index)
        self.it.set_input(np.ascontiguousarray(fire_q[..., None], np.int8), self.fire_index)
        self.it.invoke()
        return np.array(self.it.get_output(0), np.int8)


def arena_bytes(path) -> int:
    """The tensor arena the file needs in TFLM (bytes): the recording allocator's total. TFLM's
    ``print_allocations`` writes it through a C++ buffer flushed only at exit, so a child process
    prints it and its stdout is read."""
    _runtime()
    code = ("import sys; from tflite_micro.python.tflite_micro import runtime; "
            f"runtime.Interpreter.from_file(sys.argv[1], arena_size={ARENA_LIMIT}).print_allocations()")
    p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    m = re.search(r"Arena allocation total (\d+) bytes", p.stdout + p.stderr)
    if p.returncode != 0 or not m:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise NCAEdgeError(f"TFLM did not report its arena allocation for {path}: {tail}")
    return int(m.group(1))
