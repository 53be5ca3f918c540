"""TFLite Micro arena of a model's int8 step for several row-band heights (docs/experiments, session 19).

    .venv/bin/python experiments/row_bands_arena.py bnn --rows 3 4 7 14

Exports MODEL's integer-only step unbanded (28x28, batch 1), then bands it with each R
(``export.row_bands.row_bands``) and prints the file size and TFLM's arena (``export.tflm``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export import export_model  # noqa: E402
from export.row_bands import row_bands  # noqa: E402
from export.tflm import arena_bytes  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--rows", type=int, nargs="+", default=[3, 4, 7, 14])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        whole = Path(tmp) / "whole.tflite"
        with mock.patch("export.row_bands.row_bands", side_effect=lambda data: data):  # integer-only, unbanded
            export_model(a.model, "tflite-int8", whole, batch=1)
        print(f"rows=28 (unbanded): {whole.stat().st_size:,} bytes, arena {arena_bytes(whole):,} bytes")
        for r in a.rows:
            p = Path(tmp) / f"r{r}.tflite"
            p.write_bytes(row_bands(whole.read_bytes(), rows=r))
            try:
                arena = f"{arena_bytes(p):,} bytes"
            except Exception as e:  # noqa: BLE001 (TFLM refuses some graphs; report it)
                arena = f"failed ({e})"
            print(f"rows={r}: {p.stat().st_size:,} bytes, arena {arena}")


if __name__ == "__main__":
    main()
