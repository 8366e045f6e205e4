"""Files written whole or not at all: each is written beside its place and renamed into it, so a
crash or a full disk never leaves a half-written model, checkpoint, table or plot that looks
complete. A full disk (ENOSPC, EDQUOT) is raised as :class:`~augrl.errors.DiskFullError`,
naming the path and what is still intact.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from augrl.errors import DiskFullError

DISK_FULL_FIX = "free some space on that disk (or write elsewhere with --out) and run the same command again"


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` is a write that failed for want of space (ENOSPC, EDQUOT), also when a
    library reports it as another type (safetensors: "No space left on device (os error 28)")."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return any(s in text for s in ("No space left on device", "os error 28", "Disk quota exceeded"))


def _disk_full(path: Path, err: BaseException, kept: str) -> DiskFullError:
    as_os = err if isinstance(err, OSError) and err.errno else OSError(errno.ENOSPC, str(err))
    return DiskFullError(path, as_os, kept, DISK_FULL_FIX)


def _staging_name(path: Path) -> Path:
    """A hidden sibling of ``path`` to write into (same folder, so a rename moves it into place)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


def _move_into_place(staged: Path, directory: Path) -> None:
    if not directory.exists():
        os.replace(staged, directory)
        return
    # an existing folder keeps what the new save does not hold; config.json, which makes a folder
    # look like a model, is replaced last
    for entry in sorted(staged.iterdir(), key=lambda p: p.name == "config.json"):
        target = directory / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    staged.rmdir()


@contextmanager
def staged_folder(directory: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``directory`` to write a model into; when the block ends
    without an error it is renamed to ``directory`` (into an existing one: file by file).

    On any error the temporary folder is removed, so nothing half-written is left that looks
    like a saved model, and ``directory`` is as it was. A full disk raises
    :class:`~augrl.errors.DiskFullError` naming ``directory``.
    """
    directory = Path(directory)
    existed = directory.is_dir()
    kept = "the model saved there before is unchanged" if existed else "nothing was saved there"
    staged = _staging_name(directory)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staged.mkdir()
    except OSError as err:
        if is_disk_full(err):
            raise _disk_full(directory, err, kept) from err
        raise
    try:
        yield staged
        _move_into_place(staged, directory)
    except BaseException as err:
        shutil.rmtree(staged, ignore_errors=True)
        if is_disk_full(err):
            raise _disk_full(directory, err, kept + " (the partial files were removed)") from err
        raise


def write_file_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    On any error the temporary file is removed and ``path`` keeps what it held (or stays
    absent); a full disk raises :class:`~augrl.errors.DiskFullError` naming ``path``.
    """
    path = Path(path)
    kept = "the file saved there before is unchanged" if path.exists() else "nothing was saved there"
    staged = _staging_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(staged)
        os.replace(staged, path)
    except BaseException as err:
        staged.unlink(missing_ok=True)
        if is_disk_full(err):
            raise _disk_full(path, err, kept) from err
        raise
    return path
