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
(blocks of whole lines, the BOM, UTF-8 and binary checks) is `jobgpt.textfile`'s job, and reading
structured records `jobgpt.records`'s; this module picks the reader for each file and cuts plain
text into documents.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from jobgpt.errors import InputError
from jobgpt.inputs import (
    CSV_SUFFIXES,
    JSON_SUFFIXES,
    JSONL_SUFFIXES,
    TEXT_SUFFIXES,
    resolve_inputs,
)
from jobgpt.postings import RECORD_KEYS_HINT
from jobgpt.qa import ANSWER_END, is_qa_format, split_qa_blocks
from jobgpt.qa import EOT as END_OF_TEXT  # the document separator, defined once
from jobgpt.records import Document, FileStats, read_csv, read_json, read_jsonl
from jobgpt.textfile import check_looks_like_text, text_blocks

logger = logging.getLogger(__name__)

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
        stats = FileStats()
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


def _bounded(doc: Document, stats: FileStats) -> Iterator[Document]:
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


def _read_file(path: Path, stats: FileStats) -> Iterator[Document]:
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty", "add text to it or leave it out of --input")
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return read_jsonl(path, stats)
    if suffix in JSON_SUFFIXES:
        return read_json(path, stats)
    if suffix in CSV_SUFFIXES:
        return read_csv(path, stats)
    if suffix not in TEXT_SUFFIXES:
        check_looks_like_text(path)
    return _read_text(path, stats)


def _log_file(path: Path, count: int, stats: FileStats) -> None:
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


def _no_documents(path: Path, stats: FileStats) -> InputError:
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


def _read_text(path: Path, stats: FileStats) -> Iterator[Document]:
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


def _split_qa_stream(path: Path, stats: FileStats) -> Iterator[Document]:
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


def _qa_documents(text: str, path: Path, line: int, stats: FileStats) -> Iterator[Document]:
    pos = 0
    for example in split_qa_blocks(text):
        at = text.index(example, pos)
        _count_ignored(text[pos:at], line, stats)
        line += text.count("\n", pos, at)
        yield Document(example, f"{path}:{line}")
        line += example.count("\n")
        pos = at + len(example)
    _count_ignored(text[pos:], line, stats)


def _count_ignored(gap: str, line: int, stats: FileStats) -> None:
    """Text between examples is dropped; count it (separators aside) so the log can say so."""
    chars = sum(not c.isspace() for c in gap.replace(END_OF_TEXT, ""))
    if chars:
        stats.ignored_chars += chars
        stats.first_ignored_line = stats.first_ignored_line or line


__all__ = [
    "END_OF_TEXT",
    "Document",
    "iter_documents",
    "read_documents",
]
