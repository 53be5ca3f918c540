"""firmware_sim: the numpy-only integer golden model of the CA on low-power hardware.

Imports numpy and nothing else. At this stage it defines the fire-mask PRNG
(:mod:`firmware_sim.prng`) that every execution path (PyTorch, exports, devices) shares, and
TFLite's fixed-point requantization (:mod:`firmware_sim.fixedpoint`); the integer CA step and
the packed-blob reader follow in the firmware issue.
"""

from .fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from .prng import fire_mask, fire_threshold, mix32

__all__ = ["fire_mask", "fire_threshold", "mix32", "multiply_by_quantized_multiplier", "quantize_multiplier"]
