"""`augrl augment`: JSON output, seeds, pair tasks, the quality report, errors."""

import json

import pytest

from augrl.cli import main

pytestmark = pytest.mark.usefixtures("augrl_cache", "single_thread")


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["eda", "mask", "pos", "ngram", "tang", "contextual", "cbert"])
def test_augment_json_for_every_method(method, toy_tasks, tiny_model_dir, capsys):
    argv = ["augment", "--task", str(toy_tasks["single_file"]), "--shots", "8", "--method", method, "--n", "3",
            "--limit", "5", "--json", "--quiet", "--mlm", str(tiny_model_dir), "--mlm-steps", "20"]
    record = _json(capsys, argv)
    assert record["method"] == method and record["n"] == 3 and record["inputs"] == 5
    assert len(record["examples"]) == 5 and all(len(e["variants"]) == 3 for e in record["examples"])
    assert all(isinstance(e["original"], str) and len(e["edits"]) == 3 for e in record["examples"])
    assert record["changed_rate"] > 0.0
    assert _json(capsys, argv)["examples"] == record["examples"]  # same seed, same variants
    if method in ("contextual", "cbert"):
        assert record["mlm"]["cache_dir"]


def test_augment_pair_task_and_side(toy_tasks, capsys):
    record = _json(capsys, ["augment", "--task", str(toy_tasks["pair_file"]), "--shots", "8", "--method", "mask",
                            "--param", "p_mask=0.5", "--side", "b", "--n", "2", "--limit", "4", "--json"])
    assert record["params"]["p_mask"] == 0.5 and record["params"]["side"] == "b"
    for ex in record["examples"]:
        assert all(v[0] == ex["original"][0] and len(v) == 2 for v in ex["variants"])


def test_augment_report_trains_a_teacher_or_reuses_one(toy_tasks, tiny_model_dir, tmp_path, capsys):
    common = ["augment", "--task", str(toy_tasks["single_file"]), "--shots", "8", "--method", "tang", "--n", "2",
              "--report", "--json", "--quiet"]
    first = _json(capsys, common + ["--teacher", str(tiny_model_dir), "--max-steps", "2", "--out", str(tmp_path)])
    report = first["report"]
    assert 0.0 <= report["label_preservation"] <= 1.0 and report["variants"] == 32
    assert {"distinct_1", "distinct_2", "mean_edit_fraction", "teacher_accuracy_originals"} <= set(report)
    again = _json(capsys, common + ["--teacher-dir", report["teacher_dir"]])
    assert again["report"] == {**report, "teacher_dir": report["teacher_dir"]}


def test_augment_text_output_and_errors(toy_tasks, capsys):
    assert main(["augment", "--task", str(toy_tasks["single_file"]), "--shots", "8", "--method", "ngram",
                 "--limit", "2", "--n", "1"]) == 0
    out = capsys.readouterr().out
    assert "ngram: 2 inputs x 1 variants" in out
    assert main(["augment", "--method", "nope"]) == 2
    assert "unknown augmenter 'nope'" in capsys.readouterr().err
    assert main(["augment", "--task", str(toy_tasks["single_file"]), "--method", "mask", "--param", "p_mask"]) == 2
    assert "key=value" in capsys.readouterr().err
