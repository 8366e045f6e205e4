"""Result files under damage: cut-off lines holding any bytes, and a disk that fills mid-write."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from augrl import results
from augrl.cli import main
from augrl.errors import AugrlError, DiskFullError
from augrl.results import append_jsonl, read_jsonl


def _bench_line(method: str, seed: int, acc: float = 0.6) -> dict:
    return {"command": "bench", "task": "rt", "method": method, "seed": seed, "shots": 40,
            "config": {"task": "rt", "shots": 40, "seed": seed}, "config_hash": f"h{seed}",
            "metrics": {"test": {"accuracy": acc, "f1": acc}, "val": {}}, "params": {"student": 1000},
            "wall_time_s": 1.0, "variants": 4, "augmenter": None, "split": {"sizes": {"test": 100}}}


# ----------------------------------------------------------------------------- reading any bytes


@pytest.mark.parametrize("tail", [
    "é".encode()[:1],                      # cut in the middle of a two-byte character
    b'{"method": "kd", "x": "\xff\xfe',     # bytes that are never UTF-8
    b"\x00\x00\x00\x00",                    # a block of zeros (a crash on some file systems)
    b'{"a": ' + b"9" * 5000,                # more digits than Python converts to an int
    b"\x80abc\r",
])
def test_a_cut_off_last_line_with_any_bytes_is_one_bad_line(tmp_path, tail):
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"a": 1, "text": "naïve café"})
    append_jsonl(path, {"a": 2})
    with open(path, "ab") as f:
        f.write(tail)
    records, bad = read_jsonl(path)
    assert records == [{"a": 1, "text": "naïve café"}, {"a": 2}]
    assert [n for n, _ in bad] == [3] and "truncated by a crash?" in bad[0][1]


def test_a_bad_line_in_the_middle_is_named_and_the_lines_after_it_are_read(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": \xc3\n\n{"a": 3}\n')
    records, bad = read_jsonl(path)
    assert records == [{"a": 1}, {"a": 3}]
    assert bad == [(2, "not valid UTF-8 (byte 0xc3 at column 7); truncated by a crash?")]


def test_report_and_bench_resume_survive_a_non_utf8_cut_line(tmp_path, capsys):
    from augrl.bench import finished_keys, run_key

    path = tmp_path / "results.jsonl"
    for seed in range(2):
        append_jsonl(path, _bench_line("kd", seed))
    with open(path, "ab") as f:
        f.write(json.dumps(_bench_line("kd", 2)).encode()[:30] + "ü".encode()[:1])
    assert main(["report", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "| kd |" in captured.out and " | 2 | " in captured.out  # the two whole lines: two seeds
    assert "results.jsonl:3: not valid UTF-8" in (tmp_path / "table.md").read_text()
    keys, bad = finished_keys(path)
    assert keys == {run_key(_bench_line("kd", s)) for s in range(2)} and [n for n, _ in bad] == [3]
    append_jsonl(path, _bench_line("kd", 2))  # the redone run starts a line of its own
    records, bad = read_jsonl(path)
    assert [r["seed"] for r in records] == [0, 1, 2] and [n for n, _ in bad] == [3]


# ----------------------------------------------------------------------------- a full disk


def _fill_disk_on(monkeypatch, marker: bytes, after: float = 0.5) -> dict:
    """Make the write of the line holding ``marker`` stop part-way: the first write takes
    ``after`` of its bytes, the next one fails with ENOSPC (like a disk that just filled up)."""
    real_write = os.write
    state: dict = {"fd": None}

    def write(fd, data):
        if state["fd"] is None and marker in bytes(data):
            state["fd"] = fd
            return real_write(fd, bytes(data)[:int(len(data) * after)])
        if fd == state["fd"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(results.os, "write", write)
    return state


def test_a_full_disk_mid_line_keeps_every_earlier_line_and_a_later_append_works(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    for i in range(3):
        append_jsonl(path, {"i": i, "text": "x" * 200})
    before = path.read_bytes()
    with monkeypatch.context() as m:
        state = _fill_disk_on(m, b'"FULL')
        with pytest.raises(DiskFullError) as caught:
            append_jsonl(path, {"i": 3, "text": "FULL" + "y" * 500})
    assert state["fd"] is not None  # the half line really was written before the error
    err = caught.value
    assert isinstance(err, AugrlError) and isinstance(err, OSError) and err.errno == errno.ENOSPC
    message = str(err)
    assert message.startswith(f"{path}: cannot write: no space left on device")
    assert "the 3 line(s) already in it are kept" in message and "run the same command again" in message
    assert path.read_bytes() == before  # the half-written line is gone, nothing else touched
    append_jsonl(path, {"i": 4})
    records, bad = read_jsonl(path)
    assert [r["i"] for r in records] == [0, 1, 2, 4] and bad == []


def test_a_full_disk_after_a_cut_line_restores_the_file_exactly(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"i": 0})
    with open(path, "ab") as f:
        f.write(b'{"i": 1, "cut')  # a crash left a cut line: the next append writes "\n" first
    before = path.read_bytes()
    with monkeypatch.context() as m:
        _fill_disk_on(m, b"FULL", after=0.1)
        with pytest.raises(DiskFullError, match="the 2 line"):
            append_jsonl(path, {"i": 2, "text": "FULL"})
    assert path.read_bytes() == before


def test_an_fsync_that_fails_cuts_the_line_back_off(tmp_path, monkeypatch):
    """Delayed allocation (ext4, NFS): the write succeeds and the fsync reports ENOSPC."""
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"i": 0})
    before = path.read_bytes()
    real_fsync = os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    with monkeypatch.context() as m:
        m.setattr(results.os, "fsync", fsync)
        with pytest.raises(DiskFullError, match="no space left on device; the 1 line"):
            append_jsonl(path, {"i": 1})
    assert path.read_bytes() == before


def test_a_file_that_cannot_be_created_is_a_clear_error(tmp_path, monkeypatch):
    real_open = os.open

    def full_open(file, flags, *args):
        if str(file).endswith("results.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, flags, *args)

    with monkeypatch.context() as m:
        m.setattr(results.os, "open", full_open)
        with pytest.raises(DiskFullError, match="no space left on device; nothing was written"):
            append_jsonl(tmp_path / "new" / "results.jsonl", {"i": 0})


def test_other_write_errors_keep_the_file_too_and_name_their_cause(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"i": 0})
    before = path.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(results.os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
        with pytest.raises(DiskFullError, match="cannot write: input/output error; the 1 line"):
            append_jsonl(path, {"i": 1})
    assert path.read_bytes() == before


def test_a_bench_on_a_full_disk_exits_2_with_one_message_and_resumes_after(
        toy_tasks, tiny_model_dir, augrl_cache, single_thread, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "--task", str(toy_tasks["single_file"]), "--methods", "student_ft", "--seeds", "2",
            "--shots", "8", "--teacher", str(tiny_model_dir), "--epochs", "1", "--batch-size", "8",
            "--max-steps", "2", "--device", "cpu", "--quiet", "--json", "--out", str(out)]
    with monkeypatch.context() as m:
        _fill_disk_on(m, b'"seed": 1')  # seed 0's line is written, the disk fills during seed 1's
        assert main(argv) == 2
    err = capsys.readouterr().err
    message = [line for line in err.splitlines() if line.startswith("augrl: error:")]
    assert message == [f"augrl: error: {out / 'results.jsonl'}: cannot write: no space left on device; the 1 "
                       f"line(s) already in it are kept. Fix: free some space on that disk (or point the output "
                       f"elsewhere) and run the same command again; it resumes where it stopped"]
    assert [r["seed"] for r in read_jsonl(out / "results.jsonl")[0]] == [0]
    assert not list((out / "claims").iterdir())  # the failed run's claim is given back
    assert main(argv) == 0  # space freed: the same command finishes the run that failed, and only it
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped"] == 1 and [k[2] for k in summary["ran"]] == [1]
    records, bad = read_jsonl(out / "results.jsonl")
    assert [r["seed"] for r in records] == [0, 1] and bad == []
