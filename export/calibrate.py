"""Calibration data for integer exports: states from real CA trajectories, not random data.

``trajectory_samples`` runs the PyTorch model (dense step, the definition) on training digits
with the evaluation protocol's masks (``firmware_sim.prng``, seed ``CALIBRATION_SEED`` so they
differ from the test masks), swaps every digit at ``mutate_at`` as the protocol does, and keeps
the (state, fire) pair every ``every`` steps: early, settled and post-mutation states all
appear, so the calibrated ranges cover what a device will see.
"""

from __future__ import annotations

import numpy as np

from firmware_sim.prng import fire_mask
from firmware_sim.protocol import mutation_targets
from nca_edge.data import to_float

CALIBRATION_SEED = 12345


def trajectory_samples(model, train_x: np.ndarray, n_digits: int = 64, steps: int = 120, every: int = 8,
                       mutate_at: int = 60, height: int = 28, width: int = 28) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(state float32 [n, C, H, W], fire bool [n, H, W])] from ``steps`` steps of the first ``n_digits`` digits.

    Digits are padded/cropped (centred) to the export grid so a bigger canvas is calibrated on
    what it will hold.
    """
    from .runtimes import TorchRunner

    cfg = model.cfg
    ref = TorchRunner(model)
    images = _fit(train_x[: 2 * n_digits], height, width)
    ids = np.arange(n_digits)
    swap = mutation_targets(n_digits, CALIBRATION_SEED) + n_digits  # mutate into the second half
    x = np.zeros((n_digits, cfg.channels, height, width), np.float32)
    x[:, 0] = to_float(images[ids])
    s = ref.encode(x)
    out = []
    for t in range(steps):
        if t == mutate_at:
            xf = ref.decode(s).copy()
            xf[:, 0] = to_float(images[swap])
            xf[:, 1:] *= xf[:, :1] > cfg.alive_threshold
            s = ref.encode(xf)
        fire = fire_mask(CALIBRATION_SEED, ids, t, height, width, cfg.fire_rate)
        if t % every == 0:
            out.append((ref.decode(s).copy(), fire))
        s = ref.step(s, fire)
    out.append((ref.decode(s).copy(), fire))
    return out


def calibration_batches(samples, batch: int):
    """Yield the ``samples`` as [state NHWC, fire NHW1] float32 batches of exactly ``batch``.

    Every state is yielded at least once whatever ``batch`` is: a short last batch is filled by
    wrapping around to the sample's first states (repeats do not move a min/max range). So the
    calibrated ranges, hence the file's quantization, do not depend on the export's batch size
    (a batch-50 file and the batch-1 file behind onnx-qdq and packed share their parameters).
    """
    for state, fire in samples:
        n = len(state)
        for i in range(0, n, batch):
            rows = np.arange(i, i + batch) % n
            yield [np.ascontiguousarray(state[rows].transpose(0, 2, 3, 1), dtype=np.float32),
                   fire[rows, ..., None].astype(np.float32)]


def _fit(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre 28x28 digits on a height x width canvas (crop if smaller)."""
    n, h, w = images.shape
    if (h, w) == (height, width):
        return images
    canvas = np.zeros((n, max(h, height), max(w, width)), images.dtype)
    y0, x0 = (canvas.shape[1] - h) // 2, (canvas.shape[2] - w) // 2
    canvas[:, y0:y0 + h, x0:x0 + w] = images
    y1, x1 = (canvas.shape[1] - height) // 2, (canvas.shape[2] - width) // 2
    return canvas[:, y1:y1 + height, x1:x1 + width]
