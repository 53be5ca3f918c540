"""Checkpoints: safetensors weights + a JSON sidecar. No pickle anywhere.

A checkpoint is two files with one stem: ``NAME.safetensors`` (the tensors) and ``NAME.json``
(the sidecar)::

    {
      "format": "nca-edge-checkpoint", "format_version": 1,
      "variant": "float",                 # = config.ca.quant
      "config": {...},                    # nca_edge.config.Config, every hyperparameter
      "recipe": "...",                    # the command that produced it
      "data": {"dataset": "mnist", "sha256": "..."},
      "iterations": 100000, "train_seconds": 7000.0, "device": "cpu",
      "weights_sha256": "...",            # SHA-256 of NAME.safetensors, checked at every load
      "config_sha256": "...",             # SHA-256 of the config above (canonical JSON), checked too
      "metrics": {...},                   # filled by `nca-edge eval --save-metrics` (optional)
      "package_version": "0.1.0"
    }

Loading checks the weights file against the sidecar's SHA-256 (a changed or relabelled file is
refused), then the tensors against the shapes the config implies, and refuses non-finite values;
it fails with one clear line on a missing, extra or misshaped tensor, an unreadable file or a bad
sidecar.
Both files are written to temporary names first and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .atomic import atomic_write, atomic_write_bytes
from .config import Config
from .errors import NCAEdgeError
from .model import CAModel, param_shapes

FORMAT = "nca-edge-checkpoint"
FORMAT_VERSION = 1


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """Accept ``X``, ``X.safetensors`` or ``X.json``; return (tensors path, sidecar path)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, tmp, metadata=metadata))


def save_checkpoint(path: str | Path, model: CAModel, config: Config, **meta) -> Path:
    """Write NAME.safetensors + NAME.json; returns the tensors path."""
    tpath, jpath = checkpoint_paths(path)
    sidecar = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "variant": config.ca.quant,
        "config": config.to_dict(),
        "package_version": __version__,
        "metrics": {},
    }
    sidecar.update(meta)
    atomic_save_tensors(tpath, dict(model.state_dict()))
    sidecar["weights_sha256"] = hashlib.sha256(tpath.read_bytes()).hexdigest()
    sidecar["config_sha256"] = config_sha256(sidecar["config"])
    atomic_write_bytes(jpath, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return tpath


def config_sha256(config: dict) -> str:
    """SHA-256 of a sidecar's config as canonical JSON (sorted keys): a config edited after saving,
    e.g. a checkpoint relabelled as another variant, no longer matches."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def read_sidecar(path: str | Path) -> dict:
    _, jpath = checkpoint_paths(path)
    if not jpath.is_file():
        raise NCAEdgeError(f"{jpath}: checkpoint sidecar not found (a checkpoint is NAME.safetensors + NAME.json)")
    try:
        meta = json.loads(jpath.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NCAEdgeError(f"{jpath}: corrupt checkpoint sidecar ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NCAEdgeError(f"{jpath}: not an nca-edge checkpoint sidecar (format != {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise NCAEdgeError(f"{jpath}: checkpoint format version {meta.get('format_version')} is not supported (want {FORMAT_VERSION})")
    return meta


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[CAModel, Config, dict]:
    """Load (model, config, sidecar). Raises NCAEdgeError with one clear line on any problem."""
    tpath, jpath = checkpoint_paths(path)
    meta = read_sidecar(path)
    if not isinstance(meta.get("config"), dict) or meta.get("config_sha256") != config_sha256(meta["config"]):
        raise NCAEdgeError(f"{jpath}: the config does not match the sidecar's config_sha256 "
                           "(edited after saving, e.g. relabelled as another variant, or written by an older nca-edge)")
    try:
        config = Config.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise NCAEdgeError(f"{jpath}: invalid config in sidecar ({e})") from None
    if meta.get("variant") != config.ca.quant:
        raise NCAEdgeError(f"{jpath}: sidecar variant {meta.get('variant')!r} does not match config quant {config.ca.quant!r}")
    if not tpath.is_file():
        raise NCAEdgeError(f"{tpath}: checkpoint weights not found")
    want = meta.get("weights_sha256")
    if not isinstance(want, str):
        raise NCAEdgeError(f"{jpath}: the sidecar records no weights_sha256, so {tpath.name} cannot be checked")
    try:
        got = hashlib.sha256(tpath.read_bytes()).hexdigest()
    except OSError as e:
        raise NCAEdgeError(f"{tpath}: unreadable ({e.strerror or e})") from None
    if got != want:
        raise NCAEdgeError(f"{tpath}: SHA-256 {got[:12]}... does not match the sidecar's {want[:12]}... "
                           "(the weights were changed, or belong to another checkpoint)")
    try:
        tensors = load_file(str(tpath), device=map_location)
    except (SafetensorError, OSError, ValueError) as e:
        raise NCAEdgeError(f"{tpath}: unreadable or corrupt safetensors file ({e})") from None
    expected = param_shapes(config.ca)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        raise NCAEdgeError(f"{tpath}: missing tensors {missing} for the {config.ca.quant} config in {jpath.name}")
    if extra:
        raise NCAEdgeError(f"{tpath}: unexpected tensors {extra} (config in {jpath.name} does not describe this file)")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise NCAEdgeError(
                f"{tpath}: tensor {name} has shape {tuple(tensors[name].shape)}, the config in {jpath.name} implies {shape}"
            )
        if not tensors[name].is_floating_point():
            raise NCAEdgeError(f"{tpath}: tensor {name} has dtype {tensors[name].dtype}, expected floating point")
        bad = int((~torch.isfinite(tensors[name])).sum())
        if bad:
            raise NCAEdgeError(f"{tpath}: tensor {name} holds {bad} non-finite value(s) (NaN or Inf)")
    _check_invariants(config, tensors, tpath)
    model = CAModel(config.ca)
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    model.to(map_location)
    return model, config, meta


def _check_invariants(config: Config, tensors: dict, tpath: Path) -> None:
    """What training guarantees of a variant's tensors: latent binary kernels within Larq's weight
    clip [-1, 1] and learned binary scales > 0 (so scale and bias fold into a threshold)."""
    for layer in ("perceive", "update1", "update2"):
        if not config.ca.binary_kernel(layer):
            continue
        w = tensors[f"{layer}.weight"]
        if float(w.abs().max()) > 1.0:
            raise NCAEdgeError(f"{tpath}: {layer}.weight is a binary kernel, but its latent weights leave [-1, 1] "
                               f"(max |w| {float(w.abs().max()):.3g}): not a checkpoint this variant's training writes")
        scale = tensors.get(f"{layer}.scale")
        if scale is not None and float(scale.min()) <= 0:
            raise NCAEdgeError(f"{tpath}: {layer}.scale holds a scale <= 0; binary scales must be positive")


def shipped_models_dir() -> Path:
    return Path(__file__).resolve().parent / "models"


VARIANT_ORDER = ["float", "bwn", "ban", "bnn"]


def default_models() -> list[str]:
    """The shipped models' names, the four variants first."""
    have = {p.stem for p in shipped_models_dir().glob("*.safetensors")}
    return [v for v in VARIANT_ORDER if v in have] + sorted(have - set(VARIANT_ORDER))


def resolve_model(name_or_path: str) -> Path:
    """`float` (etc.) -> the shipped checkpoint; anything else -> a checkpoint path."""
    shipped = shipped_models_dir() / f"{name_or_path}.safetensors"
    if "/" not in name_or_path and not name_or_path.endswith((".safetensors", ".json")) and shipped.is_file():
        return shipped
    tpath, jpath = checkpoint_paths(name_or_path)
    if not tpath.exists() and not jpath.exists():
        names = sorted(p.stem for p in shipped_models_dir().glob("*.safetensors"))
        raise NCAEdgeError(f"model {name_or_path!r} not found: give a checkpoint path or a shipped model ({', '.join(names) or 'none'})")
    return tpath
