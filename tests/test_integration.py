"""The shipped MiniLM and the real data in AUGRL_DATA, on small slices."""

import json

import pytest

from augrl.cli import main
from augrl.tasks import load_raw, load_task, normalize_text

pytestmark = pytest.mark.integration

FULL_COUNTS = {  # task -> rows per official split of the target, and source rows
    "rt": ({"all": 10662}, 67349),
    "sst2": ({"train": 67349, "test": 872}, 0),
    "cikm": ({"all": 20000}, 3668 + 408),
    "rte": ({"train": 2127, "test": 363}, 9840),
    "amazon-books": ({"all": 2000}, 4000),
    "amazon-dvd": ({"all": 2000}, 4000),
    "amazon-electronics": ({"all": 2000}, 4000),
    "sick-relatedness": ({"train": 4439, "validation": 495, "test": 4906}, 0),
}


@pytest.mark.parametrize("name", sorted(FULL_COUNTS))
def test_full_row_counts(name, data_root):
    _, raw = load_raw(name, data_root)
    target, source = FULL_COUNTS[name]
    assert {k: len(v) for k, v in raw.target.items()} == target
    assert len(raw.source) == source


@pytest.mark.parametrize("domain", ["books", "dvd", "electronics"])
def test_helpfulness_keeps_only_voted_reviews(domain, data_root):
    _, raw = load_raw(f"helpful-{domain}", data_root)
    scores = [r["label"] for r in raw.target["all"]]
    assert 1400 < len(scores) < 2000 and all(0.0 <= s <= 1.0 for s in scores)


def test_rt_source_holds_no_heldout_sentence(data_root):
    task = load_task("rt", shots=40, seed=0, data_dir=data_root)
    held = {normalize_text(t) for t in list(task.val["text"]) + list(task.test["text"])}
    assert not any(normalize_text(t) in held for t in task.source["text"])
    assert task.meta["source_removed"] > 100  # SST-2 was built from RT: the leak is real
    assert (len(task.train), len(task.val), len(task.test)) == (80, 200, 2000)


def test_rt_source_holds_no_piece_of_a_heldout_text(data_root):
    from augrl.leakage import CATEGORIES, normalize

    task = load_task("rt", shots=40, seed=0, data_dir=data_root)
    leak = task.meta["leakage"]
    assert task.meta["leakage_filter"] == "remove" and all(leak["counts"][c] > 0 for c in CATEGORIES)
    assert task.meta["source_removed"] == leak["flagged"] > 5000 and leak["in_source"] == 0
    # brute force, independent of the audit's index: one search per row over all held-out texts
    min_words = leak["settings"]["min_substring_words"]
    held = [normalize(t) for t in list(task.val["text"]) + list(task.test["text"])]
    whole, haystack = set(held), "\n".join(f" {t} " for t in held)
    for text in task.source["text"]:
        norm = normalize(text)
        assert norm not in whole, text
        assert len(norm.split()) < min_words or f" {norm} " not in haystack, text


def test_tasks_json_lists_every_task_with_counts(data_root, capsys):
    assert main(["tasks", "--json", "--data-dir", str(data_root)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])}
    assert len(rows) >= 11 and rows["rt"]["rows"]["test"] == 2000 and rows["cikm"]["kind"] == "pair_classification"


# The real-RT tests fine-tune one teacher between them: the same split (8 shots, seed 0) and
# `--max-steps 3` (which caps the teacher's fine-tuning too) in the session's cache (augrl_cache).
def test_distill_rt_with_minilm_end_to_end(data_root, augrl_cache, capsys):
    argv = ["distill", "--task", "rt", "--shots", "8", "--seed", "0", "--max-steps", "3", "--json", "--quiet"]
    assert main(argv) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= rec["metrics"]["test"]["accuracy"] <= 1.0
    assert rec["params"]["teacher"] == 22713986 and 15_000_000 < rec["params"]["student"] < 16_000_000


def test_kd_with_the_l2a_objective_on_minilm(data_root, augrl_cache, capsys):
    """Cached MiniLM hidden states and attention scores of the mapped layers 3 and 6."""
    argv = ["distill", "--task", "rt", "--shots", "8", "--max-steps", "3", "--json", "--quiet",
            "--objective", "attention_mse=1,hidden_mse=1,dark_ce=1"]
    assert main(argv) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["layer_map"] == "3:1,6:2" and rec["teacher_cache_bytes"] > 0
    first = rec["stages"]["student"]["history"][0]
    assert first["attention_mse"] > 0 and first["hidden_mse"] > 0 and first["dark_ce"] >= 0


def test_metakd_on_amazon_domains(data_root, augrl_cache, tmp_path, capsys):
    # reviews cut at 64 tokens: most of this test's time is the teacher's and the student's
    # passes over the test reviews, which 128 tokens would double
    (tmp_path / "short.yaml").write_text("teacher_train: {max_length: 64}\n")
    argv = ["distill", "--task", "amazon-books", "--method", "metakd", "--shots", "4", "--max-steps", "2",
            "--option", "source_shots=4", "--config", str(tmp_path / "short.yaml"), "--json", "--quiet"]
    assert main(argv) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["domains"] == ["books", "dvd", "electronics"] and rec["meta_train_size"] == 8 + 2 * 8
    assert rec["config"]["teacher_train"]["max_length"] == 64
    assert 0.0 < rec["expertise_weight_mean"] < 2.0
    assert "domain_transfer" in rec["stages"]["student"]["history"][0]
