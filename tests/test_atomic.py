"""Writes are atomic: a failure leaves neither a half-written target nor a temp file."""

from pathlib import Path

import pytest

from nca_edge.atomic import atomic_write, atomic_write_bytes


def test_failure_leaves_nothing_behind_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")

    def broken(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_success_replaces_the_file(tmp_path):
    atomic_write_bytes(tmp_path / "a" / "b.bin", b"xyz")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"xyz"
