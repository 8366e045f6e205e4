"""Augmenters on the real data (AUGRL_DATA) with real WordNet, spaCy and MiniLM, on small slices."""

import json

import pytest

from augrl import baselines
from augrl.cli import main
from augrl.tasks import load_task

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("augrl_cache")]


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("task,method", [("rt", "eda"), ("rt", "tang"), ("cikm", "eda"), ("cikm", "mask")])
def test_augment_cli_on_real_data(task, method, data_root, capsys):
    argv = ["augment", "--task", task, "--method", method, "--n", "4", "--limit", "20", "--json", "--quiet"]
    record = _json(capsys, argv)
    assert record["inputs"] == 20 and all(len(e["variants"]) == 4 for e in record["examples"])
    if task == "cikm":
        assert all(isinstance(e["original"], list) and len(e["original"]) == 2 for e in record["examples"])
    assert record["changed_rate"] > 0.5 and _json(capsys, argv)["examples"] == record["examples"]


def test_contextual_and_cbert_on_minilm_with_a_brief_adaptation(data_root):
    """The real encoder, an MLM adapted for a few steps on little text (the default is 300 steps)."""
    task = load_task("rt", data_dir=data_root)
    small = {"steps": 3, "batch_size": 8, "max_texts": 200, "heldout": 20}
    texts = list(task.train["text"])[:8]
    labels = list(task.train["label"])[:8]
    for name in ("contextual", "cbert"):
        aug = baselines.get(name, mlm_config=small, max_steps=2) if name == "cbert" else \
            baselines.get(name, mlm_config=small)
        aug.fit(task)
        out = aug.augment(texts, n=2, labels=labels, seed=0)
        assert all(len(v) == 2 and all(isinstance(x, str) for x in v) for v in out)
        assert sum(x != t for t, v in zip(texts, out) for x in v) == 16  # every variant replaces >= 1 word
        info = aug.describe_mlm()
        assert info["cache_dir"] and (name == "cbert" or info["train_texts"] <= 200)
