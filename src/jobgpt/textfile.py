"""Reading a file safely as UTF-8 text: the layer under every text-like input format.

`jobgpt.corpus` splits files into documents; this module only turns a file's bytes into text.
It reads in blocks of whole lines (`text_blocks`, `read_lines`), so a 1 GB file never sits in
memory whole, or all at once (`read_all_text`) where a format cannot be streamed. A leading
UTF-8 BOM is dropped, "\\r\\n" is kept, and nothing is normalised.

Bad bytes are refused, not replaced: a NUL byte (a binary file), UTF-16, or invalid UTF-8 raises
an `InputError` naming the file, the byte offset and line, and the fix that suits the file: for
CP949/EUC-KR (the usual Korean Windows encoding) an ``iconv`` conversion to paste, for a stray bad
byte in a UTF-8 file the byte and a command that drops it. `check_looks_like_text` decides
whether a file with an unknown extension is text at all.
"""

from __future__ import annotations

import codecs
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from jobgpt.errors import InputError
from jobgpt.inputs import FORMATS_HINT

_BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20  # bytes read and decoded at a time
# Invalid UTF-8 is judged on the file's first bytes: a CP949 file fails there on every Korean
# character, a UTF-8 file with a stray byte hardly at all (and its bad line has only a few).
_HEAD = 1 << 16
_STRAY_PER_LINE = 3


def text_blocks(path: Path) -> Iterator[str]:
    """A UTF-8 file's text in blocks of whole lines (about `_CHUNK` bytes), in bounded memory.

    Decoding a block at once is much faster than line by line, and an error still knows its
    exact byte offset and line. A leading UTF-8 BOM is dropped; "\\r\\n" is kept.
    """
    offset, line = 0, 1
    with path.open("rb") as f:
        for i, block in enumerate(_blocks(f)):
            if i == 0:
                block, offset = _skip_bom(path, block)
            yield _decode(path, block, offset, line)
            offset += len(block)
            line += block.count(b"\n")


def _blocks(f: BinaryIO) -> Iterator[bytes]:
    """Blocks of a binary file, each ending with a newline (except perhaps the last)."""
    rest: list[bytes] = []  # a line longer than a block, in pieces (never re-copied)
    while block := f.read(_CHUNK):
        cut = block.rfind(b"\n") + 1
        if not cut:
            rest.append(block)
            continue
        yield b"".join([*rest, block[:cut]])
        rest = [block[cut:]]
    if tail := b"".join(rest):
        yield tail


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line with its "\\n") of a UTF-8 file; lines end at "\\n" only."""
    number = 1
    for text in text_blocks(path):
        *lines, tail = text.split("\n")  # tail is "" when the block ends with a newline
        for line in lines:
            yield number, line + "\n"
            number += 1
        if tail:
            yield number, tail
            number += 1


def read_all_text(path: Path) -> str:
    """The whole file as text, with the same checks as `text_blocks` (for formats that cannot be
    streamed, such as a JSON array; the caller bounds the size)."""
    body, offset = _skip_bom(path, path.read_bytes())
    return _decode(path, body, offset, 1)


def _skip_bom(path: Path, head: bytes) -> tuple[bytes, int]:
    """The file's first bytes less a UTF-8 BOM, and how many bytes were skipped."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{path} is UTF-16 text", "re-save it as UTF-8 (any editor's 'Save as')")
    return (head[len(_BOM) :], len(_BOM)) if head.startswith(_BOM) else (head, 0)


def _decode(path: Path, data: bytes, offset: int, line: int) -> str:
    """``data`` (found at byte ``offset``, line ``line`` of ``path``) as text, or an InputError."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise _binary_error(path, offset + nul)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        start = data.rfind(b"\n", 0, err.start) + 1
        end = data.find(b"\n", err.start)
        bad_line = data[start : end if end >= 0 else len(data)]
        line += data.count(b"\n", 0, err.start)
        where = f"byte offset {offset + err.start:,} (line {line})"
        raise _utf8_error(path, where, bad_line, err.start - start) from None


def _binary_error(path: Path, offset: int) -> InputError:
    return InputError(
        f"{path} looks like a binary file, not text (NUL byte at byte offset {offset:,})",
        f"leave it out of --input; {FORMATS_HINT}",
    )


def _utf8_error(path: Path, where: str, line: bytes, column: int) -> InputError:
    """The error for invalid UTF-8 at ``where``, in ``line`` at byte ``column``, with the fix
    that suits the file: converting a CP949 file, or dropping a stray byte from a UTF-8 one
    (converting that from CP949 would garble every line)."""
    # The path as the user gave it (relative to where they ran jobgpt), so a command works when
    # pasted into the same shell; the converted copy goes beside the original.
    src = shlex.quote(str(path))
    kind = _guess_encoding(path, line)
    if kind == "cp949":
        dst = shlex.quote(str(path.with_name(f"{path.stem}.utf8{path.suffix}")))
        return InputError(
            f"{path} is not valid UTF-8: {where}. It looks like CP949/EUC-KR (common for Korean "
            "Windows files).",
            f"re-save the file as UTF-8, e.g. `iconv -f cp949 -t utf-8 {src} > {dst}`, then use "
            f"{dst} in place of the original",
        )
    if kind == "stray":
        bad = line[column : column + 1].hex().upper()
        before = line[:column].decode("utf-8", "replace")[-30:].lstrip()
        context = f"after {before!r}" if before else "at the start of the line"
        dst = shlex.quote(str(path.with_name(f"{path.stem}.fixed{path.suffix}")))
        return InputError(
            f"{path} is not valid UTF-8: {where} holds the byte 0x{bad} ({context}) in "
            "text that is otherwise UTF-8",
            f"fix or delete that byte in an editor, or run `iconv -f utf-8 -t utf-8 -c {src} > "
            f"{dst}` (it drops every invalid byte and keeps the rest), then use {dst} in place of "
            "the original",
        )
    return InputError(
        f"{path} is not valid UTF-8: {where}, and not CP949/EUC-KR either",
        "re-save it as UTF-8 from the program that wrote it, or convert it with `iconv -f "
        f"ENCODING -t utf-8 {src} > NEW_FILE` once you know its encoding "
        f"(`file --mime-encoding {src}` guesses)",
    )


def _guess_encoding(path: Path, line: bytes) -> str:
    """'cp949' when the file's head is CP949 and not UTF-8 (a legacy Korean file); 'stray' when
    the head and the bad line are UTF-8 but for a few bytes; '' when neither fits."""
    with path.open("rb") as f:
        head = f.read(_HEAD)
    if not _decodes(head, "utf-8") and _decodes(head, "cp949"):
        return "cp949"
    few = max(_STRAY_PER_LINE, len(head) // 100)  # a short file may have a bad byte or two
    if _invalid_utf8(head) <= few and _invalid_utf8(line) <= _STRAY_PER_LINE:
        return "stray"
    return ""


def _decodes(data: bytes, encoding: str) -> bool:
    """Whether ``data`` decodes (a character cut at its end, where the head was cut, aside)."""
    try:
        codecs.getincrementaldecoder(encoding)().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _invalid_utf8(data: bytes) -> int:
    """How many invalid UTF-8 sequences ``data`` holds (a character cut at its end aside)."""
    return (
        codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=False).count("\ufffd")
    )


def check_looks_like_text(path: Path) -> None:
    """An unknown extension is read as text only if its first 8 KB look like UTF-8 text."""
    with path.open("rb") as f:
        head = f.read(8192)
    problem = "NUL bytes" if b"\0" in head else ""
    if not problem:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as err:
            if err.start < len(head) - 3:  # not just a character cut at the 8 KB boundary
                problem = f"invalid UTF-8 at byte offset {err.start:,}"
    if problem:
        raise InputError(
            f"{path}: unknown format {path.suffix or '(no extension)'!r} and not text ({problem})",
            f"leave it out of --input; {FORMATS_HINT}",
        )


__all__ = [
    "check_looks_like_text",
    "read_all_text",
    "read_lines",
    "text_blocks",
]
