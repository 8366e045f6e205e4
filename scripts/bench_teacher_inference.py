"""Batched teacher inference on real text, MiniLM against MPNet, and the size of the cached
teacher outputs of a candidate pool.

    python scripts/bench_teacher_inference.py                  # RT test sentences, 3,000-candidate EDA pool
    python scripts/bench_teacher_inference.py --json

For each teacher (``minilm``: all-MiniLM-L6-v2, 22.7M; ``mpnet``: all-mpnet-base-v2, 109.5M) the
script tokenises the task's test sentences with that teacher's tokenizer and times
:func:`augrl.batching.predict` over them (eval mode, no gradients, length-grouped batches of
``--batch-size``) after one warm-up batch: sentences per second, best of ``--repeats``. The
head is freshly initialised: its weights do not change the cost.

Then it draws a pool of ``--pool`` EDA candidates from the target train set
(:func:`augrl.pool.build_pool`) and caches each teacher's outputs on it as the default student
reads them (:class:`augrl.kd.TeacherCache`, float16): logits only for plain KD (dark_ce +
hard_ce), and the mapped layers of L2A's objective (attention_mse + hidden_mse + dark_ce, two
layers for the 2-layer MiniLM student). The load average is printed beside the figures: other
jobs on the machine lower the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from augrl import baselines, models
from augrl.batching import encode, predict
from augrl.kd import TeacherCache
from augrl.pipelines import RunConfig, build_configured_student, build_distiller
from augrl.pool import build_pool
from augrl.tasks import load_task

OBJECTIVES = {"kd (dark_ce + hard_ce)": {"dark_ce": 1.0, "hard_ce": 1.0},
              "L2A (attention_mse + hidden_mse + dark_ce)": {"attention_mse": 1.0, "hidden_mse": 1.0, "dark_ce": 1.0}}


def rate(teacher, data, batch_size: int, repeats: int) -> float:
    """Sentences per second of ``predict`` over ``data``, best of ``repeats`` after a warm-up."""
    predict(teacher, data.subset(range(min(batch_size, len(data)))), batch_size=batch_size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predict(teacher, data, batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
    return len(data) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="rt")
    parser.add_argument("--teachers", default="minilm,mpnet")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pool", type=int, default=3000, help="candidates in the cached pool")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    task = load_task(args.task, shots=40, seed=0)
    spec = task.spec
    eda = baselines.get("eda").fit(task)
    pool = build_pool(task, eda, size=args.pool, variants=-(-args.pool // len(task.train)), seed=0)
    rows = []
    for name in args.teachers.split(","):
        torch.manual_seed(0)
        teacher = models.build_teacher(spec.num_labels, name).eval()
        tokenizer = models.load_tokenizer(name)
        test = encode(task.test, tokenizer, spec, 128)
        row = {"teacher": name, "parameters": models.count_parameters(teacher), "sentences": len(test),
               "mean_tokens": round(sum(len(ids) for ids in test.input_ids) / len(test), 1),
               "sentences_per_s": round(rate(teacher, test, args.batch_size, args.repeats), 1),
               "load_average": os.getloadavg()[0], "cache_bytes": {}}
        candidates = encode(pool.columns(spec.text_fields), tokenizer, spec, 128)
        cfg = RunConfig(task=args.task, teacher=name)
        for label, objective in OBJECTIVES.items():
            student = build_configured_student(cfg, spec.num_labels)
            needs = build_distiller(cfg, student, "cpu", None, teacher=teacher, objective=objective).teacher_needs()
            cache = TeacherCache.from_model(teacher, candidates, needs, args.batch_size, "cpu", "float16")
            row["cache_bytes"][label] = cache.nbytes
        rows.append(row)
        del teacher
    if args.json:
        print(json.dumps({"task": args.task, "pool": len(pool), "rows": rows}))
        return
    print(f"{args.task}: {rows[0]['sentences']} test sentences, batch {args.batch_size}; pool of {len(pool)} EDA "
          f"candidates; torch threads {torch.get_num_threads()}")
    for r in rows:
        sizes = ", ".join(f"{k}: {v / 2**20:.2f} MiB" for k, v in r["cache_bytes"].items())
        print(f"  {r['teacher']:7s} {r['parameters'] / 1e6:6.1f}M params  {r['sentences_per_s']:7.1f} sentences/s "
              f"({r['mean_tokens']} tokens on average; load {r['load_average']:.2f})  cache of the pool: {sizes}")


if __name__ == "__main__":
    main()
