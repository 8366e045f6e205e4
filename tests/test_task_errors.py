"""Bad task YAMLs and data files a new user would plausibly write (issue 18): each must end the
CLI with exit status 2 and one message naming the file (and line or key), the problem and the fix.

Every case writes its files into ``tmp_path`` and runs ``augrl audit --task t.yaml`` (the
cheapest command that loads a task the way every other command does).
"""

from __future__ import annotations

import pytest

from augrl.cli import main

HEAD = "kind: classification\ntext: text\nlabel: label\n"
SMALL = "val_size: 4\ntest_size: 4\n"


def rows(n: int, header: str = "text,label") -> str:
    """A CSV with ``n`` rows alternating neg / pos, distinct texts."""
    body = [f"{'good' if i % 2 else 'bad'} film number {i},{'pos' if i % 2 else 'neg'}" for i in range(n)]
    return "\n".join([header, *body]) + "\n"


# id: (files, yaml, words the message must hold)
CASES = {
    "jsonl row without the label key": (
        {"d.jsonl": '{"text": "a fine film", "label": "pos"}\n{"text": "a dull film"}\n'},
        HEAD + "target: {all: d.jsonl}\n",
        ["d.jsonl:2:", "no key 'label'", "add \"label\""],
    ),
    "val_size is not a number": (
        {"d.csv": rows(40)}, HEAD + "target: {all: d.csv}\nval_size: abc\n",
        ["t.yaml", "'val_size'", "positive integer", "'abc'", "val_size: 200"],
    ),
    "label is a list": (
        {"d.csv": rows(40)}, "kind: classification\ntext: text\nlabel: [label]\ntarget: {all: d.csv}\n",
        ["t.yaml", "'label'", "one column name", "label: label"],
    ),
    "text is a list of three": (
        {"d.csv": rows(40, "a,b,label").replace(",", ",x,", 1)}, "kind: classification\ntext: [a, b, c]\n"
        "label: label\ntarget: {all: d.csv}\n",
        ["t.yaml", "'text'", "3 column(s)", "[first_column, second_column]"],
    ),
    "negative val_size": (
        {"d.csv": rows(200)}, HEAD + "target: {all: d.csv}\nval_size: -20\ntest_size: 50\n",
        ["t.yaml", "'val_size'", "positive integer", "-20"],
    ),
    "negative test_size": (
        {"d.csv": rows(200)}, HEAD + "target: {all: d.csv}\nval_size: 20\ntest_size: -150\n",
        ["t.yaml", "'test_size'", "positive integer", "-150"],
    ),
    "zero test_size": (
        {"d.csv": rows(200)}, HEAD + "target: {all: d.csv}\ntest_size: 0\n",
        ["t.yaml", "'test_size'", "positive integer", "got 0"],
    ),
    "fractional val_size": (
        {"d.csv": rows(200)}, HEAD + "target: {all: d.csv}\nval_size: 0.2\n",
        ["t.yaml", "'val_size'", "positive integer", "0.2"],
    ),
    "labels is a string": (
        {"d.csv": rows(40)}, HEAD + "labels: neg, pos\ntarget: {all: d.csv}\n",
        ["t.yaml", "'labels'", "YAML list", "labels: [neg, pos]"],
    ),
    "yes/no labels read as booleans": (
        {"d.csv": rows(8).replace("neg", "no").replace("pos", "yes")}, HEAD + "labels: [no, yes]\ntarget: {all: d.csv}\n",
        ["t.yaml", "'labels'", "booleans", "labels: ['no', 'yes']"],
    ),
    "duplicate label": (
        {"d.csv": rows(40)}, HEAD + "labels: [neg, pos, pos]\ntarget: {all: d.csv}\n",
        ["t.yaml", "duplicate label 'pos'", "list each class once"],
    ),
    "labels for a regression task": (
        {"d.csv": "text,label\na,0.5\nb,0.7\n"}, "kind: regression\ntext: text\nlabel: label\nlabels: [a, b]\n"
        "target: {all: d.csv}\n",
        ["t.yaml", "'labels'", "regression", "remove 'labels'"],
    ),
    "csv row with too few fields": (
        {"train.csv": "text,label,site\n" + "".join(f"film {i},{'pos' if i % 2 else 'neg'},web\n" for i in range(4))
         + "film 4,neg\n" + "film 5,pos,web\n",
         "test.csv": "text,label,site\nfilm 9,pos,web\nfilm 8,neg,web\n"},
        HEAD + "target: {train: train.csv, test: test.csv}\n" + SMALL,
        ["train.csv:6:", "row has 2 fields, header has 3", "missing field"],
    ),
    "csv row with too many fields": (
        {"d.csv": rows(8) + "good, fun film,pos\n"}, HEAD + "target: {all: d.csv}\n" + SMALL,
        ["d.csv:10:", "row has 3 fields, header has 2", "quote fields"],
    ),
    "csv double quote left open": (
        {"d.csv": rows(4) + '"an open quote,pos\n' + rows(4).split("\n", 1)[1]}, HEAD + "target: {all: d.csv}\n",
        ["d.csv:6:", "row has 1 field, header has 2", "double quote left open"],
    ),
    "latin-1 byte in a csv": (
        {"d.csv": rows(8).encode() + "caf\xe9 film,pos\n".encode("latin-1")}, HEAD + "target: {all: d.csv}\n",
        ["d.csv:10:", "cannot decode byte 0xe9", "byte offset", "as utf-8", "encoding: latin-1", "t.yaml"],
    ),
    "utf-16 csv": (
        {"d.csv": rows(8).encode("utf-16")}, HEAD + "target: {all: d.csv}\n",
        ["d.csv:1:", "cannot decode byte 0xff", "encoding: utf-16"],
    ),
    "unknown encoding": (
        {"d.csv": rows(8)}, HEAD + "target: {all: d.csv}\nencoding: latin-9x\n",
        ["t.yaml", "unknown encoding 'latin-9x'", "latin-1"],
    ),
    "empty train file": (
        {"train.csv": "", "test.csv": rows(8)}, HEAD + "target: {train: train.csv, test: test.csv}\n",
        ["train.csv", "the file is empty", "header line"],
    ),
    "train file with a header only": (
        {"train.csv": "text,label\n", "test.csv": rows(8)}, HEAD + "target: {train: train.csv, test: test.csv}\n",
        ["train.csv", "a header and no rows", "add rows", "'target: train'"],
    ),
    "one-row target": (
        {"d.csv": rows(1)}, HEAD + "labels: [neg, pos]\ntarget: {all: d.csv}\n",
        ["all: 1 row (d.csv)", "class 'neg' has only 0 rows", "test split took 1", "need at least 2202 target rows",
         "lower --shots, val_size or test_size"],
    ),
    "target smaller than the default test_size": (
        {"d.csv": rows(60)}, HEAD + "target: {all: d.csv}\n",
        ["all: 60 rows (d.csv)", "test split took 60", "test_size 2000", "lower --shots, val_size or test_size"],
    ),
    "typo'd key": (
        {"d.csv": rows(40)}, HEAD + "lables: [neg, pos]\ntarget: {all: d.csv}\n",
        ["t.yaml", "unknown field(s) ['lables']", "did you mean 'labels'?"],
    ),
    "typo'd kind": (
        {"d.csv": rows(40)}, "kind: clasification\ntext: text\nlabel: label\ntarget: {all: d.csv}\n",
        ["t.yaml", "'kind'", "did you mean 'classification'?"],
    ),
    "typo'd split": (
        {"d.csv": rows(40), "e.csv": rows(8)}, HEAD + "target: {tarin: d.csv, test: e.csv}\n",
        ["t.yaml", "split 'tarin'", "did you mean 'train'?"],
    ),
    "missing data file": (
        {"Data.csv": rows(40)}, HEAD + "target: {all: data.csv}\n",
        ["data.csv", "file not found", "'target: all'", "did you mean 'Data.csv'?", "relative to the folder"],
    ),
    "data path is a folder": (
        {"d.csv/inner.csv": rows(40)}, HEAD + "target: {all: d.csv}\n",
        ["d.csv", "names a folder", "inside it"],
    ),
    "label column not in the header": (
        {"d.csv": rows(40)}, "kind: classification\ntext: text\nlabel: lable\ntarget: {all: d.csv}\n",
        ["d.csv:1:", "column 'lable' not found", "did you mean 'label'?", "correct 'label'"],
    ),
    "semicolon-separated csv": (
        {"d.csv": rows(40).replace(",", ";")}, HEAD + "target: {all: d.csv}\n",
        ["d.csv:1:", "column 'text' not found", "semicolon-separated", "save it with commas"],
    ),
    "pair task with one text column": (
        {"d.csv": rows(40)}, "kind: pair_classification\ntext: text\nlabel: label\ntarget: {all: d.csv}\n",
        ["t.yaml", "'text' names 1 column(s)", "pair_classification", "[first_column, second_column]"],
    ),
    "jsonl row missing a pair's second text": (
        {"d.jsonl": '{"q1": "a", "q2": "b", "label": 1}\n{"q1": "c", "q3": "d", "label": 0}\n'},
        "kind: pair_classification\ntext: [q1, q2]\nlabel: label\ntarget: {all: d.jsonl}\n",
        ["d.jsonl:2:", "no key 'q2'", "its keys are ['q1', 'q3', 'label']", "'text'"],
    ),
    "empty label cell": (
        {"d.csv": rows(4) + "no label here,\n"}, HEAD + "target: {all: d.csv}\n",
        ["d.csv:6:", "empty label in column 'label'", "fill in the label"],
    ),
    "json null label": (
        {"d.jsonl": '{"text": "a", "label": "neg"}\n{"text": "b", "label": null}\n'}, HEAD + "target: {all: d.jsonl}\n",
        ["d.jsonl:2:", "empty label", "fill in the label"],
    ),
    "one distinct label": (
        {"d.csv": "text,label\n" + "".join(f"film {i},pos\n" for i in range(20))}, HEAD + "target: {all: d.csv}\n",
        ["t.yaml", "1 distinct label(s) ['pos']", "at least 2", "'labels'"],
    ),
    "label in another case": (
        {"d.csv": rows(8)}, HEAD + "labels: [Neg, Pos]\ntarget: {all: d.csv}\n",
        ["d.csv:2:", "unknown label 'neg'", "did you mean 'Neg'?"],
    ),
    "same file as train and test": (
        {"d.csv": rows(40)}, HEAD + "target: {train: d.csv, test: ./d.csv}\n",
        ["t.yaml", "same file d.csv", "target: {all: ...}"],
    ),
    "all combined with test": (
        {"d.csv": rows(40), "e.csv": rows(8)}, HEAD + "target: {all: d.csv, test: e.csv}\n",
        ["t.yaml", "'all' and ['test']", "either"],
    ),
    "test without train": (
        {"d.csv": rows(40)}, HEAD + "target: {test: d.csv}\n",
        ["t.yaml", "no 'train' split", "target: {train: train.csv, test: test.csv}"],
    ),
    "a list of files": (
        {"d.csv": rows(40)}, HEAD + "target: {all: [d.csv, e.csv]}\n",
        ["t.yaml", "'target: all'", "one file name"],
    ),
    "header names a column twice": (
        {"d.csv": "text,text,label\na,b,pos\n"}, HEAD + "target: {all: d.csv}\n",
        ["d.csv:1:", "['text'] more than once", "its own name"],
    ),
    "task file not utf-8": (
        {}, "kind: classification\ntext: t\xe9xt\n".encode("latin-1"),
        ["t.yaml:2:", "not UTF-8", "save it as UTF-8"],
    ),
    "task file is a list": (
        {}, "- kind: classification\n", ["t.yaml", "YAML mapping", "Your own data"],
    ),
}


@pytest.mark.parametrize("files, body, words", list(CASES.values()), ids=list(CASES))
def test_bad_task_input_exits_2_with_file_problem_and_fix(files, body, words, tmp_path, capsys):
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        write = (tmp_path / name).write_bytes if isinstance(content, bytes) else (tmp_path / name).write_text
        write(content)
    (tmp_path / "t.yaml").write_bytes(body if isinstance(body, bytes) else body.encode())
    assert main(["audit", "--task", str(tmp_path / "t.yaml"), "--shots", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("augrl: error: ") and "Traceback" not in err and "Fix: " in err
    for word in words:
        assert word in err, f"{word!r} missing from: {err}"


def test_declared_latin1_encoding_reads_the_file(tmp_path):
    """The fix the decode error gives works: with ``encoding: latin-1`` the same bytes load, and
    latin-1's NEL (0x85) stays inside its row instead of splitting it in two."""
    from augrl.tasks import load_raw

    (tmp_path / "d.csv").write_bytes(rows(12).encode() + "caf\xe9 \x85 fine film,pos\n".encode("latin-1"))
    (tmp_path / "t.yaml").write_text(HEAD + "target: {all: d.csv}\nencoding: latin-1\n" + SMALL)
    _, raw = load_raw(str(tmp_path / "t.yaml"))
    records = raw.target["all"]
    assert len(records) == 13 and records[-1]["_line"] == 14
    assert records[-1]["text"] == "caf\xe9 fine film" and records[-1]["label"] == 1


def test_utf8_encoding_key_tolerates_a_byte_order_mark(tmp_path):
    from augrl.tasks import load_task

    (tmp_path / "d.csv").write_bytes(b"\xef\xbb\xbf" + rows(20).encode())
    (tmp_path / "t.yaml").write_text(HEAD + "target: {all: d.csv}\nencoding: UTF8\n" + SMALL)
    task = load_task(str(tmp_path / "t.yaml"), shots=2)
    assert len(task.train) == 4 and task.spec.label_names == ("neg", "pos")
