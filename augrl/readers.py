"""Readers for the original file formats in ``../shared/data`` and for users' CSV/TSV/JSONL.

Every reader returns a list of plain dict records; each record carries ``_file`` and ``_line``
(1-based line of the record's start) so that later validation can point at the exact place.
Readers check structure (columns, field counts, encodings); tasks check values (labels, scores).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Iterable

from augrl.errors import DataError

Record = dict


def _require_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{what} not found",
            "set AUGRL_DATA or --data-dir to the folder holding the data "
            "(this checkout's data is in ../shared/data), or check the path in your task YAML",
            path,
        )
    return path


class DecodeError(DataError):
    """A file's bytes are not valid in the encoding it is read with.

    Attributes (besides :class:`DataError`'s): ``encoding`` (the one tried), ``byte`` (the
    first bad byte), ``offset`` (its 0-based byte offset in the file), ``column`` (its 1-based
    byte column on ``line``) and ``suggestion`` (an encoding likely to read the file).
    """

    def __init__(self, path: Path, encoding: str, data: bytes, err: UnicodeDecodeError, fix: str | None = None) -> None:
        self.encoding = encoding
        self.offset = err.start
        self.byte = data[err.start]
        self.column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        self.suggestion = guess_encoding(data)
        shown = "utf-8" if encoding.lower().replace("_", "-") == "utf-8-sig" else encoding
        super().__init__(
            f"cannot decode byte {self.byte:#04x} (byte offset {self.offset}, column {self.column}) as {shown}",
            fix or f"save the file as UTF-8, or read it with its real encoding "
                   f"(in a task YAML: `encoding: {self.suggestion}`)",
            path,
            data.count(b"\n", 0, err.start) + 1,
        )


def guess_encoding(data: bytes) -> str:
    """A likely encoding for bytes that are not UTF-8: UTF-16 when they start with its byte-order
    mark, else latin-1 (which decodes any byte, and is right for most Western European files)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return "latin-1"


def _read_text(path: Path, encoding: str) -> str:
    """The decoded text of ``path`` with ``\r\n`` and ``\r`` turned into ``\n`` (as
    ``Path.read_text`` does); a :class:`DecodeError` names the first undecodable byte."""
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise DecodeError(path, encoding, data, err) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_encoding(encoding: object, where: str | Path | None = None) -> str:
    """The codec name ``encoding`` stands for; a DataError when Python knows no such codec.

    UTF-8 is read as ``utf-8-sig`` so that a byte-order mark (Excel writes one) does not end up
    in the first column's name.
    """
    import codecs

    if not isinstance(encoding, str) or not encoding.strip():
        raise DataError(f"encoding {encoding!r} is not an encoding name", "write e.g. `encoding: latin-1`", where)
    try:
        name = codecs.lookup(encoding.strip()).name
    except LookupError:
        raise DataError(
            f"unknown encoding {encoding!r}",
            "use a Python codec name such as utf-8, latin-1, cp1252 or utf-16",
            where,
        ) from None
    return "utf-8-sig" if name == "utf-8" else name


def read_lines(path: str | Path, encoding: str = "utf-8") -> list[Record]:
    """One text per non-empty line (RT's ``rt-polarity.pos/.neg`` are latin-1)."""
    path = _require_file(Path(path), "text file")
    records = []
    # split on "\n" only: str.splitlines() would also break at latin-1's NEL (0x85), which
    # occurs inside RT sentences
    for i, line in enumerate(_read_text(path, encoding).split("\n"), start=1):
        text = line.strip()
        if text:
            records.append({"text": text, "_file": str(path), "_line": i})
    return records


def read_tsv_plain(
    path: str | Path,
    columns: Iterable[str] | None = None,
    header: bool | None = True,
    names: list[str] | None = None,
    encoding: str = "utf-8-sig",
) -> list[Record]:
    """Tab-separated file split on tabs only, with no quote handling.

    GLUE's TSVs contain bare double quotes inside sentences, which a CSV reader would treat as
    field delimiters; splitting on tabs is the faithful reading. ``utf-8-sig`` drops MRPC's
    byte-order mark. With ``header=False`` the column names come from ``names``; with
    ``header=None`` the first line is taken as a header only if it holds every name in
    ``columns`` (``rte/val.tsv`` has no header although ``rte/train.tsv`` has one).

    Raises:
        DataError: missing file, missing required column, or a row with the wrong field count.
    """
    path = _require_file(Path(path), "TSV file")
    lines = [ln.rstrip("\r") for ln in _read_text(path, encoding).split("\n")]
    if header is None:
        first = {c.strip() for c in lines[0].split("\t")} if lines else set()
        header = set(columns or ()) <= first
    if header:
        if not lines:
            raise DataError("the file is empty", "check that the download completed", path, 1)
        names = [c.strip() for c in lines[0].split("\t")]
        body = enumerate(lines[1:], start=2)
    else:
        assert names is not None, "names are required when the file has no header"
        body = enumerate(lines, start=1)
    missing = [c for c in (columns or []) if c not in names]
    if missing:
        raise DataError(
            f"column(s) {missing} not in header {names}",
            "point the task at the right file or rename the columns",
            path,
            1,
        )
    records = []
    for i, line in body:
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(names):
            raise DataError(
                f"expected {len(names)} tab-separated fields, found {len(fields)}",
                "remove stray tabs or newlines inside that row",
                path,
                i,
            )
        rec = {n: f.strip() for n, f in zip(names, fields)}
        rec["_file"], rec["_line"] = str(path), i
        records.append(rec)
    return records


def read_table(path: str | Path, encoding: str = "utf-8-sig") -> list[Record]:
    """Users' tables: ``.csv`` and ``.tsv`` (standard CSV quoting), ``.jsonl`` or ``.json``.

    A ``.json`` file may hold a list of objects; ``.jsonl`` holds one object per line. A table
    with a header but no rows gives ``[]``.

    Raises:
        DataError: missing or empty file, undecodable bytes (:class:`DecodeError`), a header
            naming a column twice, a row with more or fewer fields than the header, invalid JSON.
    """
    path = _require_file(Path(path), "data file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".json"):
        raise DataError(f"unsupported file type {suffix!r}", "use .csv, .tsv, .jsonl or .json", path)
    text = _read_text(path, encoding)
    if not text.strip():
        raise DataError("the file is empty", "write a header line and at least one row into it, or point the task "
                        "at the right file", path)
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, text, "\t" if suffix == ".tsv" else ",")
    if suffix == ".jsonl":
        return _read_jsonl(path, text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON ({err.msg})", "fix the JSON syntax", path, err.lineno) from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError("expected a JSON list of objects", "write [{...}, {...}] or use .jsonl", path)
    return [dict(r, _file=str(path), _line=i) for i, r in enumerate(data, start=1)]


def _read_delimited(path: Path, text: str, delimiter: str) -> list[Record]:
    """CSV/TSV records keyed by the header; every row must have exactly the header's fields.

    Rows are split by the ``csv`` module over the whole text (``newline=""``), so a quoted field
    may hold a line break and latin-1's NEL (0x85) is not taken for one.
    """
    name = "tab" if delimiter == "\t" else "comma"
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long reviews are not an error
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[Record] = []
    header: list[str] | None = None
    start = 1  # first line of the row being read
    try:
        for row in reader:
            first, start = start, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip() and header is not None):
                continue  # blank line
            if header is None:
                header = [c.strip() for c in row]
                twice = sorted({c for c in header if header.count(c) > 1})
                if twice:
                    raise DataError(f"the header names column(s) {twice} more than once",
                                    "give every column its own name", path, first)
                continue
            if len(row) != len(header):
                span = f" (the row runs on to line {reader.line_num}: is a double quote left open?)" \
                    if reader.line_num > first else ""
                fix = (f"quote fields that contain a {name} (\"a{delimiter}b\")" if len(row) > len(header) else
                       f"add the missing field(s); an empty field still needs its {name} (a{delimiter}{delimiter}c)")
                raise DataError(f"row has {_fields(len(row))}, header has {len(header)}{span}", fix, path, first)
            rec: Record = dict(zip(header, row))
            rec["_file"], rec["_line"] = str(path), first
            records.append(rec)
    except csv.Error as err:
        raise DataError(f"unreadable {name}-separated row ({err})", "repair that row", path, reader.line_num) from None
    return records


def _fields(n: int) -> str:
    return f"{n} field{'' if n == 1 else 's'}"


def _read_jsonl(path: Path, text: str) -> list[Record]:
    """One JSON object per line; split on "\n" only (JSON strings may hold U+2028, which
    ``str.splitlines`` would break at)."""
    records = []
    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"invalid JSON ({err.msg})", "write one JSON object per line", path, i) from None
        if not isinstance(rec, dict):
            raise DataError("line is not a JSON object", "write one JSON object per line", path, i)
        rec["_file"], rec["_line"] = str(path), i
        records.append(rec)
    return records


_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)
_FIELD = re.compile(r"<([a-z_]+)>(.*?)</\1>", re.S)
_HELPFUL = re.compile(r"^(\d+)\s+of\s+(\d+)$")


def read_amazon_reviews(path: str | Path) -> list[Record]:
    """Blitzer et al.'s pseudo-XML reviews, parsed by pattern (the files are not valid XML).

    Returns records with ``text`` (the review body), ``title``, ``rating`` (float) and
    ``helpful_yes`` / ``helpful_total`` (ints, or None where the field is empty).
    Undecodable bytes are kept as U+FFFD, as in the original files.
    """
    path = _require_file(Path(path), "Amazon review file")
    raw = path.read_text(encoding="utf-8", errors="replace")
    records = []
    line, pos = 1, 0
    for match in _REVIEW.finditer(raw):
        line += raw.count("\n", pos, match.start())
        pos = match.start()
        fields = {k: v.strip() for k, v in _FIELD.findall(match.group(1))}
        text = fields.get("review_text", "")
        if not text:
            raise DataError("review has no <review_text>", "repair or remove that record", path, line)
        try:
            rating = float(fields["rating"])
        except (KeyError, ValueError):
            raise DataError("review has no numeric <rating>", "repair or remove that record", path, line) from None
        helpful = _HELPFUL.match(fields.get("helpful", ""))
        records.append(
            {
                "text": " ".join(text.split()),
                "title": fields.get("title", ""),
                "rating": rating,
                "helpful_yes": int(helpful.group(1)) if helpful else None,
                "helpful_total": int(helpful.group(2)) if helpful else None,
                "_file": str(path),
                "_line": line,
            }
        )
    if not records:
        raise DataError("no <review> records found", "check that this is a Blitzer et al. .review file", path)
    return records
