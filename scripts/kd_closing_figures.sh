#!/usr/bin/env bash
# The KD stack's closing figures, as plain CLI commands (issue 3):
#   1. L2A Table 3 ablation on RT 40-shot: kd with L_KD = attention_mse + hidden_mse + dark_ce,
#      and with each term removed; 3 seeds, one fine-tuned teacher per seed reused by every run.
#   2. Meta-KD against single-domain KD on amazon-books (seed 0, 5 epochs per stage to fit the
#      CPU budget: Amazon reviews run to 128 tokens): the same student losses
#      (embedding, hidden, attention, prediction), Meta-KD adding its meta-teacher over the
#      three domains, domain transfer and expertise weights.
#   3. KD-step throughput (scripts/bench_kd_throughput.py).
# Every run appends one JSON line to $OUT/results.jsonl; the summary at the end reads them.
#
#   AUGRL_DATA=../shared/data bash scripts/kd_closing_figures.sh [OUT] [SEEDS]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/kd-closing}
SEEDS=${2:-"0 1 2"}
AUGRL="${PYTHON:-python} -m augrl.cli"
mkdir -p "$OUT"

for seed in $SEEDS; do
  teacher="$OUT/teachers/teacher_ft-seed$seed"
  [ -d "$teacher" ] || $AUGRL finetune --task rt --model teacher --seed "$seed" --out "$OUT/teachers" --quiet
  for objective in attention_mse=1,hidden_mse=1,dark_ce=1 hidden_mse=1,dark_ce=1 attention_mse=1,dark_ce=1 \
                   attention_mse=1,hidden_mse=1; do
    $AUGRL distill --task rt --method kd --seed "$seed" --teacher-dir "$teacher" --objective "$objective" \
      --out "$OUT/table3" --quiet
  done
done

meta_objective=embedding_mse=1,hidden_mse=1,attention_mse=1,dark_ce=1
$AUGRL distill --task amazon-books --method metakd --seed 0 --epochs 5 --out "$OUT/amazon" --quiet
$AUGRL distill --task amazon-books --method kd --seed 0 --epochs 5 --objective "$meta_objective" --out "$OUT/amazon" --quiet

${PYTHON:-python} scripts/bench_kd_throughput.py --live-teacher --json | tee "$OUT/throughput.txt"

${PYTHON:-python} - "$OUT" <<'EOF'
import statistics, sys
from pathlib import Path
from augrl.results import read_jsonl

out = Path(sys.argv[1])
for name in ("table3", "amazon"):
    rows, _ = read_jsonl(out / name / "results.jsonl")
    groups = {}
    for r in rows:
        groups.setdefault((r["task"], r["method"], "+".join(r["objective"])), []).append(r)
    for (task, method, objective), rs in groups.items():
        acc = [r["metrics"]["test"]["accuracy"] for r in rs]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        teacher = [r["teacher_metrics"]["test"]["accuracy"] for r in rs]
        print(f"{task:13s} {method:7s} {objective:55s} acc {statistics.mean(acc):.4f} +- {sd:.4f} "
              f"(seeds {sorted(r['seed'] for r in rs)}; teacher {statistics.mean(teacher):.4f}; "
              f"{statistics.mean(r['wall_time_s'] for r in rs):.0f}s/run)")
EOF
