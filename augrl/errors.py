"""Errors that users see: each names what is wrong, where, and how to fix it."""

from __future__ import annotations

from pathlib import Path


class AugrlError(Exception):
    """Base class for errors caused by input or configuration, not by a bug.

    The CLI prints these as one clean message (no traceback) and exits with status 2.
    """


class DataError(AugrlError, ValueError):
    """A data file is missing, malformed, or holds a value the task cannot use.

    Args:
        problem: what is wrong, in one sentence.
        fix: what the user should do about it.
        path: the file concerned, if any.
        line: the 1-based line (or record) number in that file, if known.
    """

    def __init__(
        self, problem: str, fix: str, path: str | Path | None = None, line: int | None = None
    ) -> None:
        self.problem = problem
        self.fix = fix
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{problem}. Fix: {fix}")


class ConfigError(AugrlError, ValueError):
    """An unknown name, a bad option value, or an invalid configuration file."""


class DiskFullError(AugrlError, OSError):
    """A write failed part-way (no space left on device, quota exceeded, an I/O error), and
    what the file held before it is intact.

    It is an ``OSError`` too (``errno`` is the failed write's), so ``except OSError`` still
    catches it; the CLI prints it as one message and exits with status 2.

    Args:
        path: the file that could not be written.
        error: the ``OSError`` the write raised.
        kept: what is still intact, e.g. ``"its 12 earlier lines are kept"``.
        fix: what to do about it.
    """

    def __init__(self, path: str | Path, error: OSError, kept: str,
                 fix: str = "free some space on that disk (or point the output elsewhere) and run the same command "
                            "again; it resumes where it stopped") -> None:
        import errno as _errno
        import os as _os

        if error.errno in (_errno.ENOSPC, _errno.EDQUOT):
            reason = "no space left on device" if error.errno == _errno.ENOSPC else "disk quota exceeded"
        else:
            reason = (_os.strerror(error.errno) if error.errno else str(error)).lower()
        self.path = str(path)
        self.kept = kept
        self.fix = fix
        self.message = f"{self.path}: cannot write: {reason}; {kept}. Fix: {fix}"
        super().__init__(error.errno, self.message)

    def __str__(self) -> str:
        return self.message
