"""The host loop: run an exported step (any runner) through the article's protocol.

An exported artifact computes one CA step; the host owns everything else, exactly as
``nca_edge.evaluate`` does for the PyTorch model:

    for each batch of test digits (the artifact's fixed batch; short batches padded with blanks):
        state = encode([pixel, 0, ..., 0])
        for t in 0..steps-1:
            if t == mutate_at: swap digits (firmware_sim.protocol), in decoded form
            fire  = firmware_sim.prng.fire_mask(mask_seed, digit index, t, H, W, fire_rate)
            state = runner.step(state, fire)
            labels, alive = argmax of the class channels, pixel > alive_threshold  -> metrics

Usable as a child process (``python -m export.host ARTIFACT --runtime R ...``, see
``export.runtimes.run_in_child``): it imports neither torch nor TensorFlow unless the
runtime needs them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

import numpy as np

from firmware_sim.prng import fire_mask
from firmware_sim.protocol import agreeing, mutation_targets, step_metrics


@dataclass
class HostResult:
    accuracy: np.ndarray  # [steps] percent
    agreement: np.ndarray  # [steps] percent
    agree_last: np.ndarray | None = None  # bool [digits]: total agreement at the last step
    labels: np.ndarray | None = None  # int8 [digits, steps, H, W], -1 on dead cells (record_labels)
    meta: dict = field(default_factory=dict)

    def at(self, step: int) -> tuple[float, float]:
        return float(self.accuracy[step - 1]), float(self.agreement[step - 1])


def run_protocol(runner, images: np.ndarray, labels: np.ndarray, ca: dict, steps: int = 400,
                 mutate_at: int | None = 200, mask_seed: int = 0, record_labels: bool = False,
                 progress=None) -> HostResult:
    """``ca``: the CAConfig fields as a dict (channels, n_classes, fire_rate, alive_threshold)."""
    n = len(labels)
    h, w = images.shape[1:]
    c, k, thr = ca["channels"], ca["n_classes"], ca["alive_threshold"]
    mutate_at = mutate_at if mutate_at and mutate_at < steps else None
    targets = mutation_targets(n, mask_seed)
    bsz = runner.batch or min(n, 64)
    correct = np.zeros(steps, np.int64)
    alive_n = np.zeros(steps, np.int64)
    agree = np.zeros(steps, np.int64)
    agree_last = np.zeros(n, bool)
    rec = np.full((n, steps, h, w), -1, np.int8) if record_labels else None
    for start in range(0, n, bsz):
        ids = np.arange(start, min(start + bsz, n))
        real = len(ids)
        streams = np.concatenate([ids, np.arange(n, n + bsz - real)])  # padding rows: blank grids
        y = _pad(labels[ids], bsz)
        x = np.zeros((bsz, c, h, w), np.float32)
        x[:, 0] = _pixels(images[ids], bsz)
        state = runner.encode(x)
        for t in range(steps):
            if mutate_at is not None and t == mutate_at:
                xf = runner.decode(state)
                xf[:, 0] = _pixels(images[targets[ids]], bsz)
                xf = runner.decode(runner.encode(xf))  # the pixel as the artifact holds it
                xf[:, 1:] *= (xf[:, :1] > thr)
                state = runner.encode(xf)
                y = _pad(labels[targets[ids]], bsz)
            state = runner.step(state, fire_mask(mask_seed, streams, t, h, w, ca["fire_rate"]))
            xf = runner.decode(state)
            lab = xf[:real, -k:].argmax(1)
            alive = xf[:real, 0] > thr
            cc, aa, gg = step_metrics(lab, alive, y[:real])
            correct[t] += cc
            alive_n[t] += aa
            agree[t] += gg
            if rec is not None:
                rec[ids, t] = np.where(alive, lab, -1)
            if progress is not None:
                progress(real)
        if steps:
            agree_last[ids] = agreeing(lab, alive)
    return HostResult(accuracy=100.0 * correct / np.maximum(alive_n, 1), agreement=100.0 * agree / n,
                      agree_last=agree_last, labels=rec)


def _pixels(images: np.ndarray, bsz: int) -> np.ndarray:
    from nca_edge.data import to_float

    return _pad(to_float(images), bsz)


def _pad(a: np.ndarray, bsz: int) -> np.ndarray:
    if len(a) == bsz:
        return a
    return np.concatenate([a, np.zeros((bsz - len(a),) + a.shape[1:], a.dtype)])


def main(argv=None) -> None:
    from nca_edge.data import load_digits

    from .artifact import artifact_config
    from .runtimes import open_runner

    ap = argparse.ArgumentParser(prog="python -m export.host", description=__doc__.splitlines()[0])
    ap.add_argument("artifact")
    ap.add_argument("--runtime", required=True)
    ap.add_argument("--digits", type=int, default=100)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--mutate-at", type=int, default=0)
    ap.add_argument("--mask-seed", type=int, default=0)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--reference", action="store_true")
    ap.add_argument("--labels", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    ca = artifact_config(a.artifact)["config"]["ca"]
    runner = open_runner(a.artifact, a.runtime, reference=a.reference)
    d = load_digits(a.dataset)
    r = run_protocol(runner, d.test_x[: a.digits], d.test_y[: a.digits], ca, a.steps, a.mutate_at, a.mask_seed,
                     record_labels=a.labels)
    arrays = {"accuracy": r.accuracy, "agreement": r.agreement, "agree_last": r.agree_last,
              "meta": np.array(json.dumps({"batch": runner.batch}))}
    if r.labels is not None:
        arrays["labels"] = r.labels
    np.savez(a.out, **arrays)


if __name__ == "__main__":
    main()
