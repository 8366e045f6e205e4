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


def test_csv_field_count_mismatch_names_line_and_counts(tmp_path):
    f = tmp_path / "train.csv"
    f.write_text("text,label,site\na,pos,web\nb,neg,web\nc,pos,web\nd,neg,web\ne,pos\n")
    with pytest.raises(DataError, match=r"train.csv:6: row has 2 fields, header has 3\. Fix: add the missing"):
        readers.read_table(f)
    f.write_text("text\tlabel\na\tpos\tx\n")
    f = f.rename(tmp_path / "train.tsv")
    with pytest.raises(DataError, match=r"train.tsv:2: row has 3 fields, header has 2\. Fix: quote fields that "
                                        r"contain a tab"):
        readers.read_table(f)


def test_csv_quoted_line_break_and_crlf_keep_start_lines(tmp_path):
    f = tmp_path / "a.csv"
    f.write_bytes(b't,y\r\n"two\r\nlines",1\r\n\r\nnext,0\r\n')
    rows = readers.read_table(f)
    assert [(r["t"], r["y"], r["_line"]) for r in rows] == [("two\nlines", "1", 2), ("next", "0", 5)]


def test_csv_nel_is_not_a_line_break(tmp_path):
    f = tmp_path / "a.csv"
    f.write_bytes("t,y\ncaf\xe9 \x85 ok,1\nnext,0\n".encode("latin-1"))
    rows = readers.read_table(f, encoding="latin-1")
    assert [r["t"] for r in rows] == ["caf\xe9 \x85 ok", "next"] and rows[1]["_line"] == 3


def test_jsonl_line_separator_inside_a_string_is_not_a_new_line(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"t": "one\u2028two"}\n{"t": "three"}\n')
    assert [(r["t"], r["_line"]) for r in readers.read_table(f)] == [("one\u2028two", 1), ("three", 2)]


def test_decode_error_names_offset_and_suggests_an_encoding(tmp_path):
    f = tmp_path / "a.csv"
    f.write_bytes("t,y\nok,1\ncaf\xe9,0\n".encode("latin-1"))
    with pytest.raises(readers.DecodeError) as err:
        readers.read_table(f)
    e = err.value
    assert (e.line, e.offset, e.column, e.byte, e.suggestion) == (3, 12, 4, 0xE9, "latin-1")
    assert "a.csv:3: cannot decode byte 0xe9 (byte offset 12, column 4) as utf-8" in str(e)
    f.write_bytes("t,y\nok,1\n".encode("utf-16"))
    with pytest.raises(readers.DecodeError) as err:
        readers.read_table(f)
    assert err.value.suggestion == "utf-16" and err.value.offset == 0


def test_empty_file_and_duplicate_header(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("\n  \n")
    with pytest.raises(DataError, match=r"a.csv: the file is empty"):
        readers.read_table(f)
    f.write_text("t,y\n")
    assert readers.read_table(f) == []
    f.write_text("t,y,t\n1,2,3\n")
    with pytest.raises(DataError, match=r"a.csv:1: the header names column\(s\) \['t'\] more than once"):
        readers.read_table(f)


def test_check_encoding():
    assert readers.check_encoding("UTF8") == "utf-8-sig" and readers.check_encoding("Latin-1") == "iso8859-1"
    with pytest.raises(DataError, match=r"t.yaml: unknown encoding 'klingon'"):
        readers.check_encoding("klingon", "t.yaml")
    with pytest.raises(DataError, match="is not an encoding name"):
        readers.check_encoding(["utf-8"])
