"""The baseline an embedded engineer would pick instead of a CA: a small conventional CNN.

Three 3x3 convolutions with stride 2 and no padding (28 -> 13 -> 6 -> 2), each followed by a
ReLU, then one fully connected layer to the class logits::

    x (1 x 28 x 28) -> conv 3x3/2 (c1) -> ReLU -> conv 3x3/2 (c2) -> ReLU -> conv 3x3/2 (c3) -> ReLU
                    -> flatten (2 x 2 x c3, in H, W, C order) -> fc (classes)

It is trained in float (cross-entropy, Adam) and deployed as a full-integer ``tflite-int8``
file (``export.cnn_export``) whose arithmetic ``firmware_sim.cnn`` defines. Shipped baselines
(``nca_edge/models/baselines/``) are sized against the CA variants: ``cnn-2k`` (~2 K int8
parameters, the size of the smallest binary CA the project aims at), ``cnn-16k`` (the bnn's
16 KB) and ``cnn-22k`` (the int8 CA's 22.5 K parameters).

A checkpoint is ``NAME.safetensors`` + ``NAME.json`` (format ``nca-edge-baseline``): the config,
the weights' SHA-256 (checked at every load), the command that made it and its test accuracy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from . import __version__
from .atomic import atomic_write_bytes
from .checkpoint import atomic_save_tensors, checkpoint_paths, shipped_models_dir
from .errors import NCAEdgeError

FORMAT = "nca-edge-baseline"
FORMAT_VERSION = 1
GRID = 28


@dataclass(frozen=True)
class CNNConfig:
    """Everything that defines a baseline CNN and its training."""

    widths: tuple[int, ...] = (16, 24, 48)  # output channels of the 3x3 / stride-2 convolutions
    n_classes: int = 10
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    dataset: str = "mnist"

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not 1 <= len(self.widths) <= 3 or any(not 1 <= w <= 256 for w in self.widths):
            raise ValueError("widths: 1 to 3 convolutions of 1 to 256 channels")
        if not 2 <= self.n_classes <= 256 or self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("n_classes 2..256, epochs >= 0, batch_size >= 1 and lr > 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CNNConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown baseline config fields {unknown}")
        return cls(**d)

    def feature_grid(self) -> int:
        n = GRID
        for _ in self.widths:
            n = (n - 3) // 2 + 1
        return n

    def parameters(self) -> int:
        total, cin = 0, 1
        for w in self.widths:
            total += 9 * cin * w + w
            cin = w
        return total + self.feature_grid() ** 2 * cin * self.n_classes + self.n_classes


SHIPPED = {  # name -> widths; every other field at its default
    "cnn-2k": (4, 8, 16),
    "cnn-16k": (16, 24, 48),
    "cnn-22k": (16, 32, 54),
}


class CNN(nn.Module):
    def __init__(self, cfg: CNNConfig):
        super().__init__()
        self.cfg = cfg
        convs, cin = [], 1
        for w in cfg.widths:
            convs.append(nn.Conv2d(cin, w, 3, stride=2))
            cin = w
        self.convs = nn.ModuleList(convs)
        self.fc = nn.Linear(cfg.feature_grid() ** 2 * cin, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float [B, 1, 28, 28] in [0, 1] -> logits [B, classes]."""
        for c in self.convs:
            x = torch.relu(c(x))
        return self.fc(x.permute(0, 2, 3, 1).flatten(1))  # (H, W, C): the order of TFLite's RESHAPE


def param_shapes(cfg: CNNConfig) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in CNN(cfg).state_dict().items()}


def save(path: str | Path, model: CNN, **meta) -> Path:
    tpath, jpath = checkpoint_paths(path)
    sidecar = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.cfg.to_dict(),
               "parameters": model.cfg.parameters(), "package_version": __version__, **meta}
    atomic_save_tensors(tpath, dict(model.state_dict()))
    sidecar["weights_sha256"] = hashlib.sha256(tpath.read_bytes()).hexdigest()
    atomic_write_bytes(jpath, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return tpath


def baselines_dir() -> Path:
    return shipped_models_dir() / "baselines"


def shipped_baselines() -> list[str]:
    """The shipped baselines' names, smallest first."""
    names = [p.stem for p in baselines_dir().glob("*.safetensors")]
    return sorted(names, key=lambda n: (CNNConfig(widths=SHIPPED[n]).parameters() if n in SHIPPED else 1 << 30, n))


def resolve(name_or_path: str) -> Path:
    """A shipped baseline's name (``cnn-16k``) or a checkpoint path -> its tensors path."""
    shipped = baselines_dir() / f"{name_or_path}.safetensors"
    if "/" not in name_or_path and shipped.is_file():
        return shipped
    tpath, jpath = checkpoint_paths(name_or_path)
    if not jpath.is_file():
        names = ", ".join(sorted(p.stem for p in baselines_dir().glob("*.safetensors"))) or "none"
        raise NCAEdgeError(f"baseline {name_or_path!r} not found: give a checkpoint path or a shipped baseline ({names})")
    return tpath


def load(path: str | Path) -> tuple[CNN, dict]:
    """(model, sidecar); one clear line (NCAEdgeError) for anything wrong with the files."""
    tpath, jpath = checkpoint_paths(resolve(str(path)))
    try:
        meta = json.loads(jpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NCAEdgeError(f"{jpath}: unreadable baseline sidecar ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise NCAEdgeError(f"{jpath}: not an nca-edge baseline sidecar (format {FORMAT!r}, version {FORMAT_VERSION})")
    try:
        cfg = CNNConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise NCAEdgeError(f"{jpath}: invalid baseline config ({e})") from None
    try:
        got = hashlib.sha256(tpath.read_bytes()).hexdigest()
    except OSError as e:
        raise NCAEdgeError(f"{tpath}: unreadable ({e.strerror or e})") from None
    if got != meta.get("weights_sha256"):
        raise NCAEdgeError(f"{tpath}: SHA-256 does not match the sidecar's weights_sha256 (changed, or another model's)")
    try:
        tensors = load_file(str(tpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise NCAEdgeError(f"{tpath}: unreadable or corrupt safetensors file ({e})") from None
    want = param_shapes(cfg)
    if {k: tuple(v.shape) for k, v in tensors.items()} != want:
        raise NCAEdgeError(f"{tpath}: its tensors do not match the config in {jpath.name}")
    if any(not torch.isfinite(v).all() for v in tensors.values()):
        raise NCAEdgeError(f"{tpath}: holds non-finite values (NaN or Inf)")
    model = CNN(cfg)
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.eval(), meta
