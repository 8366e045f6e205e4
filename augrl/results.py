"""Result records: one JSON object per run, appended to ``results.jsonl`` as soon as it ends.

Writing (:func:`append_jsonl`) never loses what a file already holds: a line is one locked,
fsynced write, and a write that fails part-way (a full disk) is cut back off before the error
(:class:`augrl.errors.DiskFullError`) is raised. Reading (:func:`read_jsonl`) survives any
bytes: each line is decoded on its own, and one that is not UTF-8 or not JSON (a write cut off
by a crash) is reported with its number and skipped.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from pathlib import Path

from augrl.errors import DiskFullError
from augrl.runtime import git_commit, hardware, versions


def provenance() -> dict:
    """Versions, commit, hardware and time stamp: what every result line carries."""
    return {
        "versions": versions(),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def append_jsonl(path: str | Path, record: dict) -> Path:
    """Append one JSON line atomically with respect to other augrl processes.

    The line is written under an exclusive ``flock`` and fsynced, so concurrent writers never
    interleave partial lines and a crash loses nothing already written. A file whose last line
    was cut off (a crash mid-write) gets a newline first, so the new record starts a line of
    its own and the cut one stays a single bad line that :func:`read_jsonl` reports.

    Raises:
        DiskFullError: the folder or the file could not be created, or the write or fsync
            failed (no space left, quota, I/O error). The file is cut back to the size it had
            before, so every earlier line is intact and a later append starts cleanly.
    """
    path = Path(path)
    line = (json.dumps(record, sort_keys=False, default=str) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as err:
        try:
            kept = _kept(path.read_bytes()) if path.is_file() else "nothing was written"
        except OSError:
            kept = "nothing was written"
        raise DiskFullError(path, err, kept) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        try:
            _write_all(fd, line)
            os.fsync(fd)
        except OSError as err:
            raise DiskFullError(path, err, _cut_back(fd, size)) from err
    finally:
        os.close(fd)  # also drops the lock
    return path


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _cut_back(fd: int, size: int) -> str:
    """Truncate the file of ``fd`` back to ``size`` bytes (dropping a partly written line);
    says what the file keeps."""
    try:
        os.ftruncate(fd, size)
        partial = ""
    except OSError:
        partial = "; a partial line may remain at its end (it is reported and skipped when the file is read)"
    try:
        os.fsync(fd)
    except OSError:
        pass  # the cut is in the page cache either way; readers see it
    try:
        kept = _kept(os.pread(fd, size, 0))
    except OSError:
        kept = "the lines already in it are kept"
    return kept + partial


def _kept(data: bytes) -> str:
    """What a file holding ``data`` keeps, in words: ``the 3 line(s) already in it are kept``."""
    lines = sum(1 for line in data.split(b"\n") if line.strip())
    return f"the {lines} line(s) already in it are kept" if lines else "it held no lines before and holds none now"


def read_jsonl(path: str | Path) -> tuple[list[dict], list[tuple[int, str]]]:
    """All records of a results file, and the (line number, problem) of lines that do not parse.

    The file is read as bytes and each line decoded on its own, so a line cut off by a crash
    (even in the middle of a multi-byte character, or holding any other bytes) is one bad line
    and every other line is still read.
    """
    records, bad = [], []
    path = Path(path)
    if not path.exists():
        return records, bad
    for i, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            bad.append((i, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                           f"truncated by a crash?"))
            continue
        try:
            records.append(json.loads(text))
        except json.JSONDecodeError as err:
            bad.append((i, f"not valid JSON ({err.msg}); truncated by a crash?"))
        except (ValueError, RecursionError) as err:  # e.g. an integer of more digits than Python converts
            bad.append((i, f"not a readable JSON value ({err}); truncated by a crash?"))
    return records, bad
