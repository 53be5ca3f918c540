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


def test_a_directory_write_replaces_only_its_own_files(tmp_path):
    """issue 28: `export --format c --force -o DIR` must leave what the user put in DIR alone."""
    from nca_edge.atomic import MANIFEST, atomic_write_dir

    out = tmp_path / "c"
    atomic_write_dir(out, {"nca_step.c": b"v1", "old_only.h": b"v1"})
    (out / "main.c").write_text("mine")
    (out / "build").mkdir()
    (out / "build" / "fw.elf").write_bytes(b"elf")
    atomic_write_dir(out, {"nca_step.c": b"v2"}, force=True)
    assert (out / "nca_step.c").read_bytes() == b"v2"
    assert (out / "main.c").read_text() == "mine" and (out / "build" / "fw.elf").read_bytes() == b"elf"
    assert not (out / "old_only.h").exists()  # ours, no longer written: gone
    assert (out / MANIFEST).read_text() == "nca_step.c\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary directories left


def test_a_directory_without_a_manifest_keeps_everything_not_replaced_by_name(tmp_path):
    from nca_edge.atomic import atomic_write_dir

    out = tmp_path / "c"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "nca_step.c").write_text("old")
    atomic_write_dir(out, {"nca_step.c": b"new"}, force=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "nca_step.c").read_bytes() == b"new"


def test_export_c_force_leaves_an_unrelated_file_alone(tmp_path):
    from click.testing import CliRunner

    from nca_edge.cli import main

    out = tmp_path / "fw"
    run = lambda *a: CliRunner().invoke(main, ["export", "float", "--format", "c", "-o", str(out), *a])
    assert run().exit_code == 0
    (out / "board.c").write_text("int main(void) { return 0; }\n")
    r = run("--force")
    assert r.exit_code == 0, r.output
    assert (out / "board.c").read_text() == "int main(void) { return 0; }\n"


def test_an_unwritable_place_is_reported_by_the_users_path(tmp_path, monkeypatch):
    """A permission error names the directory asked for, not an internal temporary name."""
    import errno
    import tempfile

    from nca_edge.atomic import atomic_write_dir

    def refuse(dir=None, prefix=None, **_):
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}xyz")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(OSError) as e:
        atomic_write_dir(tmp_path / "c", {"a": b"1"})
    assert e.value.filename == str(tmp_path / "c") and e.value.strerror == "Permission denied"
