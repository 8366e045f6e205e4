"""Distillation trainers and bench rows share one path (tiny models)."""

from __future__ import annotations

import json

import pytest

from augrl import bench
from augrl.cli import main
from augrl.errors import ConfigError
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


def test_a_source_adapted_teacher_is_trained_on_the_source_first_and_cached(toy_tasks, tiny_model_dir, augrl_cache,
                                                                              single_thread, tmp_path, monkeypatch):
    # a cache of its own: its teacher_ft would otherwise be the cached teacher other tests train
    monkeypatch.setenv("AUGRL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    argv = ["bench", "--task", str(toy_tasks["single_file"]), "--methods", "teacher_ft,teacher_ft_source",
            "--seeds", "1", "--shots", "8", "--teacher", str(tiny_model_dir), "--epochs", "1", "--batch-size", "8",
            "--max-steps", "3", "--device", "cpu", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    (plain, adapted), bad = read_jsonl(out / "results.jsonl")
    assert not bad and [plain["method"], adapted["method"]] == ["teacher_ft", "teacher_ft_source"]
    source = adapted["stages"]["teacher"]["source"]
    # 250 per class asked, the toy source pool holds 40 of each class: all 80 are used
    assert source["examples"] == 80 and source["steps"] == 3 and "source" not in plain["stages"]["teacher"]
    assert adapted["teacher"]["dir"] != plain["teacher"]["dir"]  # another cache entry than the shared teacher
    assert adapted["teacher"]["cached"] is False

    # the same teacher bench-wide (RunConfig.teacher_source_shots): the row's cache entry is reused
    distilled = run_distill(RunConfig(task=str(toy_tasks["single_file"]), shots=8, teacher=str(tiny_model_dir),
                                      student_init=str(tiny_model_dir), teacher_source_shots=250, device="cpu",
                                      teacher_train=TrainConfig(epochs=1, batch_size=8, max_steps=3),
                                      student_train=TrainConfig(epochs=1, batch_size=8, max_steps=3)),
                            progress=False)
    assert distilled["teacher"]["cached"] is True and distilled["teacher"]["dir"] == adapted["teacher"]["dir"]


def test_a_source_adapted_teacher_needs_a_source_pool(tiny_model_dir, tmp_path, augrl_cache, capsys):
    import random

    rows = ["text,label"] + [f"the film was {random.Random(i).choice(['good', 'bad'])} {i},{'pos' if i % 2 else 'neg'}"
                             for i in range(60)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "task.yaml").write_text("name: nosource\nkind: classification\ntext: text\nlabel: label\n"
                                        "target: {all: data.csv}\nval_size: 10\ntest_size: 10\n")
    argv = ["finetune", "--model", "teacher", "--task", str(tmp_path / "task.yaml"), "--teacher", str(tiny_model_dir),
            "--shots", "4", "--max-steps", "1", "--teacher-source-shots", "10", "--device", "cpu", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "task 'nosource' has no source pool" in err and "source-adapted teacher" in err
    with pytest.raises(ConfigError, match="teacher_source_shots must be an integer >= 0"):
        RunConfig(teacher_source_shots=-1)
