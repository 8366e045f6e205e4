"""Scaling of ``augrl tune`` on one machine: wall time of the same short trials run with 1 and
with 2 concurrent trials, and the parallel efficiency ``T(1) / (2 * T(2))`` (1.0: perfect).

    AUGRL_DATA=../shared/data python scripts/tune_scaling.py --task rt --method kd --num-samples 8 \\
        --shots 8 --max-steps 3 --out runs/tune-scaling

Each setting is a fresh search (its own Ray start, in ``OUT/concurrent-<k>``) of the same
``--num-samples`` trials (same sampler seed, so the same configurations), with 1 CPU per trial
(``--cpus-per-trial``) and no final test. The wall time covers the whole search: Ray's start,
the trial workers' start-up and every trial. Prints one JSON object per setting and the
efficiency; writes them to ``OUT/scaling.json``. On a cluster, run it with ``--address auto``
and ``--gpus-per-trial 1`` to measure GPU trials.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from augrl.pipelines import RunConfig
from augrl.tune import TuneSettings, run_tune


def measure(concurrent: int, args: argparse.Namespace, base: RunConfig) -> dict:
    """One search with at most ``concurrent`` trials at once; its wall time and trial count."""
    out = Path(args.out) / f"concurrent-{concurrent}"
    if out.exists():
        shutil.rmtree(out)  # a measurement starts from nothing (no finished trials to skip)
    settings = TuneSettings(task=args.task, method=args.method, space=args.space, num_samples=args.num_samples,
                            scheduler="fifo", search_seed=args.search_seed, shots=args.shots,
                            max_steps=args.max_steps, cpus_per_trial=args.cpus_per_trial,
                            gpus_per_trial=args.gpus_per_trial, max_concurrent=concurrent, final="none")
    start = time.perf_counter()
    summary = run_tune(settings, base, out, address=args.address, progress=not args.quiet)
    seconds = time.perf_counter() - start
    if summary["errors"] or summary["trials"] != args.num_samples:
        raise SystemExit(f"concurrent={concurrent}: {summary['trials']} trials finished, errors {summary['errors']}")
    return {"concurrent": concurrent, "trials": summary["trials"], "wall_s": round(seconds, 2),
            "trials_per_minute": round(60 * summary["trials"] / seconds, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="rt")
    p.add_argument("--method", default="kd")
    p.add_argument("--space", default=None, help="search space (default: the method's preset)")
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--shots", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=3)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument("--search-seed", type=int, default=0)
    p.add_argument("--teacher", default=None, help="teacher encoder (default: the shipped MiniLM)")
    p.add_argument("--address", default=None, help="a running Ray cluster (default: start Ray here)")
    p.add_argument("--out", default="runs/tune-scaling")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    base = RunConfig()
    if args.teacher:
        base = base.replace(teacher=args.teacher, student_init=args.teacher)
    base = base.with_max_steps(args.max_steps)
    rows = [measure(k, args, base) for k in (1, 2)]
    efficiency = rows[0]["wall_s"] / (2 * rows[1]["wall_s"])
    result = {"task": args.task, "method": args.method, "num_samples": args.num_samples, "shots": args.shots,
              "max_steps": args.max_steps, "cpus_per_trial": args.cpus_per_trial, "runs": rows,
              "speedup": round(rows[0]["wall_s"] / rows[1]["wall_s"], 3), "efficiency": round(efficiency, 3)}
    for row in rows:
        print(json.dumps(row))
    print(f"speedup {result['speedup']:.2f}x with 2 concurrent trials; efficiency {result['efficiency']:.2f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "scaling.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
