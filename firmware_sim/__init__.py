"""firmware_sim: the numpy-only integer golden model of the CA on low-power hardware.

Imports numpy and nothing else (the standard library aside). Modules:

* :mod:`firmware_sim.int8`: the int8 CA step, to the bit (docs/integer_semantics.md), and the
  offline derivation of its integers from an int8 model's scales;
* :mod:`firmware_sim.fixedpoint`: TFLite's fixed-point requantization;
* :mod:`firmware_sim.prng`: the fire-mask PRNG every execution path shares;
* :mod:`firmware_sim.schedules`: sync, async and stale-neighbour update schedules;
* :mod:`firmware_sim.protocol`: the evaluation protocol's pieces and ``run_int8``;
* :mod:`firmware_sim.packed`, :mod:`firmware_sim.blob`: the packed device blob and the int8
  step inside it (docs/packed_format.md);
* :mod:`firmware_sim.xnor`: the blob's device arithmetic (binary activations as bits, thresholds
  on accumulators, XNOR/popcount), equal to the int8 step bit for bit;
* :mod:`firmware_sim.vectors`: hardware test vectors (docs/test_vectors.md).

    from firmware_sim import blob, int8
    params, _ = blob.load("bwn.ncap")
    state = int8.seed(params, grey)          # uint8 [B, H, W] -> int8 [B, H, W, C]
    state = int8.step(params, state, fire)   # fire: bool [B, H, W]
    state = xnor.step(params, state, fire)   # the same bits, computed as a device does
"""

from .fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from .prng import fire_mask, fire_threshold, mix32

__all__ = ["fire_mask", "fire_threshold", "mix32", "multiply_by_quantized_multiplier", "quantize_multiplier"]
