"""The fire-mask PRNG: a counter-based integer hash, identical on a device and on the desk.

Every cell decides independently whether it fires (updates) at a step. The decision is a
pure function of five unsigned integers, so any device, simulator or framework that
implements the arithmetic below produces the same masks, in any order, on any grid size::

    mix(x)   = lowbias32 hash (all arithmetic on uint32, wrapping):
                 x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16
    k        = mix(seed ^ 0x9E3779B9)
    k        = mix(k ^ stream)          # stream: which grid (e.g. the test-digit index)
    k        = mix(k ^ step)            # step: 0-based CA step index
    k        = mix(k ^ ((row << 16) | col))
    fire     = (k >> 8) < threshold     # threshold = round(fire_rate * 2**24), 24-bit compare

seed, stream, step are taken mod 2**32; row and col must be < 2**16. With fire_rate 0.5 the
threshold is 2**23, i.e. a cell fires when bit 31 of k is 0.
"""

import numpy as np

_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)
_GOLDEN = np.uint32(0x9E3779B9)


def mix32(x: np.ndarray) -> np.ndarray:
    """lowbias32 (Wellons): a bijective 32-bit integer hash, on uint32 arrays."""
    x = np.asarray(x, dtype=np.uint32).copy()
    x ^= x >> np.uint32(16)
    x *= _M1
    x ^= x >> np.uint32(15)
    x *= _M2
    x ^= x >> np.uint32(16)
    return x


def fire_threshold(fire_rate: float) -> int:
    """The 24-bit threshold for a fire rate in [0, 1]."""
    if not 0.0 <= fire_rate <= 1.0:
        raise ValueError("fire_rate must be in [0, 1]")
    return int(round(fire_rate * (1 << 24)))


def fire_mask(seed: int, streams, step: int, height: int, width: int, fire_rate: float = 0.5) -> np.ndarray:
    """Bool masks [len(streams), height, width] for one step; True = the cell fires."""
    if height > 1 << 16 or width > 1 << 16:
        raise ValueError("grid too large for the 16-bit row/col fields")
    streams = np.asarray(streams, dtype=np.uint64) & np.uint64(0xFFFFFFFF)
    k = mix32(np.uint32(seed & 0xFFFFFFFF) ^ _GOLDEN)
    k = mix32(k ^ streams.astype(np.uint32))  # [S]
    k = mix32(k ^ np.uint32(step & 0xFFFFFFFF))
    rows = np.arange(height, dtype=np.uint32)[:, None] << np.uint32(16)
    cols = np.arange(width, dtype=np.uint32)[None, :]
    k = mix32(k[:, None, None] ^ (rows | cols)[None])
    return (k >> np.uint32(8)) < np.uint32(fire_threshold(fire_rate))
