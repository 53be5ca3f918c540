"""Write files so that a failure never leaves a half-written one: temp file, then rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _umask_mask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp" + path.suffix)
    except OSError as e:  # report the file the user asked for, not the temporary name
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


MANIFEST = ".nca-edge-files"  # in a directory we write: the names of the files we wrote there


def atomic_write_dir(path: str | Path, files: dict[str, bytes], force: bool = False) -> Path:
    """Write a directory of files so that it appears complete or not at all (an existing one is
    replaced only with ``force``, after the new one is complete).

    Only our own files are replaced: the directory keeps a manifest (``MANIFEST``) of the names we
    wrote, and anything else already in it (a user's ``main.c``, a build folder) is carried over
    into the new directory untouched. Without a manifest every existing entry counts as someone
    else's, except those the new files replace by name."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists")
    if MANIFEST in files:
        raise ValueError(f"{MANIFEST} is reserved")
    try:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix="." + path.name + ".tmp"))
    except OSError as e:  # report the directory the user asked for, not the temporary name
        raise OSError(e.errno, e.strerror, str(path)) from None
    old = None
    try:
        os.chmod(tmp, _umask_mode() | (0o111 & ~_umask_mask()))
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST).write_text("".join(f"{name}\n" for name in sorted(files)))
        if path.exists():
            if not path.is_dir():
                raise FileExistsError(f"{path} exists and is not a directory")
            for entry in _foreign_entries(path, files):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, tmp / entry.name, symlinks=True)
                else:
                    shutil.copy2(entry, tmp / entry.name, follow_symlinks=False)
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix="." + path.name + ".old"))
            os.replace(path, old / "previous")
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp)
        if old is not None and (old / "previous").exists() and not path.exists():
            os.replace(old / "previous", path)
        raise
    finally:
        if old is not None and old.exists():
            shutil.rmtree(old)
    return path


def _foreign_entries(path: Path, new: dict[str, bytes]) -> list[Path]:
    """Entries of an existing directory that we did not write there (and do not write now)."""
    try:
        ours = set((path / MANIFEST).read_text().splitlines())
    except (OSError, UnicodeDecodeError):
        ours = set()
    return [e for e in sorted(path.iterdir()) if e.name != MANIFEST and e.name not in ours and e.name not in new]
