import json

import pytest

from augrl.cli import main
from augrl.results import append_jsonl, read_jsonl

# distill takes its fine-tuned teacher from the augrl cache: the session's own, not the user's
pytestmark = pytest.mark.usefixtures("augrl_cache")


def _run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_distill_json_results_and_determinism(toy_task, tiny_model_dir, tmp_path, capsys):
    argv = ["distill", "--task", str(toy_task), "--teacher", str(tiny_model_dir), "--shots", "8", "--max-steps", "3",
            "--json", "--quiet", "--out", str(tmp_path / "out")]
    first = _run_json(capsys, argv)
    assert first["method"] == "kd" and set(first["metrics"]["test"]) == {"accuracy", "f1"}
    assert first["config"]["task"] == str(toy_task) and first["config"]["student_train"]["max_steps"] == 3
    assert first["split"]["sizes"]["train"] == 16 and first["stages"]["student"]["steps"] == 3
    assert first["versions"]["torch"] and "teacher_metrics" in first
    second = _run_json(capsys, argv)
    assert second["metrics"] == first["metrics"] and second["teacher_metrics"] == first["teacher_metrics"]
    records, bad = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert len(records) == 2 and not bad
    assert [r["metrics"] for r in records] == [first["metrics"], second["metrics"]]
    # the saved folder holds the student that was tested, and its own tokenizer
    from augrl import models
    from augrl.pipelines import RunConfig, prepare
    from augrl.training import evaluate

    student_dir = tmp_path / "out" / "kd-seed0" / "student"
    student = models.load_model(student_dir)
    assert models.layer_count(student) == 2 and student.config.augrl_student_layers == [0, 1]
    data = prepare(RunConfig(task=str(toy_task), shots=8, teacher=str(student_dir), device="cpu"))
    assert evaluate(student, data.test, data.task.spec, data.device) == pytest.approx(first["metrics"]["test"])
    assert (tmp_path / "out" / "kd-seed0" / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("model", ["teacher", "student"])
def test_finetune(model, toy_task, tiny_model_dir, capsys):
    rec = _run_json(capsys, ["finetune", "--model", model, "--task", str(toy_task), "--teacher", str(tiny_model_dir),
                             "--shots", "4", "--max-steps", "2", "--json", "--quiet"])
    assert rec["method"] == f"{model}_ft" and rec["stages"][model]["steps"] == 2


@pytest.mark.parametrize("student", ["bilstm", "textcnn"])
def test_small_students_distil(student, toy_task, tiny_model_dir, capsys):
    rec = _run_json(capsys, ["distill", "--task", str(toy_task), "--teacher", str(tiny_model_dir), "--student", student,
                             "--shots", "4", "--max-steps", "2", "--json", "--quiet"])
    from augrl import models

    built = models.build_small_student(student, 2, tiny_model_dir)  # the student of that kind, not a transformer
    assert rec["config"]["student"] == student and rec["params"]["student"] == models.count_parameters(built)


def test_distill_reuses_a_saved_teacher(toy_task, tiny_model_dir, tmp_path, capsys):
    common = ["--task", str(toy_task), "--teacher", str(tiny_model_dir), "--shots", "4", "--max-steps", "2", "--quiet"]
    _run_json(capsys, ["finetune", "--model", "teacher", "--out", str(tmp_path), "--json", *common])
    rec = _run_json(capsys, ["distill", "--teacher-dir", str(tmp_path / "teacher_ft-seed0"), "--json", *common])
    assert "teacher" not in rec["stages"] and rec["teacher_dir"].endswith("teacher_ft-seed0")


def test_keep_leaky_source_is_recorded_in_the_result(toy_task, tiny_model_dir, tmp_path, capsys):
    from augrl.errors import ConfigError
    from augrl.pipelines import RunConfig

    test_text = (tmp_path / "test.csv").read_text().splitlines()[1].rsplit(",", 1)[0]
    with open(tmp_path / "source.csv", "a") as f:
        f.write(f"{test_text},pos\n")  # a verbatim copy of a test text
    argv = ["finetune", "--model", "student", "--task", str(toy_task), "--teacher", str(tiny_model_dir),
            "--shots", "4", "--max-steps", "1", "--json", "--quiet"]
    kept = _run_json(capsys, argv + ["--keep-leaky-source"])
    assert kept["config"]["leakage"] == "keep" and kept["split"]["leakage_filter"] == "keep"
    assert kept["split"]["source_removed"] == 0 and kept["split"]["leakage"]["in_source"] >= 1
    removed = _run_json(capsys, argv)
    assert removed["config"]["leakage"] == "remove" and removed["split"]["leakage_filter"] == "remove"
    assert removed["split"]["source_removed"] == kept["split"]["leakage"]["flagged"] >= 1
    with pytest.raises(ConfigError, match="RunConfig.leakage"):
        RunConfig(leakage="sometimes")


def test_errors_exit_2_with_a_message(capsys, toy_task):
    assert main(["distill", "--task", "nope", "--quiet"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert main(["distill", "--task", str(toy_task), "--method", "magic", "--quiet"]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err


def test_tasks_without_data_lists_names(capsys, monkeypatch):
    monkeypatch.delenv("AUGRL_DATA", raising=False)
    rows = _run_json(capsys, ["tasks", "--json"])
    assert {"rt", "cikm", "sick-relatedness"} <= {r["name"] for r in rows}
    assert all("rows" not in r for r in rows)


def test_results_lines_from_concurrent_writers_do_not_interleave(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "results.jsonl"
    procs = [mp.get_context("spawn").Process(target=_write_many, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    records, bad = read_jsonl(path)
    assert not bad and len(records) == 300


def _write_many(path, writer):
    for i in range(100):
        append_jsonl(path, {"writer": writer, "i": i, "pad": "x" * 5000})


def test_truncated_last_line_is_reported(tmp_path):
    path = tmp_path / "r.jsonl"
    append_jsonl(path, {"a": 1})
    with open(path, "a") as f:
        f.write('{"a": 2, "b"')
    records, bad = read_jsonl(path)
    assert records == [{"a": 1}] and bad[0][0] == 2


ALL_METHODS = ["kd", "multi_teacher", "cotrain_isolated", "cotrain_shared_grad", "cotrain_loss_sum", "newsbert", "rco",
               "metakd"]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_runs_from_the_cli(method, toy_task, tiny_model_dir, tmp_path, capsys):
    rec = _run_json(capsys, ["distill", "--task", str(toy_task), "--teacher", str(tiny_model_dir), "--method", method,
                             "--shots", "8", "--max-steps", "5", "--json", "--quiet", "--out", str(tmp_path)])
    assert rec["method"] == method and set(rec["metrics"]["test"]) == {"accuracy", "f1"}
    assert rec["stages"]["student"]["steps"] == 5 and rec["params"]["student"] > 0
    assert set(rec["teacher_metrics"]["test"]) == {"accuracy", "f1"} and rec["objective"]
    assert (tmp_path / f"{method}-seed0" / "student" / "config.json").exists()
    from augrl.methods import names

    assert set(ALL_METHODS) <= set(names())


def test_objective_layer_map_and_options_flags(toy_task, tiny_model_dir, tmp_path, capsys):
    common = ["distill", "--task", str(toy_task), "--teacher", str(tiny_model_dir), "--shots", "4", "--max-steps", "2",
              "--json", "--quiet"]
    rec = _run_json(capsys, [*common, "--objective", "attention_mse=1,hidden_mse=1,dark_ce=1", "--layer-map", "4:2,2:1",
                             "--out", str(tmp_path)])
    assert rec["objective"] == {"attention_mse": 1.0, "hidden_mse": 1.0, "dark_ce": 1.0}
    assert rec["layer_map"] == "2:1,4:2" and rec["teacher_cache_bytes"] > 0
    assert {"attention_mse", "hidden_mse", "dark_ce"} <= set(rec["stages"]["student"]["history"][0])
    # the learned projection W of hidden_mse (student width 32 -> teacher width 32), with its layer map
    import torch

    saved = torch.load(tmp_path / "kd-seed0" / "student" / "kd_modules.pt", weights_only=True)
    assert saved["layer_map"] == "2:1,4:2" and saved["objective"] == rec["objective"]
    assert set(saved["modules"]) == {"hidden_mse"} and saved["modules"]["hidden_mse"]["weight"].shape == (32, 32)
    rec = _run_json(capsys, [*common, "--method", "newsbert", "--option", "beta=0.25", "--objective",
                             '{"dark_ce": 1, "hard_ce": 0.5}'])
    assert rec["method_options"]["beta"] == 0.25 and rec["objective"] == {"dark_ce": 1.0, "hard_ce": 0.5}
    assert main([*common, "--method", "newsbert", "--option", "gamma=1"]) == 2
    assert "unknown field(s) ['gamma']" in capsys.readouterr().err
    assert main([*common, "--method", "newsbert", "--student", "bilstm"]) == 2
    assert "needs a transformer student" in capsys.readouterr().err


@pytest.mark.parametrize("student", ["bilstm", "textcnn"])
def test_small_students_default_to_logit_regression(student, toy_task, tiny_model_dir, capsys):
    rec = _run_json(capsys, ["distill", "--task", str(toy_task), "--teacher", str(tiny_model_dir), "--student", student,
                             "--method", "cotrain_isolated", "--shots", "4", "--max-steps", "2", "--json", "--quiet"])
    assert rec["objective"] == {"logit_mse": 1.0, "hard_ce": 1.0}
