"""Throughput of one KD step (student forward + backward + optimiser update) for the default
teacher/student, and the FLOP/s it achieves against the machine's dense-matmul peak.

    python scripts/bench_kd_throughput.py                 # batch 32, sequence 64
    python scripts/bench_kd_throughput.py --steps 20 --json

Setup: the shipped MiniLM teacher (6 layers, hidden 384) and the default student (its first 2
layers), a synthetic dataset of ``batch`` x ``batches`` examples of exactly ``seq`` tokens, the
teacher's outputs cached once (:class:`augrl.kd.TeacherCache`, float16) and looked up every
step, as ``augrl distill --method kd`` does. Objectives: the full L2A objective
(attention_mse + hidden_mse + dark_ce, reading cached layers 3 and 6) and logits-only KD
(dark_ce + hard_ce). With ``--live-teacher`` the L2A step is also timed with the teacher run
live on every batch instead of cached.

FLOPs per step are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products
of forward and backward: the dense work); achieved FLOP/s = FLOPs per step x steps / time. The
peak is measured in the same run: the best of several float32 ``torch.matmul`` of two
``--peak-size`` square matrices, ``2 n^3 / t``. The load average is printed: on a shared
machine other jobs lower both numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from augrl import models
from augrl.batching import Encoded
from augrl.kd import Distiller, TeacherCache

OBJECTIVES = {
    "L2A (attention_mse + hidden_mse + dark_ce)": {"attention_mse": 1.0, "hidden_mse": 1.0, "dark_ce": 1.0},
    "logits only (dark_ce + hard_ce)": {"dark_ce": 1.0, "hard_ce": 1.0},
}


def synthetic_data(n: int, seq: int, vocab: int, cls_id: int, sep_id: int, seed: int = 0) -> Encoded:
    """``n`` examples of exactly ``seq`` tokens: [CLS] random word pieces [SEP], random labels."""
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(1000, vocab, (n, seq - 2), generator=g)
    ids = [[cls_id, *row.tolist(), sep_id] for row in body]
    return Encoded(ids, None, torch.randint(0, 2, (n,), generator=g), 0)


def matmul_peak(size: int, repeats: int = 5) -> float:
    """Best float32 FLOP/s of ``torch.matmul`` on two ``size`` x ``size`` matrices."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def time_steps(distiller: Distiller, data: Encoded, teacher, batch: int, steps: int, warmup: int = 2) -> dict:
    """Samples/s and FLOPs of ``steps`` distiller steps over consecutive batches."""
    n_batches = len(data) // batch
    batches = [data.batch(range(i * batch, (i + 1) * batch)) for i in range(n_batches)]
    for i in range(warmup):
        distiller.step(batches[i % n_batches], teacher)
    counter = FlopCounterMode(display=False)
    with counter:
        distiller.step(batches[0], teacher)
    flops = counter.get_total_flops()
    start = time.perf_counter()
    for i in range(steps):
        distiller.step(batches[i % n_batches], teacher)
    seconds = time.perf_counter() - start
    return {"samples_per_s": batch * steps / seconds, "step_ms": 1000 * seconds / steps, "flops_per_step": flops,
            "flop_per_s": flops * steps / seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default=models.DEFAULT_MODEL)
    p.add_argument("--student-layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--batches", type=int, default=4, help="distinct cached batches cycled through")
    p.add_argument("--steps", type=int, default=10, help="timed steps per objective")
    p.add_argument("--peak-size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--live-teacher", action="store_true", help="also time L2A with the teacher run every step")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = models.load_tokenizer(args.teacher)
    teacher = models.build_teacher(2, args.teacher).eval()
    data = synthetic_data(args.batch * args.batches, args.seq, tokenizer.vocab_size, tokenizer.cls_token_id,
                          tokenizer.sep_token_id)
    peak = matmul_peak(args.peak_size)
    rows = []
    for label, objective in OBJECTIVES.items():
        student = models.build_student(2, args.teacher, num_layers=args.student_layers)
        distiller = Distiller(student, objective, {"dark_ce": {"temperature": 2.0}}, teacher=teacher)
        start = time.perf_counter()
        cache = TeacherCache.from_model(teacher, data, distiller.teacher_needs(), batch_size=args.batch)
        cache_s = time.perf_counter() - start
        row = {"objective": label, "teacher": "cached", **time_steps(distiller, data, cache, args.batch, args.steps),
               "cache_build_s": cache_s, "cache_mb": cache.nbytes / 2 ** 20}
        rows.append(row)
        if args.live_teacher and "attention_mse" in objective:
            rows.append({"objective": label, "teacher": "live",
                         **time_steps(distiller, data, teacher, args.batch, args.steps)})
    info = {"batch": args.batch, "seq": args.seq, "steps": args.steps, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "matmul_peak_flop_per_s": peak,
            "peak_size": args.peak_size, "student_params": models.count_parameters(student),
            "teacher_params": models.count_parameters(teacher)}
    print(f"default teacher/student, batch {args.batch} x seq {args.seq}, {info['torch_threads']} torch threads, "
          f"load average {info['load_avg_1m']:.1f} on {info['cpu_count']} CPUs")
    print(f"dense matmul peak (float32 {args.peak_size}^2): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'objective':45s} {'teacher':8s} {'samples/s':>10s} {'ms/step':>8s} {'GFLOP/step':>10s} "
          f"{'GFLOP/s':>8s} {'of peak':>8s}")
    for r in rows:
        r["fraction_of_peak"] = r["flop_per_s"] / peak
        print(f"{r['objective']:45s} {r['teacher']:8s} {r['samples_per_s']:10.1f} {r['step_ms']:8.1f} "
              f"{r['flops_per_step'] / 1e9:10.2f} {r['flop_per_s'] / 1e9:8.1f} {r['fraction_of_peak']:8.1%}")
    if args.json:
        print(json.dumps({**info, "rows": rows}))


if __name__ == "__main__":
    main()
