"""Reading documents out of the input files: the first step of every stage that reads a corpus.

Which files are read is `jobgpt.inputs`'s job (`resolve_inputs`); `iter_documents` streams
`Document`s out of them file by file, so a 1 GB corpus never sits in memory whole. What a
document is depends on the file:

- text (.txt, .md, or any other file that is UTF-8 text): one document per
  ``[QUESTION]…[/ANSWER]`` example when the file is in the training format (`jobgpt.qa`);
  otherwise documents are separated by lines holding only ``<|endoftext|>`` if there are any,
  else by runs of two or more blank lines.
- .jsonl / .json / .csv: one document per record, its ``text`` field if it has one, otherwise the
  job posting rendered with the one Korean template of `render_posting`.

Text is kept lossless: no Unicode normalisation (NFKC would turn the bullet ``ㆍ`` into ``·``),
newlines and ``\\r\\n`` kept, only whitespace around a document or field stripped. Every bad input
raises an `InputError` naming the file (and line or byte) and the fix. Turning bytes into text
(blocks of whole lines, the BOM, UTF-8 and binary checks) is `jobgpt.textfile`'s job; this module
cuts that text into documents.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from jobgpt.errors import InputError
from jobgpt.inputs import (
    CSV_SUFFIXES,
    JSON_SUFFIXES,
    JSONL_SUFFIXES,
    TEXT_SUFFIXES,
    resolve_inputs,
)
from jobgpt.postings import RECORD_KEYS_HINT, record_text
from jobgpt.qa import ANSWER_END, is_qa_format, split_qa_blocks
from jobgpt.qa import EOT as END_OF_TEXT  # the document separator, defined once
from jobgpt.textfile import check_looks_like_text, read_all_text, read_lines, text_blocks

logger = logging.getLogger(__name__)

# A .json file is parsed whole (a list cannot be streamed with the standard library), which takes
# several times its size in memory; past this, .jsonl (read line by line) is the right format.
MAX_JSON_BYTES = 512 * 1024 * 1024
# A posting is a few thousand characters. Longer documents (a file with no separators between
# its postings, one 50 MB line) are cut into pieces of at most this many: a single 50 MB text
# took 6-7 GB in the tokenizer trainer and encoder.
MAX_DOCUMENT_CHARS = 100_000
FILES_LOGGED = 10  # one line each for the first files; a directory of 2,000 gets a summary
# How to make several documents of what was read as one (stages that need several say this).
SEPARATE_POSTINGS = (
    "separate the postings: in a .txt file put 2+ blank lines or a line holding only "
    f"{END_OF_TEXT} between them (one posting per line with no blank lines is read as ONE "
    'document), or use a .jsonl file with one JSON object per line, e.g. {"text": "..."}'
)


class Document(NamedTuple):
    text: str
    source: str  # "path:line" (or "path[i]" for an element of a JSON array), for messages


@dataclass
class _FileStats:
    """What reading one file found, for its one log line and its errors."""

    rule: str = ""
    skipped: int = 0
    first_skipped: str = ""  # where the first skipped record was and what keys it had
    first_skipped_kind: str = ""  # what it was instead, if not an object ("a JSON array")
    ignored_chars: int = 0  # non-space characters outside QA examples
    first_ignored_line: int = 0
    cut_documents: int = 0  # longer than MAX_DOCUMENT_CHARS, so cut into pieces


def iter_documents(patterns: Sequence[str]) -> Iterator[Document]:
    """Stream the documents of all inputs: `read_documents` of `resolve_inputs`."""
    return read_documents(resolve_inputs(patterns))


def read_documents(paths: Sequence[Path]) -> Iterator[Document]:
    """Stream the documents of ``paths`` (as `resolve_inputs` gives them), file by file.

    A document longer than MAX_DOCUMENT_CHARS is cut into pieces at line breaks (or spaces),
    so one huge document (a file with no separators) costs bounded memory in every later stage.
    Logs one line per file (for the first few files: how it was split) and a summary. Raises
    InputError for a file that is not UTF-8 text, malformed JSON, or a file with no document.
    """
    total = skipped = 0
    for number, path in enumerate(paths):
        stats = _FileStats()
        count = 0
        for doc in _read_file(path, stats):
            for piece in _bounded(doc, stats):
                count += 1
                yield piece
        if count == 0:
            raise _no_documents(path, stats)
        if number < FILES_LOGGED:
            _log_file(path, count, stats)
        total += count
        skipped += stats.skipped
    note = f", {skipped:,} records skipped" if skipped else ""
    if len(paths) > FILES_LOGGED:
        note += f" (the first {FILES_LOGGED} files are listed above)"
    logger.info("read %s documents from %s file(s)%s", f"{total:,}", len(paths), note)


def _bounded(doc: Document, stats: _FileStats) -> Iterator[Document]:
    """``doc``, or its pieces of at most MAX_DOCUMENT_CHARS, cut at a line break (else a space)
    in the second half of the limit, so that a piece holds whole lines where it can. Cut by
    index: the rest of a long text is never copied again for each piece."""
    text, limit = doc.text, MAX_DOCUMENT_CHARS
    if len(text) <= limit:
        yield doc
        return
    stats.cut_documents += 1
    start = 0
    while len(text) - start > limit:
        end = start + limit
        cut = text.rfind("\n", start + limit // 2, end)
        cut = cut if cut > start else text.rfind(" ", start + limit // 2, end)
        cut = cut if cut > start else end
        if piece := text[start:cut].strip():
            yield Document(piece, doc.source)
        start = cut
    if piece := text[start:].strip():
        yield Document(piece, doc.source)


def _read_file(path: Path, stats: _FileStats) -> Iterator[Document]:
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty", "add text to it or leave it out of --input")
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path, stats)
    if suffix in JSON_SUFFIXES:
        return _read_json(path, stats)
    if suffix in CSV_SUFFIXES:
        return _read_csv(path, stats)
    if suffix not in TEXT_SUFFIXES:
        check_looks_like_text(path)
    return _read_text(path, stats)


def _log_file(path: Path, count: int, stats: _FileStats) -> None:
    extra = ""
    if stats.skipped:
        extra += f"; skipped {stats.skipped:,} records with no usable field ({stats.first_skipped})"
    if stats.ignored_chars:
        extra += (
            f"; ignored {stats.ignored_chars:,} characters outside [QUESTION]…[/ANSWER] "
            f"(from line {stats.first_ignored_line})"
        )
    if stats.cut_documents:
        extra += (
            f"; {stats.cut_documents:,} documents longer than {MAX_DOCUMENT_CHARS:,} characters "
            "were cut into pieces at line breaks (separate postings with 2+ blank lines or an "
            f"{END_OF_TEXT} line)"
        )
    logger.info("%s: %s documents (%s)%s", path, f"{count:,}", stats.rule, extra)


def _no_documents(path: Path, stats: _FileStats) -> InputError:
    if stats.skipped:
        kind = stats.first_skipped_kind
        hint = f"make each record a JSON object, not {kind}, then {RECORD_KEYS_HINT}"
        return InputError(
            f"{path} has no usable record: all {stats.skipped:,} were skipped "
            f"(first {stats.first_skipped})",
            hint if kind else RECORD_KEYS_HINT,
        )
    return InputError(
        f"{path} holds no document (only whitespace or separators)",
        "add text to it or leave it out of --input",
    )


# --- plain text

# A line holding only <|endoftext|> (spaces around it allowed).
_EOT_LINE = re.compile(r"^[^\S\n]*" + re.escape(END_OF_TEXT) + r"[^\S\n]*$", re.MULTILINE)
# The end of a line, then two or more blank (whitespace-only) lines.
_BLANK_RUN = re.compile(r"\n(?:[^\S\n]*\n){2,}")


def _read_text(path: Path, stats: _FileStats) -> Iterator[Document]:
    rule = _detect_text_rule(path)
    if rule == "qa":
        stats.rule = "QA examples [QUESTION]…[/ANSWER]"
        yield from _split_qa_stream(path, stats)
    elif rule == "eot":
        stats.rule = f"split at {END_OF_TEXT} lines"
        yield from _split_stream(path, _EOT_LINE)
    else:
        stats.rule = "split at 2+ blank lines"
        yield from _split_stream(path, _BLANK_RUN)


def _detect_text_rule(path: Path) -> str:
    """'qa' if the file starts with [QUESTION], else 'eot' if any line is <|endoftext|>, else
    'blank'. Stops reading at the first block that decides."""
    seen_text = False
    for text in text_blocks(path):
        if not seen_text and text.strip():
            if is_qa_format(text):
                return "qa"
            seen_text = True
        if _EOT_LINE.search(text):
            return "eot"
    return "blank"


def _split_stream(path: Path, separator: re.Pattern[str]) -> Iterator[Document]:
    """The documents between ``separator`` matches, found block by block.

    The document being read is kept in pieces and joined once, so a long one (or a file with no
    separator at all) costs linear time; only its trailing whitespace is carried into the next
    block, where a separator that started there can be found.
    """
    pieces: list[str] = []  # the document being read
    line = 1  # the line its first piece starts on
    for block in text_blocks(path):
        text = block
        if pieces:
            last = pieces.pop()
            keep = len(last.rstrip())
            pieces.append(last[:keep])
            text = last[keep:] + block
        pos = 0
        for match in separator.finditer(text):
            pieces.append(text[pos : match.start()])
            doc = "".join(pieces)
            yield from _document(doc, path, line)
            line += doc.count("\n") + match.group().count("\n")
            pieces, pos = [], match.end()
        pieces.append(text[pos:])
    yield from _document("".join(pieces), path, line)


def _document(text: str, path: Path, line: int) -> Iterator[Document]:
    """``text`` (starting on ``line``) less leading blank lines and trailing space, if not empty."""
    body = text.lstrip()
    if body:
        start = text.rfind("\n", 0, len(text) - len(body)) + 1  # keep the first line's indent
        yield Document(text[start:].rstrip(), f"{path}:{line + text.count(chr(10), 0, start)}")


def _split_qa_stream(path: Path, stats: _FileStats) -> Iterator[Document]:
    """Cut examples out block by block; only text after the last complete example is kept.

    Markers never span blocks (blocks end at line ends), so a block without ``[/ANSWER]`` just
    joins the kept pieces.
    """
    pieces: list[str] = []
    line = 1  # the line the kept text starts on
    for block in text_blocks(path):
        cut = block.rfind(ANSWER_END)
        if cut < 0:
            pieces.append(block)
            continue
        cut += len(ANSWER_END)
        text = "".join([*pieces, block[:cut]])
        yield from _qa_documents(text, path, line, stats)
        line += text.count("\n")
        pieces = [block[cut:]]
    _count_ignored("".join(pieces), line, stats)


def _qa_documents(text: str, path: Path, line: int, stats: _FileStats) -> Iterator[Document]:
    pos = 0
    for example in split_qa_blocks(text):
        at = text.index(example, pos)
        _count_ignored(text[pos:at], line, stats)
        line += text.count("\n", pos, at)
        yield Document(example, f"{path}:{line}")
        line += example.count("\n")
        pos = at + len(example)
    _count_ignored(text[pos:], line, stats)


def _count_ignored(gap: str, line: int, stats: _FileStats) -> None:
    """Text between examples is dropped; count it (separators aside) so the log can say so."""
    chars = sum(not c.isspace() for c in gap.replace(END_OF_TEXT, ""))
    if chars:
        stats.ignored_chars += chars
        stats.first_ignored_line = stats.first_ignored_line or line


# --- structured records


def _read_jsonl(path: Path, stats: _FileStats) -> Iterator[Document]:
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


def _read_json(path: Path, stats: _FileStats) -> Iterator[Document]:
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


def _read_csv(path: Path, stats: _FileStats) -> Iterator[Document]:
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


def _record_document(record: Any, source: str, stats: _FileStats) -> Iterator[Document]:
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


__all__ = [
    "END_OF_TEXT",
    "Document",
    "iter_documents",
    "read_documents",
]
