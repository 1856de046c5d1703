"""Structured records (.jsonl, .json, .csv) as documents: one document per record.

A record is its ``text`` field if it has one, otherwise the job posting rendered with the one
Korean template of `jobgpt.postings.record_text`; a record with neither is skipped and counted,
and a file whose records are all skipped is an error `jobgpt.corpus` raises. Every malformed
file raises an `InputError` naming the file, the line (or element) and the fix.

`Document` and `FileStats` live here, below `jobgpt.corpus`, which reads the plain-text files,
picks the reader for each file and re-exports `Document`.
"""

from __future__ import annotations

import csv
import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from jobgpt.errors import InputError
from jobgpt.postings import record_text
from jobgpt.textfile import read_all_text, read_lines

# A .json file is parsed whole (a list cannot be streamed with the standard library), which takes
# several times its size in memory; past this, .jsonl (read line by line) is the right format.
MAX_JSON_BYTES = 512 * 1024 * 1024


class Document(NamedTuple):
    text: str
    source: str  # "path:line" (or "path[i]" for an element of a JSON array), for messages


@dataclass
class FileStats:
    """What reading one file found, for its one log line and its errors."""

    rule: str = ""
    skipped: int = 0
    first_skipped: str = ""  # where the first skipped record was and what keys it had
    first_skipped_kind: str = ""  # what it was instead, if not an object ("a JSON array")
    ignored_chars: int = 0  # non-space characters outside QA examples
    first_ignored_line: int = 0
    cut_documents: int = 0  # longer than corpus.MAX_DOCUMENT_CHARS, so cut into pieces


def read_jsonl(path: Path, stats: FileStats) -> Iterator[Document]:
    stats.rule = "one record per JSON line"
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(
                f"{path} line {number} is not valid JSON: {err.msg} (column {err.colno})",
                "fix or delete that line: each line of a .jsonl file must be one JSON object",
            ) from None
        if not isinstance(record, dict | str):  # a string is a document; anything else is wrong
            raise _not_an_object(path, number, record)
        yield from _record_document(record, f"{path}:{number}", stats)


def _not_an_object(path: Path, number: int, value: Any) -> InputError:
    hint = 'make that line one object such as {"text": "..."}, or delete it'
    if isinstance(value, list):  # often a whole JSON array file given the .jsonl name
        new = shlex.quote(str(path.with_suffix(".json")))
        hint += (
            f"; if the whole file is one JSON array of records, `mv {shlex.quote(str(path))} "
            f"{new}` and pass {new} to --input (a .json array is read one record per element)"
        )
    return InputError(
        f"{path} line {number} holds {_json_kind(value)}, not an object: a .jsonl file has one "
        "JSON object per line",
        hint,
    )


def _json_kind(value: Any) -> str:
    """How a JSON value that is not a usable record is named: "a JSON array", ..."""
    names = {list: "array", str: "string (empty)", bool: "true/false", type(None): "null"}
    return f"a JSON {names.get(type(value), 'number')}"


def read_json(path: Path, stats: FileStats) -> Iterator[Document]:
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise InputError(
            f"{path} is {size / 2**20:,.0f} MB of JSON, too large to parse at once",
            "convert it to JSON Lines, one record per line: jq -c '.[]' "
            f"{shlex.quote(str(path))} > {shlex.quote(str(path.with_suffix('.jsonl')))}",
        )
    text = read_all_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path} is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})",
            "fix the file (a JSON array of objects, or an object holding one), "
            "or use .jsonl with one object per line",
        ) from None
    stats.rule, records = _json_records(data, path)
    for i, record in enumerate(records):
        yield from _record_document(record, f"{path}[{i}]", stats)


def _json_records(data: Any, path: Path) -> tuple[str, list[Any]]:
    """(how the records were found, the records) of a .json file: the array itself, the longest
    list of objects held by a top-level object (``{"data": [...]}``), or the object itself when
    it is one posting."""
    if isinstance(data, list):
        return "one record per JSON array element", data
    if isinstance(data, dict):
        if record_text(data):
            return "one JSON posting", [data]
        lists = [
            (key, value)
            for key, value in data.items()
            if isinstance(value, list) and any(isinstance(v, dict | str) for v in value)
        ]
        if lists:
            key, records = max(lists, key=lambda kv: len(kv[1]))
            return f"one record per element of {key!r}", records
    raise InputError(
        f"{path} holds no list of records (top level is a {type(data).__name__})",
        "give it a JSON array of objects, each with a 'text' field or job-posting fields",
    )


def read_csv(path: Path, stats: FileStats) -> Iterator[Document]:
    stats.rule = "one record per CSV row"
    # Posting texts are long; the csv module's default 128 KB field limit is too small for some.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    reader = csv.DictReader(line for _, line in read_lines(path))
    try:
        for row in reader:
            record = {k: v for k, v in row.items() if isinstance(k, str)}
            yield from _record_document(record, f"{path}:{reader.line_num}", stats)
    except csv.Error as err:
        raise InputError(
            f"{path} line {reader.line_num} is not valid CSV: {err}",
            "check the quoting on that line (a field with commas or newlines must be quoted)",
        ) from None


def _record_document(record: Any, source: str, stats: FileStats) -> Iterator[Document]:
    text = record.strip() if isinstance(record, str) else record_text(record)
    if text:
        yield Document(text, source)
        return
    stats.skipped += 1
    if stats.first_skipped:
        return
    if isinstance(record, dict):
        stats.first_skipped = f"at {source}, keys: {', '.join(list(record)[:8]) or 'none'}"
    else:  # an array or number among the records: say so, not "keys: list"
        stats.first_skipped_kind = _json_kind(record)
        stats.first_skipped = f"{source} is {stats.first_skipped_kind}, not an object"
