"""Reading a file safely as text, directly (the documents made of it: test_corpus.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from jobgpt.errors import InputError
from jobgpt.textfile import check_looks_like_text, read_all_text, read_lines, text_blocks

# A CRLF line, an empty one, one longer than the small read sizes, and no final newline.
BODY = "가나다\r\n\n" + "긴 줄 " * 40 + "\n끝"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("chunk", [1, 3, 7, 1 << 20])
def test_blocks_are_whole_lines_whatever_the_read_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """A block never cuts a line (or a character), so callers can split blocks on their own."""
    monkeypatch.setattr("jobgpt.textfile._CHUNK", chunk)
    path = write(tmp_path, "a.txt", b"\xef\xbb\xbf" + BODY.encode())
    blocks = list(text_blocks(path))
    assert "".join(blocks) == BODY  # the BOM is dropped, "\r\n" kept
    assert all(b.endswith("\n") for b in blocks[:-1])
    assert list(read_lines(path)) == [
        (1, "가나다\r\n"),
        (2, "\n"),
        (3, "긴 줄 " * 40 + "\n"),
        (4, "끝"),
    ]


def test_read_all_text_applies_the_same_checks(tmp_path: Path) -> None:
    assert read_all_text(write(tmp_path, "a.json", b"\xef\xbb\xbf[1]")) == "[1]"
    with pytest.raises(InputError, match=r"byte offset 5 \(line 2\)"):
        read_all_text(write(tmp_path, "b.json", b"\xef\xbb\xbf[\n\xff]"))  # offset counts the BOM


@pytest.mark.parametrize("chunk", [2, 1 << 20])
def test_errors_give_the_file_offset_and_line_whatever_the_read_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr("jobgpt.textfile._CHUNK", chunk)
    bad = write(tmp_path, "bad.txt", b"ok\n\xea\xb0\x80\n\xea\xb0 x\n")
    with pytest.raises(InputError, match=r"bad\.txt is not valid UTF-8: byte offset 7 \(line 3\)"):
        list(text_blocks(bad))
    binary = write(tmp_path, "bin.txt", b"line\nab\0c\n")
    with pytest.raises(InputError, match=r"binary file.*byte offset 7"):
        list(read_lines(binary))
    with pytest.raises(InputError, match="UTF-16"):
        list(text_blocks(write(tmp_path, "u16.txt", "채용".encode("utf-16"))))


def test_cp949_line_gets_a_guess_and_a_pasteable_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "k.txt", "채용 공고\n".encode("cp949"))
    with pytest.raises(InputError) as info:
        list(text_blocks(path))
    assert "CP949" in info.value.message
    assert f"iconv -f cp949 -t utf-8 {path} > {tmp_path / 'k.utf8.txt'}" in info.value.hint


def test_a_stray_bad_byte_in_a_utf8_file_is_named_not_called_cp949(tmp_path: Path) -> None:
    """One bad byte in a UTF-8 Korean file: converting it from CP949 would garble every line."""
    half = "채용 공고: 백엔드 개발자\n" * 20
    path = write(tmp_path, "s.txt", half.encode() + b"\xff" + half.encode())
    with pytest.raises(InputError) as info:
        list(text_blocks(path))
    message, hint = info.value.message, info.value.hint or ""
    assert f"byte offset {len(half.encode()):,} (line 21)" in message and "0xFF" in message
    assert "CP949" not in message and "cp949" not in hint
    fixed = tmp_path / "s.fixed.txt"
    command = f"iconv -f utf-8 -t utf-8 -c {path} > {fixed}"
    assert f"`{command}`" in hint and "drops" in hint
    if shutil.which("iconv"):  # the command works as printed: only the bad byte goes
        subprocess.run(command, shell=True, check=False)
        assert read_all_text(fixed) == half + half


def test_unknown_extension_is_text_only_if_its_head_decodes(tmp_path: Path) -> None:
    # A character cut by the 8 KB look-ahead is not an error; a bad byte before it is.
    check_looks_like_text(write(tmp_path, "a.log", b"a" * 8191 + "가".encode()))
    for name, data in (("b.dat", b"\x01\0"), ("c.dat", b"\xff" + b"a" * 100)):
        with pytest.raises(InputError, match="unknown format '.dat' and not text"):
            check_looks_like_text(write(tmp_path, name, data))
