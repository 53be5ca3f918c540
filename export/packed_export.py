"""The ``packed`` export: the tflite-int8 step's integer parameters as a device blob.

The blob holds exactly the integers ``firmware_sim.int8`` computes with, derived from the
int8 TFLite step of the same model (calibrated on CA trajectories, 28x28, batch 1: the
parameters do not depend on the grid), with binary kernels at 1 bit per weight
(``firmware_sim.blob``; format in docs/packed_format.md). So a packed file and the
tflite-int8 file exported from the same checkpoint compute the same bits.
"""

from __future__ import annotations

from firmware_sim import blob, int8

from .artifact import encode_record
from .int8_graph import quantization


def int8_step_from_tflite(data: bytes) -> int8.Int8Step:
    from ai_edge_litert.interpreter import Interpreter

    from nca_edge.larq_mirror import quiet_stderr

    with quiet_stderr():
        it = Interpreter(model_content=data)
        it.allocate_tensors()
    return int8.derive(quantization(it))


def packed_bytes(model, record: dict, tflite_int8: bytes) -> bytes:
    cfg = model.cfg
    params = int8_step_from_tflite(tflite_int8)
    return blob.dumps(params, cfg.quant, cfg.perception, cfg.hidden, cfg.n_classes, record=encode_record(record))
