"""Run a recipe (``nca_edge.recipe``) stage by stage, resumably.

Each stage writes ``OUT/STAGE/``. Running the same recipe again with the same ``OUT`` continues
where it stopped: a finished stage (its checkpoint holds the stage's iterations) is skipped, an
interrupted one resumes from its training state, bit for bit. A stage whose saved configuration
differs from the recipe's (another recipe, or an edited one) is an error naming the first field
that differs; nothing is overwritten.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

from nca_edge.config import Config
from nca_edge.errors import NCAEdgeError
from nca_edge.recipe import Recipe, Stage

from .trainer import STATE_FILE, Trainer, train


def stage_model(out: Path, stage: Stage) -> Path:
    """Where a stage's model is (``OUT/STAGE/model``, as a checkpoint path without extension)."""
    return out / stage.name / "model"


def run_recipe(recipe: Recipe, out: Path, digits, device: str = "auto", progress: bool = True,
               say: Callable[[str], None] = print, only: str | None = None, command: str = "") -> Path:
    """Run every stage not yet done (or only the stage named ``only``); returns the last stage's
    model path. ``say`` gets one line per stage: which recipe and stage runs, and why. ``command``
    (the command line that runs the recipe) is recorded in each checkpoint with its stage."""
    out = Path(out)
    command = command or f"nca-edge train --recipe {recipe.name}"
    n = len(recipe.stages)
    for i, stage in enumerate(recipe.stages, 1):
        if only is not None and stage.name != only:
            continue
        head = f"recipe {recipe.name}, stage {i}/{n} '{stage.name}' ({stage.kind})"
        run_dir = out / stage.name
        init = _init_path(recipe, stage, out)
        if stage.kind in ("narrow", "widen"):
            target = stage_model(out, stage)
            if target.with_suffix(".json").is_file():
                _check_same_transform(stage, target, head)
                say(f"{head}: done ({target}.json exists)")
                continue
            if stage.kind == "narrow":
                say(f"{head}: {stage.init} -> perception {stage.perception}, hidden {stage.hidden}")
            else:
                say(f"{head}: {stage.init} -> hidden x {stage.factor} (noise {stage.noise}, seed {stage.seed})")
            _transform(stage, init, target, recipe, digits, f"{command} (stage {stage.name})")
            continue
        config = replace(stage.config, train=replace(stage.config.train, init_from=init))
        done = _finished_iterations(run_dir)
        if (run_dir / STATE_FILE).is_file():
            _check_same(run_dir, config, head)
            if done is not None and done >= config.train.iterations:
                say(f"{head}: done ({done} iterations in {run_dir})")
                continue
            say(f"{head}: resuming in {run_dir} at iteration {done}, to {config.train.iterations}")
            resume = True
        else:
            say(f"{head}: training {config.ca.quant} for {config.train.iterations} iterations in {run_dir}"
                + (f", from {stage.init}" if stage.init else ""))
            resume = False
        trainer = train(config, digits, run_dir, device=device, resume=resume, progress=progress,
                        recipe=f"{command} (stage {stage.name})",
                        extra_meta={"recipe_name": recipe.name, "recipe_stage": stage.name, "recipe_toml": recipe.text})
        if trainer.interrupted:
            raise KeyboardInterrupt
    return stage_model(out, recipe.stages[-1] if only is None else recipe.stage(only))


def _init_path(recipe: Recipe, stage: Stage, out: Path) -> str:
    """A stage's warm start: an earlier stage's model (which must exist by now) or the reference as is."""
    names = [s.name for s in recipe.stages]
    if stage.init and stage.init in names[: names.index(stage.name)]:
        path = stage_model(out, recipe.stage(stage.init))
        if not path.with_suffix(".json").is_file():
            raise NCAEdgeError(f"recipe {recipe.name}: stage {stage.name} starts from stage {stage.init}, "
                               f"which has not run yet ({path}.json is missing)")
        return str(path)
    return stage.init


def _check_same_transform(stage: Stage, target: Path, head: str) -> None:
    """A narrow/widen stage's output must have been made with the recipe's settings."""
    from nca_edge.checkpoint import read_sidecar

    meta = read_sidecar(target)
    if stage.kind == "narrow":
        want, got = {"perception": stage.perception, "hidden": stage.hidden}, meta.get("narrowing") or {}
    else:
        want, got = {"factor": stage.factor, "noise": stage.noise, "seed": stage.seed}, meta.get("widening") or {}
    for k, v in want.items():
        if got.get(k) != v:
            raise NCAEdgeError(f"{head}: {target}.json was made with {k} = {got.get(k)!r}, the recipe says {v!r}; "
                               "use another --out or remove that directory")


def _finished_iterations(run_dir: Path) -> int | None:
    try:
        return int(Trainer.read_state_meta(run_dir)["iteration"])
    except (NCAEdgeError, KeyError, ValueError):
        return None


def _check_same(run_dir: Path, config: Config, head: str) -> None:
    try:
        saved = Config.from_dict(Trainer.read_state_meta(run_dir)["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise NCAEdgeError(f"{head}: {run_dir} holds a run whose saved config cannot be used ({e})") from None
    a, b = saved.to_dict(), config.to_dict()
    for part in ("ca", "train"):
        for k, v in b[part].items():
            if k == "init_from" and a[part].get(k) and v and os.path.realpath(a[part][k]) == os.path.realpath(v):
                continue  # the same stage reached through another spelling of --out
            if k != "iterations" and a[part].get(k) != v:
                raise NCAEdgeError(f"{head}: {run_dir} holds a run with {part}.{k} = {a[part].get(k)!r}, the recipe says "
                                   f"{v!r}; use another --out or remove that directory")


def _transform(stage: Stage, init: str, target: Path, recipe: Recipe, digits, command: str) -> None:
    """A warm start derived from a trained model, no training: narrowing or widening."""
    import torch

    from nca_edge.checkpoint import load_checkpoint, resolve_model, save_checkpoint
    from nca_edge.data import to_float
    from nca_edge.warm_start import activation_stats, narrow, widen_hidden

    src, config, _ = load_checkpoint(resolve_model(init))
    where = f"recipe {recipe.name}, stage {stage.name}"
    if stage.kind == "narrow":
        if not (stage.perception <= src.cfg.perception and stage.hidden <= src.cfg.hidden) or src.cfg.depthwise:
            raise NCAEdgeError(f"{where}: cannot narrow {init} (perception {src.cfg.perception}, hidden {src.cfg.hidden}"
                               f"{', depthwise' if src.cfg.depthwise else ''}) to {stage.perception}, {stage.hidden}")
        pixels = torch.from_numpy(to_float(digits.train_x[:64]))
        model = narrow(src.eval(), stage.perception, stage.hidden, activation_stats(src.eval(), pixels, 60))
        how = {"narrowed_from": init, "narrowing": {"perception": stage.perception, "hidden": stage.hidden, "digits": 64, "steps": 60}}
    else:
        model = widen_hidden(src, stage.factor, stage.noise, stage.seed)
        how = {"widened_from": init, "widening": {"factor": stage.factor, "noise": stage.noise, "seed": stage.seed}}
    save_checkpoint(target, model, replace(config, ca=model.cfg), recipe=command,
                    recipe_name=recipe.name, recipe_stage=stage.name, recipe_toml=recipe.text,
                    data={"dataset": digits.name, "sha256": digits.source_sha256}, **how)
