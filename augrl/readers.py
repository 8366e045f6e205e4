"""Readers for the original file formats in ``../shared/data`` and for users' CSV/TSV/JSONL.

Every reader returns a list of plain dict records; each record carries ``_file`` and ``_line``
(1-based line of the record's start) so that later validation can point at the exact place.
Readers check structure (columns, field counts, encodings); tasks check values (labels, scores).
"""

from __future__ import annotations

import csv
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


def _read_text(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(
            f"cannot decode byte {err.object[err.start]:#x} as {encoding}",
            f"save the file as {encoding}, or declare its encoding in the task",
            path,
            line,
        ) from None


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

    A ``.json`` file may hold a list of objects; ``.jsonl`` holds one object per line.
    """
    path = _require_file(Path(path), "data file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        text = _read_text(path, encoding)
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        records = []
        for rec in reader:
            if None in rec:  # more fields than header names
                raise DataError(
                    f"row has more fields than the header's {len(reader.fieldnames or [])}",
                    "quote fields that contain the delimiter",
                    path,
                    reader.line_num,
                )
            rec = dict(rec)
            rec["_file"], rec["_line"] = str(path), reader.line_num
            records.append(rec)
        return records
    if suffix == ".jsonl":
        records = []
        for i, line in enumerate(_read_text(path, encoding).splitlines(), start=1):
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
    if suffix == ".json":
        try:
            data = json.loads(_read_text(path, encoding))
        except json.JSONDecodeError as err:
            raise DataError(f"invalid JSON ({err.msg})", "fix the JSON syntax", path, err.lineno) from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError("expected a JSON list of objects", "write [{...}, {...}] or use .jsonl", path)
        return [dict(r, _file=str(path), _line=i) for i, r in enumerate(data, start=1)]
    raise DataError(
        f"unsupported file type {suffix!r}",
        "use .csv, .tsv, .jsonl or .json",
        path,
    )


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
