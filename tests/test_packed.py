"""The packed container (firmware_sim.packed): bit layout, round trip, and refusal of bad files."""

import struct
import zlib

import numpy as np
import pytest

from firmware_sim.packed import BITS, INT8, INT32, Packed, PackedFormatError, pack_bits, read, unpack_bits, write


def test_bits_are_lsb_first_with_one_meaning_minus_one_and_zero_padding():
    v = np.array([[-1, 1, 1, -1] + [1] * 30])  # 34 values -> 2 words
    words = pack_bits(v)
    assert words.dtype == np.uint32 and words.shape == (1, 2)
    assert words[0, 0] == 0b1001 and words[0, 1] == 0  # elements 0 and 3 are -1; tail bits 0
    v[0, 33] = -1
    assert pack_bits(v)[0, 1] == 0b10
    assert np.array_equal(unpack_bits(pack_bits(v), 34), v)


def _example() -> Packed:
    rng = np.random.default_rng(0)
    p = Packed("bnn", 20, 80, 80, 10)
    p.tensors["conv1.weight"] = np.where(rng.random((80, 180)) < 0.5, -1, 1).astype(np.int8)
    p.dtypes["conv1.weight"] = BITS
    p.tensors["conv3.weight"] = rng.integers(-127, 128, (19, 80)).astype(np.int8)
    p.dtypes["conv3.weight"] = INT8
    p.tensors["conv1.bias"] = rng.integers(-2**31, 2**31 - 1, 80).astype(np.int32)
    p.dtypes["conv1.bias"] = INT32
    return p


def test_round_trip_keeps_every_tensor_and_the_header():
    p = _example()
    q = read(write(p))
    assert (q.variant, q.channels, q.perception, q.hidden, q.n_classes) == ("bnn", 20, 80, 80, 10)
    assert list(q.tensors) == list(p.tensors) and q.dtypes == p.dtypes
    for n in p.tensors:
        assert np.array_equal(q.tensors[n], p.tensors[n]) and q.tensors[n].dtype == p.tensors[n].dtype


def test_bit_tensors_take_one_bit_per_weight_in_whole_words():
    blob = write(_example())
    # header 32 + 3 entries x 56, then conv1 bits: 80 rows x ceil(180/32)=6 words x 4 B, int8 19x80, int32 80
    assert len(blob) == 32 + 3 * 56 + 80 * 6 * 4 + 19 * 80 + 80 * 4 + 4


def _resign(blob: bytearray) -> bytes:
    body = bytes(blob[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:100], "truncated"),
    (lambda b: b[:20], "truncated"),
    (lambda b: b[:300] + bytes([b[300] ^ 0x10]) + b[301:], "CRC32 mismatch"),
    (lambda b: b"NCAQ" + b[4:], "wrong magic"),
    (lambda b: _resign(bytearray(b[:4] + struct.pack("<H", 7) + b[6:])), "version 7"),
    (lambda b: b + b"\0", "unexpected bytes"),
])
def test_bad_files_are_refused_with_the_reason(damage, message):
    with pytest.raises(PackedFormatError, match=message):
        read(damage(write(_example())))


def _edit_entry(blob: bytes, i: int, **fields) -> bytes:
    """Rewrite directory entry i (name, dtype, ndim, d0..d3, offset, nbytes) and re-sign the CRC."""
    from firmware_sim.packed import ENTRY, HEADER

    b = bytearray(blob)
    at = HEADER.size + i * ENTRY.size
    names = ("name", "dtype", "ndim", "d0", "d1", "d2", "d3", "offset", "nbytes")
    values = dict(zip(names, ENTRY.unpack_from(b, at)))
    values.update(fields)
    ENTRY.pack_into(b, at, *(values[n] for n in names))
    return _resign(b)


@pytest.mark.parametrize("fields", [
    dict(ndim=0),  # a 0-dimensional BITS field
    dict(d0=2**31, d1=2**31, d2=2**31, ndim=4, d3=8),  # dims whose product passes 2^63
    dict(ndim=5),
], ids=["bits-0-dim", "dims-past-2^63", "5-dims"])
def test_a_hostile_directory_entry_is_refused_with_the_reason(fields):
    with pytest.raises(PackedFormatError):
        read(_edit_entry(write(_example()), 0, **fields))


@pytest.fixture(scope="module")
def bnn_blob():
    import export

    return export.build("bnn", "packed")[0]


def test_fuzzed_blobs_are_a_step_or_one_packed_format_error(bnn_blob):
    """Fuzz: any byte of a real blob changed (CRC re-signed, so the parser sees it): the loader
    returns an int8 step or raises PackedFormatError, never another exception."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from firmware_sim import blob

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, len(bnn_blob) - 5), st.integers(0, 255)), min_size=1, max_size=4))
    def check(edits):
        b = bytearray(bnn_blob)
        for at, value in edits:
            b[at] = value
        try:
            blob.loads(_resign(b))
        except PackedFormatError:
            pass

    check()


def test_fuzzed_directory_entries_are_refused_cleanly(bnn_blob):
    """Fuzz the directory itself (dtype, ndim, dims, offset, size of any entry)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from firmware_sim import blob
    from firmware_sim.packed import HEADER

    n_entries = struct.unpack_from("<H", bnn_blob, HEADER.size - 8)[0]
    u32 = st.integers(0, 2**32 - 1)

    @settings(max_examples=200, deadline=None)
    @given(st.integers(0, n_entries - 1), st.sampled_from(["dtype", "ndim", "d0", "d1", "d2", "d3", "offset", "nbytes"]),
           st.one_of(st.integers(0, 8), u32))
    def check(i, field, value):
        if field in ("dtype", "ndim"):
            value %= 256
        try:
            blob.loads(_edit_entry(bnn_blob, i, **{field: value}))
        except PackedFormatError:
            pass

    check()
