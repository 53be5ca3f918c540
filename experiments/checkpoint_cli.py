"""Checkpoints in for the experiment scripts, with a one-line error instead of a traceback.

    model, config, meta = load("bwn")                       # a shipped name or a checkpoint path
"""

from __future__ import annotations

from nca_edge.checkpoint import load_checkpoint, resolve_model
from nca_edge.errors import NCAEdgeError


def load(ref: str):
    """(model, config, sidecar) of a shipped name or checkpoint path; a bad one exits with one line."""
    try:
        return load_checkpoint(resolve_model(ref))
    except NCAEdgeError as e:
        raise SystemExit(f"error: {e}")
