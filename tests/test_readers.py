import pytest

from augrl import readers
from augrl.errors import DataError


def test_tsv_missing_column_names_file_and_line(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_text("sentence\tlabel\nhello\t1\n")
    with pytest.raises(DataError) as err:
        readers.read_tsv_plain(f, columns=("text", "label"))
    assert "x.tsv:1" in str(err.value) and "'text'" in str(err.value) and "Fix:" in str(err.value)


def test_tsv_wrong_field_count_names_line(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_text("text\tlabel\nok\t1\nbroken\t1\textra\n")
    with pytest.raises(DataError, match=r"x.tsv:3: expected 2 tab-separated fields, found 3"):
        readers.read_tsv_plain(f, columns=("text", "label"))


def test_tsv_keeps_quotes_and_drops_bom(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_bytes('\ufeffQuality\ttext\n1\the said "no" twice\n'.encode())
    rows = readers.read_tsv_plain(f, columns=("Quality", "text"))
    assert rows[0]["Quality"] == "1" and rows[0]["text"] == 'he said "no" twice'


def test_tsv_header_detection(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_text("7\tA man sleeps.\tA man rests.\tentailment\n")
    rows = readers.read_tsv_plain(f, columns=("sentence1",), header=None, names=["index", "sentence1", "s2", "label"])
    assert len(rows) == 1 and rows[0]["sentence1"] == "A man sleeps."


def test_latin1_lines_keep_nel_inside_sentence(tmp_path):
    f = tmp_path / "rt.pos"
    f.write_bytes(b"caf\xe9 was great \x85 really\nsecond line\n")
    rows = readers.read_lines(f, encoding="latin-1")
    assert [r["_line"] for r in rows] == [1, 2] and rows[0]["text"].startswith("café")


def test_undecodable_file_names_line(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: cannot decode"):
        readers.read_table(f)


AMAZON = """<reviews>
<review>
<helpful>
3 of 4
</helpful>
<rating>
5.0
</rating>
<title>
Fun & games
</title>
<review_text>
Great book & a stray \ufffd char
</review_text>
</review>
<review>
<helpful>
</helpful>
<rating>
1.0
</rating>
<review_text>
Dull.
</review_text>
</review>
</reviews>
"""


def test_amazon_pseudo_xml(tmp_path):
    f = tmp_path / "positive.review"
    f.write_text(AMAZON)
    rows = readers.read_amazon_reviews(f)
    assert len(rows) == 2
    assert rows[0]["text"] == "Great book & a stray \ufffd char" and rows[0]["helpful_yes"] == 3
    assert rows[0]["helpful_total"] == 4 and rows[1]["helpful_total"] is None
    assert rows[0]["_line"] == 2 and rows[1]["_line"] == 16


def test_amazon_missing_rating_names_line(tmp_path):
    f = tmp_path / "negative.review"
    f.write_text("<reviews>\n<review>\n<review_text>\nhi\n</review_text>\n</review>\n")
    with pytest.raises(DataError, match=r"negative.review:2: review has no numeric <rating>"):
        readers.read_amazon_reviews(f)


def test_table_formats(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"t": "x", "y": 1}\n\n{"t": "z", "y": 0}\n')
    assert [r["_line"] for r in readers.read_table(tmp_path / "a.jsonl")] == [1, 3]
    (tmp_path / "a.csv").write_text('t,y\n"hello, world",1\n')
    assert readers.read_table(tmp_path / "a.csv")[0]["t"] == "hello, world"
    (tmp_path / "bad.jsonl").write_text('{"t": 1}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        readers.read_table(tmp_path / "bad.jsonl")
    (tmp_path / "a.xlsx").write_text("")
    with pytest.raises(DataError, match="unsupported file type"):
        readers.read_table(tmp_path / "a.xlsx")


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match="AUGRL_DATA"):
        readers.read_lines(tmp_path / "nope.txt")
