"""Result records: one JSON object per run, appended to ``results.jsonl`` as soon as it ends."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from pathlib import Path

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

    The line is written with a single ``write`` under an exclusive ``flock`` and flushed to
    disk, so concurrent writers never interleave partial lines and a crash loses nothing
    already written. A file whose last line was cut off (a crash mid-write, a full disk) gets
    a newline first, so the new record starts a line of its own and the cut one stays a
    single bad line that :func:`read_jsonl` reports.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=False, default=str) + "\n").encode()
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            size = os.fstat(f.fileno()).st_size
            if size and os.pread(f.fileno(), 1, size - 1) != b"\n":
                line = b"\n" + line
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    return path


def read_jsonl(path: str | Path) -> tuple[list[dict], list[tuple[int, str]]]:
    """All records of a results file, and the (line number, problem) of lines that do not parse."""
    records, bad = [], []
    path = Path(path)
    if not path.exists():
        return records, bad
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            bad.append((i, f"not valid JSON ({err.msg}); truncated by a crash?"))
    return records, bad
