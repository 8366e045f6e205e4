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
