"""Checkpoints in and out for the scripts: one-line errors, and the command recorded as the recipe.

    model, config, meta = load("bwn")                       # a shipped name or a checkpoint path
    write_start("runs/x-init/model", model, config, "untrained widened model", eval_digits=200, widened_from="bwn")
"""

from __future__ import annotations

import dataclasses

from nca_edge.checkpoint import load_checkpoint, resolve_model, save_checkpoint
from nca_edge.errors import NCAEdgeError
from report import command


def load(ref: str):
    """(model, config, sidecar) of a shipped name or checkpoint path; a bad one exits with one line."""
    try:
        return load_checkpoint(resolve_model(ref))
    except NCAEdgeError as e:
        raise SystemExit(f"error: {e}")


def write_start(out: str, model, config, label: str, eval_digits: int = 0, **meta) -> None:
    """Save a warm start derived from a trained model (its CA config is ``model.cfg``), with this
    script's command line as its recipe; then, if eval_digits, evaluate it as it is on the first
    eval_digits test digits (200 steps, no mutation)."""
    try:
        path = save_checkpoint(out, model, dataclasses.replace(config, ca=model.cfg), recipe=command(), **meta)
    except OSError as e:
        raise SystemExit(f"error: cannot write {out}: {e.strerror or e}")
    print(f"wrote {path}")
    if eval_digits:
        from eval_snapshots import step200, test_digits

        print(step200(label, model, *test_digits(eval_digits), "test"))
