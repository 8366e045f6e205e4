import re

import datasets
import pytest

from augrl import tasks
from augrl.errors import ConfigError, DataError
from augrl.tasks import load_task, normalize_text

BUILTIN = {"rt", "sst2", "cikm", "rte", "amazon-books", "amazon-dvd", "amazon-electronics", "helpful-books",
           "helpful-dvd", "helpful-electronics", "sick-relatedness"}


def test_registry_holds_every_task():
    assert BUILTIN <= set(tasks.task_names())
    assert tasks.get_spec("cikm").pair and tasks.get_spec("sick-relatedness").metrics == ("pearson", "spearman")
    assert tasks.get_spec("rt").metrics == ("accuracy", "f1")


def test_unknown_task_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown task 'nope'.*rt"):
        load_task("nope")


def test_yaml_task_split_sizes_and_seeds(toy_task):
    a = load_task(str(toy_task), shots=8, seed=0)
    assert (len(a.train), len(a.val), len(a.test)) == (16, 20, 60)
    assert sorted(a.train["label"]) == [0] * 8 + [1] * 8
    assert a.meta["test_from"] == "official test" and a.meta["val_from"] == "random"
    b = load_task(str(toy_task), shots=8, seed=0)
    assert a.train["idx"] == b.train["idx"] and a.val["idx"] == b.val["idx"]
    c = load_task(str(toy_task), shots=8, seed=1)
    assert a.train["idx"] != c.train["idx"]
    d = load_task(str(toy_task), shots=4, seed=0)  # the test split does not depend on shots
    assert d.test["idx"] == a.test["idx"] and d.val["idx"] == a.val["idx"]
    assert not set(a.train["idx"]) & set(a.val["idx"])


def test_source_rows_matching_heldout_text_are_removed(toy_task, tmp_path):
    test_text = open(tmp_path / "test.csv").read().splitlines()[1].rsplit(",", 1)[0]
    with open(tmp_path / "source.csv", "a") as f:
        f.write(f"  {test_text.upper()}   ,pos\n")  # case and whitespace differ
    t = load_task(str(toy_task), shots=8, seed=0)
    held = {normalize_text(x) for x in list(t.val["text"]) + list(t.test["text"])}
    assert not any(normalize_text(x) in held for x in t.source["text"])
    assert t.meta["source_removed"] >= 1
    assert t.meta["source_total"] == t.meta["source_removed"] + len(t.source)


def _yaml(tmp_path, body: str, csv: str):
    (tmp_path / "d.csv").write_text(csv)
    (tmp_path / "t.yaml").write_text(body)
    return str(tmp_path / "t.yaml")


def test_unknown_label_names_file_and_line(tmp_path):
    y = _yaml(tmp_path, "kind: classification\ntext: t\nlabel: y\nlabels: [a, b]\ntarget: {all: d.csv}\n",
              "t,y\nhello,a\nworld,c\n")
    with pytest.raises(DataError, match=r"d.csv:3: unknown label 'c' in column 'y'"):
        load_task(y, shots=1)


def test_empty_text_names_file_and_line(tmp_path):
    y = _yaml(tmp_path, "kind: classification\ntext: t\nlabel: y\ntarget: {all: d.csv}\n", "t,y\nhello,a\n  ,b\n")
    with pytest.raises(DataError, match=r"d.csv:3: empty text in field 't'"):
        load_task(y, shots=1)


def test_non_numeric_score_names_file_and_line(tmp_path):
    y = _yaml(tmp_path, "kind: regression\ntext: t\nlabel: y\ntarget: {all: d.csv}\n", "t,y\nhello,0.5\nworld,high\n")
    with pytest.raises(DataError, match=r"d.csv:3: regression score 'high'"):
        load_task(y, shots=1)


def test_bad_yaml_fields(tmp_path):
    y = _yaml(tmp_path, "kind: classification\ntext: t\nlabel: y\ntarget: {all: d.csv}\ncolour: red\n", "t,y\n")
    with pytest.raises(DataError, match=r"unknown field\(s\) \['colour'\]"):
        tasks.get_spec(y)
    y = _yaml(tmp_path, "kind: classification\ntext: t\nlabel: z\ntarget: {all: d.csv}\n", "t,y\nhi,a\n")
    with pytest.raises(DataError, match=r"column 'z' not found"):
        tasks.get_spec(y)


def test_too_few_rows_is_a_clear_error(toy_task):
    with pytest.raises(DataError, match="has only"):
        load_task(str(toy_task), shots=500)


def test_regression_train_size_and_pair_task(tmp_path):
    rows = "\n".join(f"a{i},b{i},{i / 10}" for i in range(40))
    y = _yaml(tmp_path, "kind: regression\ntext: [s1, s2]\nlabel: score\ntarget: {all: d.csv}\nval_size: 5\ntest_size: 10\n",
              "s1,s2,score\n" + rows + "\n")
    t = load_task(y, shots=4)
    assert len(t.train) == 8 and t.spec.pair and set(t.train.column_names) >= {"text_a", "text_b", "label"}


def test_register_task_from_python():
    spec = tasks.TaskSpec("py-task", "classification", ("no", "yes"), val_size=2, test_size=2)
    rows = [{"text": f"row {i}", "label": i % 2, "domain": "x"} for i in range(10)]
    tasks.register_task(spec, lambda root: tasks.RawTask(target={"all": rows}), overwrite=True)
    t = load_task("py-task", shots=2)
    assert len(t.train) == 4
    with pytest.raises(ConfigError, match="already registered"):
        tasks.register_task(spec, lambda root: None)


def test_missing_data_root_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("AUGRL_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="from AUGRL_DATA.*is not a folder"):
        load_task("rt")
    monkeypatch.setenv("AUGRL_DATA", str(tmp_path))
    with pytest.raises(DataError, match=r"rt-polarity.neg: text file not found"):
        load_task("rt")


def test_hub_fallback_without_data_root(monkeypatch):
    monkeypatch.delenv("AUGRL_DATA", raising=False)
    with pytest.raises(DataError, match="no Hugging Face hub copy"):
        load_task("cikm")

    def fake_hub(path, name=None):
        if path == "cornell-movie-review-data/rotten_tomatoes":
            split = {"text": [f"review {i} here" for i in range(30)], "label": [i % 2 for i in range(30)]}
            return datasets.DatasetDict({s: datasets.Dataset.from_dict(split) for s in ("train", "validation", "test")})
        assert path == "stanfordnlp/sst2"
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict(
            {"sentence": ["review 3 here", "other text"], "label": [1, 0]})})

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    t = load_task("rt", shots=2, val_size=4, test_size=10)
    assert len(t.train) == 4 and t.meta["source_total"] == 2


def test_spec_and_split_sizes_must_be_positive_integers(toy_task):
    with pytest.raises(ConfigError, match=r"task 'x': val_size must be a positive integer.*got -1"):
        tasks.TaskSpec("x", "classification", ("a", "b"), val_size=-1)
    with pytest.raises(ConfigError, match=r"test_size must be a positive integer.*got '5'"):
        tasks.TaskSpec("x", "classification", ("a", "b"), test_size="5")
    with pytest.raises(ConfigError, match=r"duplicate label 'a'"):
        tasks.TaskSpec("x", "classification", ("a", "b", "a"))
    with pytest.raises(ConfigError, match=r"val_size must be a positive integer.*got 0"):
        load_task(str(toy_task), shots=2, val_size=0)
    with pytest.raises(ConfigError, match=r"test_size must be a positive integer.*got True"):
        load_task(str(toy_task), shots=2, test_size=True)


def test_shortage_with_official_splits_counts_each_file(toy_task):
    # train.csv has 120 rows (60 per class); val_size 20 comes out of them
    with pytest.raises(DataError) as err:
        load_task(str(toy_task), shots=55)
    msg = str(err.value)
    assert re.search(r"class '(neg|pos)' has only (5[0-4]|[1-4]\d) rows left for training, 55 asked for", msg)
    assert "train: 120 rows (train.csv), test: 60 rows (test.csv)" in msg
    assert "validation took 20 (random, val_size 20)" in msg and "need at least 130 rows in the train split" in msg
