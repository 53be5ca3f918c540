"""Shared tail of the report scripts (scripts/*_report.py, bench_step.py, ...): the command line that produced a fragment, and publishing it.

A report prints its Markdown fragment and, with --write PATH, writes it to PATH (docs/results/...)
and its rows as JSON beside it (PATH with .json), each atomically.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nca_edge.atomic import atomic_write_bytes


def command() -> str:
    """How this script was run, as a reader would type it: `python scripts/NAME.py ARGS`."""
    return " ".join(["python", f"scripts/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def publish(text: str, rows: list, write: Path | None) -> None:
    print(text)
    if write:
        atomic_write_bytes(write, text.encode())
        atomic_write_bytes(write.with_suffix(".json"), (json.dumps(rows, indent=1) + "\n").encode())


def text_table(cells: list[list[str]], fmt: str) -> list[str]:
    """A header row and data rows of strings as Markdown (``fmt == "markdown"``) or an aligned
    text table (first column left, the others right): the lines, for compare and deploy-report."""
    n = len(cells[0])
    if fmt == "markdown":
        return (["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(n)) + "|"]
                + ["| " + " | ".join(r) + " |" for r in cells[1:]])
    widths = [max(len(r[i]) for r in cells) for i in range(n)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines
