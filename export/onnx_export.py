"""ONNX exports of one CA step.

``onnx`` (float32): ``FrozenStep`` (``export/graph.py``) traced with ``torch.onnx.export``
(TorchScript exporter, opset 17). Inputs ``state`` [B, C, H, W] and ``fire`` [B, 1, H, W]
(float32, 1 = the cell fires), output ``next_state`` [B, C, H, W]. Batch, height and width are
dynamic axes: convolutions do not care about the grid size, so one file runs any canvas.
Binary activations are ``Where(x >= 0, 1, -1)``, never ONNX ``Sign`` (``Sign(0) = 0``).
"""

from __future__ import annotations

import io
import warnings
import torch

from nca_edge.model import CAModel

from .graph import FrozenStep

OPSET = 17


def onnx_bytes(model: CAModel, record: str = "", height: int = 28, width: int = 28) -> bytes:
    """The float32 ONNX step; ``record``: the artifact record JSON (``export.artifact``)."""
    import onnx

    step = FrozenStep(model).eval()
    c = model.cfg.channels
    example = (torch.zeros(1, c, height, width), torch.zeros(1, 1, height, width))
    buf = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(step, example, buf, input_names=["state", "fire"], output_names=["next_state"],
                          opset_version=OPSET, dynamo=False,
                          dynamic_axes={"state": axes, "fire": axes, "next_state": axes})
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_name = "nca-edge"
    proto.doc_string = f"one CA step of the {model.cfg.quant} self-classifying MNIST CA (nca-edge)"
    if record:
        onnx.helper.set_model_props(proto, {"nca_edge": record})
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()
