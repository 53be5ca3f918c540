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


def atomic_write_dir(path: str | Path, files: dict[str, bytes], force: bool = False) -> Path:
    """Write a directory of files so that it appears complete or not at all (an existing one is
    replaced only with ``force``, after the new one is complete)."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists")
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix="." + path.name + ".tmp"))
    old = None
    try:
        os.chmod(tmp, _umask_mode() | (0o111 & ~_umask_mask()))
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if path.exists():
            if not path.is_dir():
                raise FileExistsError(f"{path} exists and is not a directory")
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
