"""The packed device blob: reader and writer (numpy only). Specification: docs/packed_format.md.

Layout (all integers little-endian)::

    header     32 bytes   magic b"NCAP", version, header size, total size, architecture,
                          variant, bit order, word size, channels, perception, hidden,
                          n_classes, tensor count, flags
    directory  56 bytes per tensor: name (24 bytes, ASCII, NUL-padded), dtype, ndim,
                          4 dims (uint32), offset, nbytes (uint32)
    data       each tensor at a 4-byte-aligned offset, zero bytes between
    crc32      uint32, zlib/IEEE CRC-32 of every byte before it

dtypes: BITS (1: +-1 values bit-packed, rows of 32-bit words along the last axis, LSB first,
bit 1 = -1, bit 0 = +1, tail bits 0), INT8 (8), INT16 (16), INT32 (32).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

MAGIC = b"NCAP"
VERSION = 2  # 2: convN.q gains the depth multiplier (depthwise kernels stored as their taps)
HEADER = struct.Struct("<4sHHIBBBBHHHHHH4x")  # 32 bytes
ENTRY = struct.Struct("<24sBB2x6I4x")  # 56 bytes: name, dtype, ndim, pad, 4 dims, offset, nbytes, pad
ARCH_SELFCLASS_V1 = 1  # 3x3 conv -> 1x1 -> 1x1 residual update (nca_edge.model.CAModel)
VARIANTS = ("float", "bwn", "ban", "bnn")
BITS, INT8, INT16, INT32 = 1, 8, 16, 32
_NUMPY = {INT8: np.int8, INT16: np.int16, INT32: np.int32}
WORD_BITS = 32
BIT_ORDER_LSB_FIRST = 0

assert HEADER.size == 32 and ENTRY.size == 56


class PackedFormatError(ValueError):
    """The blob is not a valid packed file (truncated, corrupted, wrong magic or version)."""


@dataclass
class Packed:
    variant: str
    channels: int
    perception: int
    hidden: int
    n_classes: int
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # BITS tensors unpacked to int8 +-1
    dtypes: dict[str, int] = field(default_factory=dict)
    flags: int = 0


def pack_bits(values: np.ndarray) -> np.ndarray:
    """+-1 array [..., K] -> uint32 words [..., ceil(K/32)]: bit j of word w = element 32w+j, 1 = -1."""
    v = np.asarray(values)
    if not np.all((v == 1) | (v == -1)):
        raise ValueError("pack_bits takes +-1 values only")
    k = v.shape[-1]
    n_words = -(-k // WORD_BITS)
    bits = np.zeros(v.shape[:-1] + (n_words * WORD_BITS,), np.uint64)
    bits[..., :k] = v == -1
    bits = bits.reshape(v.shape[:-1] + (n_words, WORD_BITS))
    weights = np.uint64(1) << np.arange(WORD_BITS, dtype=np.uint64)
    return (bits * weights).sum(-1).astype(np.uint32)


def unpack_bits(words: np.ndarray, k: int) -> np.ndarray:
    """Inverse of pack_bits: uint32 words [..., n] -> int8 +-1 [..., k]."""
    w = np.asarray(words, dtype=np.uint32)
    bits = (w[..., None] >> np.arange(WORD_BITS, dtype=np.uint32)) & np.uint32(1)
    bits = bits.reshape(w.shape[:-1] + (-1,))[..., :k]
    return (1 - 2 * bits.astype(np.int8)).astype(np.int8)


def write(p: Packed) -> bytes:
    names = list(p.tensors)
    for n in names:
        if len(n.encode("ascii")) > 23:
            raise ValueError(f"tensor name too long: {n}")
    payloads = []
    for n in names:
        a = np.asarray(p.tensors[n])
        dt = p.dtypes[n]
        if a.ndim > 4 or a.ndim == 0 and dt == BITS:
            raise ValueError(f"{n}: 1..4 dims needed")
        data = pack_bits(a).astype("<u4").tobytes() if dt == BITS else a.astype(np.dtype(_NUMPY[dt]).newbyteorder("<")).tobytes()
        payloads.append((n, dt, a.shape, data))
    offset = HEADER.size + ENTRY.size * len(names)
    entries, blobs = [], []
    for n, dt, shape, data in payloads:
        offset = _align(offset)
        dims = list(shape) + [0] * (4 - len(shape))
        entries.append(ENTRY.pack(n.encode("ascii"), dt, len(shape), *dims, offset, len(data)))
        blobs.append((offset, data))
        offset += len(data)
    total = _align(offset) + 4
    head = HEADER.pack(MAGIC, VERSION, HEADER.size, total, ARCH_SELFCLASS_V1, VARIANTS.index(p.variant),
                       BIT_ORDER_LSB_FIRST, WORD_BITS, p.channels, p.perception, p.hidden, p.n_classes,
                       len(names), p.flags)
    buf = bytearray(total - 4)
    buf[: HEADER.size] = head
    for i, e in enumerate(entries):
        buf[HEADER.size + i * ENTRY.size: HEADER.size + (i + 1) * ENTRY.size] = e
    for off, data in blobs:
        buf[off: off + len(data)] = data
    return bytes(buf) + struct.pack("<I", zlib.crc32(bytes(buf)) & 0xFFFFFFFF)


def read(data: bytes) -> Packed:
    """Parse and validate a blob; raises PackedFormatError with the reason."""
    if len(data) < HEADER.size + 4:
        raise PackedFormatError(f"truncated: {len(data)} bytes, shorter than the {HEADER.size}-byte header")
    (magic, version, header_size, total, arch, variant, bit_order, word_bits, channels, perception, hidden,
     n_classes, n_tensors, flags) = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise PackedFormatError(f"wrong magic {magic!r} (expected {MAGIC!r}): not an nca-edge packed file")
    if version != VERSION:
        raise PackedFormatError(f"format version {version} is not supported (this reader reads version {VERSION})")
    if len(data) < total:
        raise PackedFormatError(f"truncated: {len(data)} bytes, the header says {total}")
    if len(data) > total:
        raise PackedFormatError(f"{len(data) - total} unexpected bytes after the end ({total} bytes)")
    (crc,) = struct.unpack_from("<I", data, total - 4)
    if zlib.crc32(data[: total - 4]) & 0xFFFFFFFF != crc:
        raise PackedFormatError("CRC32 mismatch: the file is corrupted")
    if header_size != HEADER.size or arch != ARCH_SELFCLASS_V1 or variant >= len(VARIANTS):
        raise PackedFormatError(f"unknown header size {header_size}, architecture {arch} or variant {variant}")
    if bit_order != BIT_ORDER_LSB_FIRST or word_bits != WORD_BITS:
        raise PackedFormatError(f"unsupported bit order {bit_order} / word size {word_bits}")
    p = Packed(VARIANTS[variant], channels, perception, hidden, n_classes, flags=flags)
    for i in range(n_tensors):
        at = HEADER.size + i * ENTRY.size
        if at + ENTRY.size > total - 4:
            raise PackedFormatError("tensor directory runs past the data")
        raw, dt, ndim, d0, d1, d2, d3, off, nbytes = ENTRY.unpack_from(data, at)
        name = raw.rstrip(b"\0").decode("ascii", "replace")
        shape = (d0, d1, d2, d3)[:ndim]
        if off % 4 or off + nbytes > total - 4 or dt not in (BITS, INT8, INT16, INT32) or not 1 <= ndim <= 4:
            raise PackedFormatError(f"tensor {name!r}: bad dtype, shape or extent")
        chunk = data[off: off + nbytes]
        # element counts in Python integers (no overflow), checked against the bytes before any allocation
        if dt == BITS:
            rows, k = math.prod(shape[:-1]), shape[-1]
            expect = rows * (-(-k // WORD_BITS)) * 4
            if nbytes != expect:
                raise PackedFormatError(f"tensor {name!r}: {nbytes} bytes, expected {expect}")
            words = np.frombuffer(chunk, "<u4").reshape(shape[:-1] + (-1,))
            p.tensors[name] = unpack_bits(words, k)
        else:
            np_dt = np.dtype(_NUMPY[dt]).newbyteorder("<")
            if nbytes != math.prod(shape) * np_dt.itemsize:
                raise PackedFormatError(f"tensor {name!r}: {nbytes} bytes do not match its shape {shape}")
            p.tensors[name] = np.frombuffer(chunk, np_dt).reshape(shape).astype(_NUMPY[dt])
        p.dtypes[name] = dt
    return p


def _align(n: int) -> int:
    return (n + 3) & ~3
