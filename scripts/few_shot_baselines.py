"""Teacher-FT, Student-FT and KD over seeds on one task: the foundation's reference numbers.

    python scripts/few_shot_baselines.py --task rt --seeds 5 --out runs/rt-baselines

Each (method, seed) appends a line to OUT/results.jsonl as soon as it ends, and a rerun skips
lines already there. KD reuses the seed's fine-tuned teacher (saved by the Teacher-FT run),
so no teacher is trained twice. Prints mean +- std of the test metric and wall time per run.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from augrl.methods import run_distill, run_finetune
from augrl.pipelines import RunConfig
from augrl.results import append_jsonl, read_jsonl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="rt")
    ap.add_argument("--shots", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default="runs/rt-baselines")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    results = out / "results.jsonl"
    done = {(r["method"], r["seed"]) for r in read_jsonl(results)[0] if r["task"] == args.task}
    for seed in range(args.seeds):
        cfg = RunConfig(task=args.task, shots=args.shots, seed=seed)
        runs = [("teacher_ft", lambda: run_finetune(cfg, "teacher", out_dir=out, progress=not args.quiet)),
                ("student_ft", lambda: run_finetune(cfg, "student", out_dir=None, progress=not args.quiet)),
                ("kd", lambda: run_distill(cfg, out_dir=out, teacher_dir=out / f"teacher_ft-seed{seed}",
                                           progress=not args.quiet))]
        for method, run in runs:
            if (method, seed) in done:
                continue
            record = run()
            append_jsonl(results, record)
            print(f"{method:10s} seed={seed} test={record['metrics']['test']} {record['wall_time_s']:.1f}s", flush=True)

    records = [r for r in read_jsonl(results)[0] if r["task"] == args.task]
    print(f"\n{args.task}, {args.shots} shots/class, {args.seeds} seeds (test set {records[0]['split']['sizes']['test']}):")
    for method in ("teacher_ft", "student_ft", "kd"):
        rows = [r for r in records if r["method"] == method]
        metric = next(iter(rows[0]["metrics"]["test"]))
        vals = [r["metrics"]["test"][metric] for r in rows]
        secs = [r["wall_time_s"] for r in rows]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(f"  {method:10s} {metric} {statistics.mean(vals):.4f} +- {sd:.4f}  (n={len(vals)}; "
              f"wall {statistics.mean(secs):.1f}s per run)")


if __name__ == "__main__":
    main()
