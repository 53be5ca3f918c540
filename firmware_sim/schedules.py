"""Update schedules: how the cells of an asynchronous device take turns (int8 path).

The CA was trained with a synchronous random mask: at each step every cell fires with
probability 0.5 and all firing cells read the same old state. Real low-power hardware is
not that tidy. Three schedules, all driven by ``firmware_sim.prng`` so a device can replay them::

    sync        the trained semantics (``firmware_sim.int8.step``): firing cells update together
                from the state at the start of the step.
    async       the same cells fire, but one at a time, in a random order; each reads its
                neighbours' latest states (a cell that fired earlier in the step is seen
                updated). The order: cells sorted by mix32(key ^ ((row << 16) | col)) with
                key = mix32(mix32(seed ^ ORDER_SALT) ^ stream) ^ step, ties by position.
    stale:K     the same cells fire together, but each sees its neighbours' states from K
                steps ago (its own state is current): a device whose neighbour links lag.
                stale:0 is sync.

In every schedule a cell that does not fire (or is dead) keeps its state exactly (the ADD
with a zero update is the identity; ``check_add_identity`` proves it for a given model over
all 256 int8 values, and the asynchronous schedules refuse a model for which it fails).
"""

from __future__ import annotations

import numpy as np

from .int8 import Int8Step, _patches, add_update, firing_update, resting_is_identity, step
from .prng import mix32

ORDER_SALT = 0x5F3759DF


def parse(schedule: str) -> tuple[str, int]:
    """'sync' | 'async' | 'stale:K' -> (kind, K)."""
    if schedule in ("sync", "async"):
        return schedule, 0
    if schedule.startswith("stale:"):
        try:
            k = int(schedule.split(":", 1)[1])
        except ValueError:
            k = -1
        if k >= 0:
            return "stale", k
    raise ValueError(f"unknown schedule {schedule!r}: use sync, async or stale:K (K >= 0)")


def check_add_identity(params: Int8Step) -> None:
    if not resting_is_identity(params):
        raise ValueError("this model's ADD does not keep a resting cell's state exactly; "
                         "the asynchronous schedules need it to")


class Runner:
    """Steps a batch of int8 states [B, H, W, C] under one schedule (keeps the history stale:K needs)."""

    def __init__(self, params: Int8Step, schedule: str = "sync", seed: int = 0):
        self.params = params
        self.kind, self.k = parse(schedule)
        self.seed = seed
        self.history: list[np.ndarray] = []
        if self.kind != "sync":
            check_add_identity(params)

    def reset(self) -> None:
        self.history = []

    def step(self, state: np.ndarray, fire: np.ndarray, t: int, streams) -> np.ndarray:
        if self.kind == "sync" or (self.kind == "stale" and self.k == 0):
            return step(self.params, state, fire)
        if self.kind == "stale":
            self.history.append(state)
            old = self.history[0]  # K steps ago (or the oldest kept, during the first K steps)
            self.history = self.history[-self.k:]
            return self._stale(state, old, fire)
        return self._async(state, fire, t, streams)

    def _firing(self, state, fire):
        p = self.params
        return np.nonzero(fire & (state[..., 0] >= p.alive_min))

    def _stale(self, state, old, fire):
        p = self.params
        b, yy, xx = self._firing(state, fire)
        out = state.copy()
        if len(b):
            patches = _patches(old.astype(np.int32), b, yy, xx, p.conv1.input_zero)
            patches[:, 1, 1] = state[b, yy, xx].astype(np.int32)  # its own state is current
            m = firing_update(p, patches)
            out[b, yy, xx, 1:] = add_update(p, state[b, yy, xx, 1:], m)
        return out

    def _async(self, state, fire, t, streams):
        p = self.params
        bsz, h, w, _ = state.shape
        key = mix32(mix32(np.uint32(self.seed & 0xFFFFFFFF) ^ np.uint32(ORDER_SALT)) ^ np.asarray(streams, np.uint32))
        key = key ^ np.uint32(t & 0xFFFFFFFF)
        pos = (np.arange(h, dtype=np.uint32)[:, None] << np.uint32(16)) | np.arange(w, dtype=np.uint32)[None, :]
        rank = mix32(key[:, None, None] ^ pos[None])  # [B, H, W]
        firing = fire & (state[..., 0] >= p.alive_min)
        # per grid: firing cells in rank order (ties by flat position: np.lexsort is stable)
        flat_rank = np.where(firing, rank, np.uint32(0xFFFFFFFF)).reshape(bsz, -1).astype(np.uint64)
        flat_rank = np.where(firing.reshape(bsz, -1), flat_rank, np.uint64(1 << 40))
        order = np.argsort(flat_rank, axis=1, kind="stable")
        counts = firing.reshape(bsz, -1).sum(1)
        # the padded grid is updated in place: later cells read earlier cells' new states
        xp = np.pad(state.astype(np.int32), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=p.conv1.input_zero)
        dy, dx = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
        for j in range(int(counts.max(initial=0))):
            bs = np.nonzero(counts > j)[0]
            cell = order[bs, j]
            yy, xx = cell // w + 1, cell % w + 1
            patches = xp[bs[:, None, None], yy[:, None, None] + dy - 1, xx[:, None, None] + dx - 1]
            m = firing_update(p, patches)
            xp[bs, yy, xx, 1:] = add_update(p, xp[bs, yy, xx, 1:], m)
        return xp[:, 1:-1, 1:-1].astype(np.int8)

