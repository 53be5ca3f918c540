"""What an exported file says about itself: the CA config it was exported from.

Every artifact embeds one JSON document (the "artifact record")::

    {"format": "tflite", "variant": "bnn", "config": {...Config.to_dict()...},
     "grid": [H, W] or null (any), "batch": B or null (any), "checkpoint_sha256": "..."}

* ONNX: ``metadata_props["nca_edge"]``.
* TFLite: a model metadata entry named ``nca_edge`` whose buffer holds ``RECORD_MAGIC``,
  a little-endian uint32 length, then the JSON (UTF-8). TFLite interpreters ignore unknown
  metadata; a reader without TensorFlow finds the record by its magic.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from nca_edge.errors import NCAEdgeError

RECORD_MAGIC = b"NCA-EDGE-RECORD\0"


def encode_record(record: dict) -> bytes:
    body = json.dumps(record, sort_keys=True).encode()
    return RECORD_MAGIC + struct.pack("<I", len(body)) + body


def decode_record(data: bytes, where) -> dict:
    i = data.find(RECORD_MAGIC)
    if i < 0:
        raise NCAEdgeError(f"{where}: no nca-edge record in this file (was it exported by nca-edge?)")
    (n,) = struct.unpack_from("<I", data, i + len(RECORD_MAGIC))
    start = i + len(RECORD_MAGIC) + 4
    try:
        record = json.loads(data[start:start + n].decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise NCAEdgeError(f"{where}: the nca-edge record is corrupted") from None
    if not isinstance(record, dict):
        raise NCAEdgeError(f"{where}: the nca-edge record is not a JSON object")
    return record


def record_fire_rate(record: dict, where) -> float:
    """The model's fire rate from an artifact record, checked (0 < rate <= 1)."""
    try:
        rate = record["config"]["ca"]["fire_rate"]
    except (KeyError, TypeError):
        raise NCAEdgeError(f"{where}: the nca-edge record has no config.ca.fire_rate") from None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise NCAEdgeError(f"{where}: the nca-edge record's fire rate {rate!r} is not in (0, 1]")
    return float(rate)


def artifact_config(path: str | Path) -> dict:
    """The artifact record of an exported .onnx or .tflite file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise NCAEdgeError(f"{path}: {e.strerror}") from None
    if path.suffix == ".onnx":
        import onnx

        try:
            props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
        except Exception:  # noqa: BLE001 - any parse failure is "not an ONNX file"
            raise NCAEdgeError(f"{path}: not a readable ONNX file") from None
        if "nca_edge" not in props:
            raise NCAEdgeError(f"{path}: no nca-edge record in this file (was it exported by nca-edge?)")
        return json.loads(props["nca_edge"])
    return decode_record(data, path)
