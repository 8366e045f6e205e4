"""Distillation trainers and bench rows share one path (tiny models)."""

from __future__ import annotations

import json

from augrl import bench
from augrl.cli import main
from augrl.methods import run_distill
from augrl.pipelines import RunConfig
from augrl.results import read_jsonl
from augrl.training import TrainConfig


def test_bench_runs_the_distillation_trainers_beside_augmented_rows(toy_tasks, tiny_model_dir, augrl_cache,
                                                                      single_thread, tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "--task", str(toy_tasks["single_file"]), "--methods", "kd,cotrain_isolated,rco,kd+eda",
            "--seeds", "1", "--shots", "8", "--teacher", str(tiny_model_dir), "--epochs", "1", "--batch-size", "8",
            "--max-steps", "5", "--device", "cpu", "--quiet", "--out", str(out), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["planned"] == 4 and len(summary["ran"]) == 4
    records, bad = read_jsonl(out / "results.jsonl")
    assert not bad
    by = {r["method"]: r for r in records}
    assert list(by) == ["kd", "cotrain_isolated", "rco", "kd+eda"]
    for name in ("cotrain_isolated", "rco"):
        r = by[name]
        assert r["config"]["method"] == name and set(r["metrics"]["test"]) == {"accuracy", "f1"}
        # the co-trained / route teacher is evaluated on test by the final evaluation only
        assert set(r["teacher_metrics"]["test"]) == {"accuracy", "f1"}
        assert r["stages"]["student"]["steps"] >= 1
    assert len(by["rco"]["route"]) >= 1 and "teacher_val" in by["cotrain_isolated"]
    assert by["kd"]["config"]["method"] == "kd" and by["kd+eda"]["candidates"] > 0
    assert len({r["config_hash"] for r in records}) == 4
    assert "cotrain_isolated" in (out / "table.md").read_text()


def test_distill_kd_is_the_bench_kd_row(toy_tasks, tiny_model_dir, augrl_cache, single_thread, tmp_path):
    small = TrainConfig(epochs=1, batch_size=8, max_steps=3)
    base = RunConfig(teacher=str(tiny_model_dir), student_init=str(tiny_model_dir), teacher_train=small,
                     student_train=small, device="cpu")
    settings = bench.BenchSettings(tasks=[str(toy_tasks["single_file"])], methods=["kd"], seeds=[2], shots=[8])
    bench.run_bench(settings, base, tmp_path / "b", progress=False)
    (row,), _ = read_jsonl(tmp_path / "b" / "results.jsonl")
    distilled = run_distill(base.replace(task=str(toy_tasks["single_file"]), shots=8, seed=2), progress=False)
    assert distilled["teacher"]["cached"] is True and row["teacher"]["cached"] is False  # the bench's teacher
    assert distilled["teacher"]["dir"] == row["teacher"]["dir"]
    assert distilled["metrics"] == row["metrics"] and distilled["config"] == row["config"]
    assert distilled["stages"]["student"]["history"] == row["stages"]["student"]["history"]
    # distill also reports its teacher on test; the bench leaves that to the teacher_ft row
    assert set(distilled["teacher_metrics"]["test"]) == {"accuracy", "f1"} and "teacher_metrics" not in row
    assert distilled["command"] == "distill" and row["command"] == "bench"
