"""Run claims: several bench processes on one folder never run one configuration twice, and a
claim left by a killed process is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from augrl import bench
from augrl.pipelines import RunConfig
from augrl.results import read_jsonl


def _run(seed: int = 0) -> bench.PlannedRun:
    return bench.PlannedRun("toy", 8, seed, bench.get("kd"), RunConfig(), ("toy", "kd", seed, 8, f"hash{seed}"))


def test_a_claimed_run_cannot_be_claimed_again_until_its_holder_lets_go(tmp_path):
    run = _run()
    first = bench.claim_run(tmp_path, run)
    assert first is not None and first.previous is None and first.path == bench.claim_path(tmp_path, run.key)
    holder = json.loads(first.path.read_text())
    assert holder["pid"] == os.getpid() and holder["run"] == "toy kd seed=0 shots=8" and holder["host"]
    assert bench.claim_run(tmp_path, run) is None  # a second claimant (its own open file) is refused
    assert bench.claim_holder(tmp_path, run).startswith(f"pid {os.getpid()} on {holder['host']}, since ")
    other = bench.claim_run(tmp_path, _run(1))  # another run of the same bench is free
    assert other is not None and other.path != first.path
    bench.release_claim(first)
    assert not first.path.exists()
    again = bench.claim_run(tmp_path, run)
    assert again is not None and again.previous is None  # released cleanly: nothing to take over
    bench.release_claim(again)
    bench.release_claim(other)
    assert list((tmp_path / bench.CLAIMS_DIR).iterdir()) == []


def test_a_waiter_ends_up_holding_the_file_at_the_path_not_the_removed_one(tmp_path):
    """The holder removes its file before letting go; a process that waited on the removed file
    must claim the path afresh, or a third process could claim the run at the same time."""
    run = _run()
    first = bench.claim_run(tmp_path, run)
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(bench.claim_run(tmp_path, run, wait=True)))
    waiter.start()
    time.sleep(0.3)  # the waiter is blocked on the first holder's file
    assert not got
    bench.release_claim(first)
    waiter.join(timeout=10)
    assert got and got[0] is not None
    claim = got[0]
    assert os.stat(claim.path).st_ino == os.fstat(claim.fd).st_ino
    assert bench.claim_run(tmp_path, run) is None  # so a third claimant is refused
    bench.release_claim(claim)


def test_a_claim_left_by_a_dead_process_is_taken_over_and_names_its_old_holder(tmp_path):
    run = _run()
    path = bench.claim_path(tmp_path, run.key)
    holder_code = textwrap.dedent(f"""
        import fcntl, json, os, socket, sys, time
        path = {str(path)!r}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({{"pid": os.getpid(), "host": socket.gethostname(),
                                  "started_at": "then", "run": "toy kd seed=0 shots=8"}}).encode())
        print("held", flush=True)
        time.sleep(300)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder_code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert bench.claim_run(tmp_path, run) is None  # a live holder in another process
        assert bench.claim_holder(tmp_path, run).startswith(f"pid {proc.pid} on ")
        proc.send_signal(signal.SIGKILL)  # no clean-up: the file stays, the kernel drops the lock
        proc.wait(timeout=10)
        assert path.exists()
        claim = bench.claim_run(tmp_path, run)
        assert claim is not None and claim.previous["pid"] == proc.pid and claim.previous["started_at"] == "then"
        assert json.loads(path.read_text())["pid"] == os.getpid()  # the file now names the new holder
        bench.release_claim(claim)
    finally:
        proc.kill()
        proc.wait()


NAP_METHODS = '''
import os
import time
from pathlib import Path

from augrl import bench


@bench.register("test-nap", augments=False,
                description="student_ft; a process's first run waits until another process is in a run too")
def nap(ctx):
    log = Path(os.environ["AUGRL_TEST_LOG"])
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {ctx.cfg.seed}\\n")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # both processes inside a run: without claims, the same one
        if len({line.split()[0] for line in log.read_text().splitlines()}) >= 2:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    return bench.get("student_ft").run(ctx)
'''


def test_two_bench_processes_on_one_folder_run_each_configuration_once(toy_tasks, tiny_model_dir, augrl_cache,
                                                                       tmp_path):
    (tmp_path / "nap_methods.py").write_text(NAP_METHODS)
    out, log = tmp_path / "bench", tmp_path / "started.log"
    argv = [sys.executable, "-m", "augrl.cli", "bench", "--import", "nap_methods", "--task",
            str(toy_tasks["single_file"]), "--methods", "test-nap", "--seeds", "3", "--shots", "8", "--teacher",
            str(tiny_model_dir), "--epochs", "1", "--batch-size", "8", "--max-steps", "2", "--device", "cpu",
            "--quiet", "--json", "--out", str(out)]
    env = {**os.environ, "AUGRL_TEST_LOG": str(log), "AUGRL_CACHE": str(augrl_cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    pids = {p.pid for p in procs}

    records, bad = read_jsonl(out / "results.jsonl")
    keys = [bench.run_key(r) for r in records]
    assert not bad and len(keys) == 3 and len(set(keys)) == 3 and sorted(r["seed"] for r in records) == [0, 1, 2]
    started = [line.split() for line in log.read_text().splitlines()]
    assert sorted(int(seed) for _, seed in started) == [0, 1, 2]  # no run was even started twice
    assert {int(pid) for pid, _ in started} == pids  # and both processes did some of the work

    summaries = [json.loads(o.strip().splitlines()[-1]) for o, _ in outputs]
    ran = [tuple(k) for s in summaries for k in s["ran"]]
    assert sorted(ran) == sorted(keys)  # each run is in exactly one process's summary
    # a process met a run the other held, said so, and came back to it once the other finished it
    messages = "\n".join(err for _, err in outputs)
    assert any(f"is being run by another process (pid {pid} on " in messages for pid in pids), messages
    assert "was finished by another process; skipped" in messages
    assert sum(len(s["by_others"]) for s in summaries) >= 1
    assert list((out / bench.CLAIMS_DIR).iterdir()) == []  # every claim removed with its line
    table = (out / "table.md").read_text()
    assert "| test-nap |" in table and " | 3 | " in table  # the last report holds all three seeds
