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
