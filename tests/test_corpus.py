"""Reading files into documents: every format, and every bad file's message (finding the files:
test_inputs.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import error_for, texts, write

from jobgpt.corpus import MAX_DOCUMENT_CHARS, Document, iter_documents
from jobgpt.postings import record_text, render_posting
from jobgpt.qa import (
    QA_MARKERS,
    build_qa_prompt,
    format_qa_document,
    is_qa_format,
    parse_qa_document,
    split_qa_blocks,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# --- the QA format ----------------------------------------------------------------------------

EXAMPLES = [
    (
        "이 구인 정보를 요약해줘.",
        "=== [한빛소프트] 백엔드 개발자 채용 ===\n\n회사명: 한빛소프트",
        "요약:\n- 회사: 한빛소프트",
    ),
    (
        "지원 자격 알려줘.",
        "자격 요건:\nㆍPython 3년 이상\n\n우대: AWS",
        "지원 자격:\n- Python 3년 이상",
    ),
    ("연락처?", "EMAIL: hr@example.kr", "연락처(공공정보):\n- EMAIL: hr@example.kr"),
]


def test_qa_format_matches_the_reference_layout() -> None:
    text = format_qa_document("질문", "문서", "답변")
    assert (
        text == "[QUESTION]\n질문\n[/QUESTION]\n\n[DOC]\n문서\n[/DOC]\n\n[ANSWER]\n답변\n[/ANSWER]"
    )
    assert QA_MARKERS == ("[QUESTION]", "[/QUESTION]", "[DOC]", "[/DOC]", "[ANSWER]", "[/ANSWER]")


@pytest.mark.parametrize(("question", "doc", "answer"), EXAMPLES)
def test_prompt_is_a_prefix_of_the_training_example(question: str, doc: str, answer: str) -> None:
    prompt = build_qa_prompt(question, doc)
    assert format_qa_document(question, doc, answer).startswith(prompt)
    assert prompt.endswith("[ANSWER]\n")
    # a doc read from a file (trailing newline) still gives the training-time prefix
    assert build_qa_prompt(question, doc + "\n") == prompt


@pytest.mark.parametrize(("question", "doc", "answer"), EXAMPLES)
def test_qa_document_parses_back(question: str, doc: str, answer: str) -> None:
    assert parse_qa_document(format_qa_document(question, doc, answer)) == (question, doc, answer)


def test_parse_rejects_an_incomplete_example() -> None:
    with pytest.raises(ValueError, match=r"\[/ANSWER\]"):
        parse_qa_document("[QUESTION]\nq\n[/QUESTION]\n\n[DOC]\nd\n[/DOC]\n\n[ANSWER]\na")


def test_split_keeps_examples_verbatim_and_skips_a_broken_one() -> None:
    good = [format_qa_document(*e) for e in EXAMPLES]
    broken = "[QUESTION]\n끊긴 예제\n[/QUESTION]\n\n[DOC]\n..."
    text = good[0] + "\n\n" + broken + "\n\n" + good[1] + "\n\n" + good[2].replace("\n", "\r\n")
    assert split_qa_blocks(text) == [good[0], good[1], good[2].replace("\n", "\r\n")]
    assert is_qa_format("\ufeff\n\n" + text)
    assert not is_qa_format("=== 채용 공고 ===\n[QUESTION]")


# --- text files -------------------------------------------------------------------------------


def test_qa_text_file_gives_one_document_per_example(tmp_path: Path, caplog) -> None:
    examples = [format_qa_document(*e) for e in EXAMPLES]
    path = write(tmp_path / "samples.txt", "\n\n".join(examples) + "\n\n")
    with caplog.at_level(logging.INFO, logger="jobgpt.corpus"):
        docs = list(iter_documents([str(path)]))
    assert [d.text for d in docs] == examples
    assert docs[0].source == f"{path}:1"
    assert docs[1].source == f"{path}:{examples[0].count(chr(10)) + 3}"
    assert "QA examples" in caplog.text


def test_qa_text_file_keeps_crlf_and_reports_stray_text(tmp_path: Path, caplog) -> None:
    examples = [format_qa_document(*e).replace("\n", "\r\n") for e in EXAMPLES]
    body = examples[0] + "\r\n\r\n<|endoftext|>\r\n" + examples[1] + "\r\n잡음\r\n" + examples[2]
    path = write(tmp_path / "crlf.txt", body + "\r\n[QUESTION]\r\n끝나지 않은 예제")
    with caplog.at_level(logging.INFO, logger="jobgpt.corpus"):
        assert texts(path) == examples
    assert "ignored" in caplog.text  # the stray "잡음" and the unfinished example are reported


def test_text_file_split_at_endoftext_lines(tmp_path: Path, caplog) -> None:
    body = (
        "첫 문서\n\n\n같은 문서 (빈 줄은 나누지 않음)\n<|endoftext|>\n둘째\n  <|endoftext|>  \n\n"
    )
    path = write(tmp_path / "eot.txt", body)
    with caplog.at_level(logging.INFO, logger="jobgpt.corpus"):
        assert texts(path) == ["첫 문서\n\n\n같은 문서 (빈 줄은 나누지 않음)", "둘째"]
    assert "<|endoftext|>" in caplog.text


def test_text_file_split_at_runs_of_blank_lines(tmp_path: Path, caplog) -> None:
    body = (
        "\n\n=== 공고 1 ===\r\n회사명: 한빛\r\n\r\n업무 내용:\r\nㆍ개발\r\n"
        "\n \n\t\n"
        "    들여쓴 공고 2\n\n\n\n"
        "공고 3: ｆｕｌｌ ｗｉｄｔｈ, 가\u0301\n"
    )
    path = write(tmp_path / "raw.md", body)
    with caplog.at_level(logging.INFO, logger="jobgpt.corpus"):
        docs = texts(path)
    assert docs == [
        "=== 공고 1 ===\r\n회사명: 한빛\r\n\r\n업무 내용:\r\nㆍ개발",  # one blank line stays inside
        "    들여쓴 공고 2",
        "공고 3: ｆｕｌｌ ｗｉｄｔｈ, 가\u0301",  # no NFKC/NFC: text is lossless
    ]
    assert "blank lines" in caplog.text


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    assert texts(write(tmp_path / "bom.txt", b"\xef\xbb\xbf\xed\x95\x9c\xea\xb8\x80\n")) == ["한글"]


def test_unknown_extension_that_is_text_is_read_as_text(tmp_path: Path) -> None:
    assert texts(write(tmp_path / "postings.log", "공고 A\n\n\n공고 B\n")) == ["공고 A", "공고 B"]


@pytest.mark.parametrize("chunk", [1, 2, 5, 64])
def test_block_boundaries_do_not_change_documents_or_error_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Files are decoded in blocks; tiny blocks must give the same lines, documents and errors."""
    examples = [format_qa_document(*e) for e in EXAMPLES]
    qa = write(tmp_path / "qa.txt", "\ufeff" + "\r\n\r\n".join(examples) + "\r\n")
    raw = write(tmp_path / "raw.txt", "가나다\n\n\n라마 ㆍ바\n사 \r\n \n\t\n\n  아")
    eot = write(tmp_path / "eot.txt", "가\n\n\n나\n<|endoftext|>\n<|endoftext|>\n\n다 \n")
    bad = write(tmp_path / "bad.txt", b"ok line\n\xea\xb0\x80 \xff tail\n")
    expected = [list(iter_documents([str(p)])) for p in (qa, raw, eot)]
    monkeypatch.setattr("jobgpt.textfile._CHUNK", chunk)
    assert [list(iter_documents([str(p)])) for p in (qa, raw, eot)] == expected
    assert [d.text for d in expected[1]] == ["가나다", "라마 ㆍ바\n사", "  아"]
    assert [d.source for d in expected[1]] == [f"{raw}:1", f"{raw}:4", f"{raw}:9"]
    assert [d.text for d in expected[2]] == ["가\n\n\n나", "다"]
    assert [d.source for d in expected[2]] == [f"{eot}:1", f"{eot}:8"]
    assert "byte offset 12 (line 2)" in error_for(bad).message


# --- structured records -----------------------------------------------------------------------

WANTED_RECORD = {
    "ID": 1,
    "COMPANY": "메디인테크",
    "TITLE": "생산기술 담당자",
    "GROUP_INTRO": "의료용 내시경 시스템을 개발하는 스타트업입니다.\n\n[채용 형태]\n정규직",
    "MAINDUTIES": "• 부품 관리\n• 생산 일정 관리",
    "QUALIFICATION": "ㆍ학력 무관",
    "PREFERENTIAL": None,
    "BENEFITS": "• 건강검진",
    "WORKING_AREA": " 서울특별시 종로구 대학로 60  ",
    "RECRUIT_DEADLINE": None,
    "JOB_GROUP": "522",
    "JOB_POSTING_URL": "https://www.wanted.co.kr/wd/1",
}

BOARD_RECORD = {
    "id": 6260,
    "title": "[Michael Page] Event Director 채용",
    "content": "## 담당 업무\\n- 이벤트 기획\\n- 예산 관리",  # newlines escaped twice, as crawled
    "view_count": 5,
    "meta": {
        "company_name": "Michael Page Client",
        "position": "Event Director",
        "location": "Singapore",
        "salary": "Negotiable",
        "salary_currency": "SGD",
        "deadline": "2026-02-28",
        "responsibilities": "이벤트 기획 및 실행",
        "requirements": "경력 10년 이상",
        "skills": "Event Management, Budget Management",
        "contact_phone": "000",
        "application_email": "N/A",
        "application_url": "https://example.com/job/1",
    },
}


def test_render_upper_case_schema() -> None:
    text = render_posting(WANTED_RECORD)
    assert text.startswith("=== [메디인테크] 생산기술 담당자 ===\n\n회사명: 메디인테크\n")
    assert "위치: 서울특별시 종로구 대학로 60\n" in text  # only surrounding whitespace stripped
    assert "업무 내용:\n• 부품 관리\n• 생산 일정 관리" in text
    assert "자격 요건:\nㆍ학력 무관" in text
    assert "회사 소개:\n의료용 내시경 시스템을 개발하는 스타트업입니다.\n\n[채용 형태]" in text
    assert "WEB: https://www.wanted.co.kr/wd/1" in text
    assert "None" not in text and "마감일" not in text and "우대 사항" not in text


def test_render_board_schema_with_meta() -> None:
    text = render_posting(BOARD_RECORD)
    assert text.startswith("=== [Michael Page] Event Director 채용 ===\n\n회사명: Michael Page")
    assert "급여: Negotiable (SGD)" in text
    assert "마감일: 2026-02-28" in text
    assert "상세 내용:\n## 담당 업무\n- 이벤트 기획\n- 예산 관리" in text
    assert "필요 기술: Event Management, Budget Management" in text
    assert "000" not in text and "N/A" not in text and "view_count" not in text


def test_render_accepts_any_key_case_and_skips_unusable_records() -> None:
    lower = {k.lower(): v for k, v in WANTED_RECORD.items()}
    assert render_posting(lower) == render_posting(WANTED_RECORD)
    assert render_posting({"id": 3, "COMPANY": "회사만", "JOB_GROUP": "511"}) == ""
    assert record_text({"text": "  본문\n둘째 줄  ", "TITLE": "무시"}) == "본문\n둘째 줄"


def test_jsonl_with_text_field(tmp_path: Path, caplog) -> None:
    lines = [
        json.dumps({"text": "  첫 공고\n  둘째 줄 ㆍ  "}, ensure_ascii=False),
        "",
        json.dumps("문자열 한 줄도 문서", ensure_ascii=False),
        json.dumps({"id": 7, "views": 3}),  # no usable field: skipped and counted
        json.dumps({"text": "셋째\r\n공고"}, ensure_ascii=False),
    ]
    path = write(tmp_path / "a.jsonl", "\n".join(lines) + "\n")
    with caplog.at_level(logging.INFO, logger="jobgpt.corpus"):
        docs = list(iter_documents([str(path)]))
    assert [d.text for d in docs] == [
        "첫 공고\n  둘째 줄 ㆍ",
        "문자열 한 줄도 문서",
        "셋째\r\n공고",
    ]
    assert [d.source for d in docs] == [f"{path}:1", f"{path}:3", f"{path}:5"]
    assert "skipped 1 records" in caplog.text and f"{path}:4" in caplog.text


def test_jsonl_with_upper_case_schema(tmp_path: Path) -> None:
    other = dict(WANTED_RECORD, COMPANY="오케스트로", TITLE="Cloud Solution Tech Sales")
    rows = [json.dumps(r, ensure_ascii=False) for r in (WANTED_RECORD, other)]
    path = write(tmp_path / "postings.jsonl", "\n".join(rows))
    assert texts(path) == [render_posting(WANTED_RECORD), render_posting(other)]


def test_json_array_in_board_style(tmp_path: Path) -> None:
    second = dict(BOARD_RECORD, title="[Randstad] Store Manager 채용")
    path = write(tmp_path / "jobs.json", json.dumps([BOARD_RECORD, second], ensure_ascii=False))
    docs = list(iter_documents([str(path)]))
    assert [d.text for d in docs] == [render_posting(BOARD_RECORD), render_posting(second)]
    assert docs[1].source == f"{path}[1]"


def test_json_object_holding_a_list_or_one_posting(tmp_path: Path) -> None:
    holder = {"count": 2, "postings": [WANTED_RECORD, {"text": "본문"}]}
    path = write(tmp_path / "holder.json", json.dumps(holder, ensure_ascii=False))
    assert texts(path) == [render_posting(WANTED_RECORD), "본문"]
    single = write(tmp_path / "one.json", json.dumps(WANTED_RECORD, ensure_ascii=False))
    assert texts(single) == [render_posting(WANTED_RECORD)]


def test_csv_with_text_column_and_with_posting_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'id,text\n1,"여러 줄,\n쉼표 포함 ㆍ"\n2,둘째\n3,\n')
    assert texts(path) == ["여러 줄,\n쉼표 포함 ㆍ", "둘째"]
    posting = write(
        tmp_path / "b.csv",
        '\ufeffCOMPANY,TITLE,MAINDUTIES\n한빛소프트,백엔드 개발자,"• API 개발\n• 운영"\n',
    )
    (doc,) = texts(posting)
    assert doc.startswith("=== [한빛소프트] 백엔드 개발자 ===")
    assert "업무 내용:\n• API 개발\n• 운영" in doc


def test_iter_documents_returns_named_documents(tmp_path: Path) -> None:
    path = write(tmp_path / "a.md", "A\n")
    doc = next(iter_documents([str(path)]))
    assert isinstance(doc, Document) and doc == Document("A", f"{path}:1")


# --- bad inputs: each an InputError naming the file, the place and the fix ----------------------


def test_empty_file_and_whitespace_only_file(tmp_path: Path) -> None:
    assert "empty.txt" in error_for(write(tmp_path / "empty.txt", "")).message
    err = error_for(write(tmp_path / "blank.txt", "\n  \n<|endoftext|>\n"))
    assert "blank.txt" in err.message and "no document" in err.message


def test_invalid_utf8_names_the_byte_offset_and_line(tmp_path: Path) -> None:
    err = error_for(write(tmp_path / "bad.txt", b"ok line\n\xea\xb0\x80 \xff tail\n"))
    assert "bad.txt" in err.message and "byte offset 12" in err.message
    assert "line 2" in err.message


def test_cp949_file_gets_a_conversion_hint(tmp_path: Path) -> None:
    err = error_for(write(tmp_path / "euckr.txt", "채용 공고\n".encode("cp949")))
    assert "euckr.txt" in err.message and "CP949" in err.message and "iconv" in err.hint


def test_the_iconv_hint_uses_the_path_as_given(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "bad" / "badutf8.txt", "채용 공고\n".encode("cp949"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    err = error_for("../bad/badutf8.txt")
    # Pasted into the same shell, the command finds the file and writes the copy beside it.
    assert "`iconv -f cp949 -t utf-8 ../bad/badutf8.txt > ../bad/badutf8.utf8.txt`" in err.hint


def test_invalid_utf8_in_json_names_the_offset(tmp_path: Path) -> None:
    err = error_for(write(tmp_path / "bad.json", b'[\n {"text": "\xc3("}\n]'))
    assert "bad.json" in err.message and "byte offset 13" in err.message and "line 2" in err.message


def test_binary_file(tmp_path: Path) -> None:
    err = error_for(write(tmp_path / "data.txt", b"abc\x00def"))
    assert "data.txt" in err.message and "binary" in err.message and "offset 3" in err.message


def test_utf16_file(tmp_path: Path) -> None:
    err = error_for(write(tmp_path / "u16.txt", "채용".encode("utf-16")))
    assert "u16.txt" in err.message and "UTF-16" in err.message


def test_unknown_extension_that_is_not_text(tmp_path: Path) -> None:
    err = error_for(write(tmp_path / "train.bin", b"\x01\x02\x00\x00"))
    assert "train.bin" in err.message and "unknown format" in err.message


def test_malformed_json_line_names_the_line(tmp_path: Path) -> None:
    err = error_for(write(tmp_path / "x.jsonl", '{"text": "a"}\n\n{"text": "b",}\n'))
    assert "x.jsonl line 3" in err.message


def test_malformed_json_file_names_the_line(tmp_path: Path) -> None:
    err = error_for(write(tmp_path / "x.json", '[\n  {"text": "a"},\n  oops\n]'))
    assert "x.json" in err.message and "line 3" in err.message


def test_records_without_any_usable_field(tmp_path: Path) -> None:
    err = error_for(write(tmp_path / "ids.jsonl", '{"id": 1, "views": 3}\n{"id": 2}\n'))
    assert "ids.jsonl" in err.message and "all 2" in err.message and "id, views" in err.message
    # The hint lists the keys that count and points at the README, not into the code.
    assert "'text'" in err.hint and "README.md" in err.hint and "render_posting" not in err.hint
    for key in ("title", "duties", "requirements", "mainduties", "qualification", "'meta'"):
        assert key in err.hint


def test_json_without_records(tmp_path: Path) -> None:
    assert "n.json" in error_for(write(tmp_path / "n.json", "42")).message


def test_a_jsonl_line_that_is_not_an_object_is_named_as_such(tmp_path: Path) -> None:
    rows = [json.dumps({"text": "a"}), json.dumps({"text": "b"}), json.dumps([{"text": "c"}])]
    err = error_for(write(tmp_path / "x.jsonl", "\n".join(rows) + "\n"))
    assert "x.jsonl line 3 holds a JSON array, not an object" in err.message
    assert "keys" not in err.message and "one JSON object per line" in err.message
    assert f"`mv {tmp_path / 'x.jsonl'} {tmp_path / 'x.json'}`" in err.hint
    err = error_for(write(tmp_path / "n.jsonl", '{"text": "a"}\n42\n'))
    assert "n.jsonl line 2 holds a JSON number, not an object" in err.message
    # A whole file that is one JSON array: the hint says to rename it, and that works.
    whole = write(tmp_path / "all.jsonl", json.dumps([{"text": "a"}, {"text": "b"}]))
    err = error_for(whole)
    assert "line 1 holds a JSON array" in err.message and f"{tmp_path / 'all.json'}`" in err.hint
    assert texts(whole.rename(tmp_path / "all.json")) == ["a", "b"]


def test_json_array_elements_that_are_not_objects_are_named_as_such(tmp_path: Path) -> None:
    err = error_for(write(tmp_path / "rows.json", "[[1, 2], [3]]"))
    assert "rows.json[0] is a JSON array, not an object" in err.message
    assert "keys" not in err.message and "JSON object" in err.hint


# --- the real corpora (beside the repo; skipped on a fresh clone) ------------------------------


def real(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def test_real_wanted_postings() -> None:
    docs = texts(real("wanted/postings.jsonl"))
    assert len(docs) == 3251
    # NFKC would turn the bullet into "·"; the data's README counts 3,729 of them
    assert sum(d.count("ㆍ") for d in docs) == 3729
    assert all(d.startswith("=== ") and "회사명: " in d for d in docs)


def test_real_samples_in_qa_format() -> None:
    docs = texts(real("jai/samples.txt"))
    assert len(docs) == 124
    assert all(d.startswith("[QUESTION]") and d.endswith("[/ANSWER]") for d in docs)
    assert all(parse_qa_document(d).doc for d in docs)


def test_real_board_posts_json() -> None:
    docs = texts(real("jai/jobs-sg.json"))
    assert len(docs) == 124
    assert all(d.startswith("=== ") and "포지션: " in d for d in docs)


# --- long documents: bounded memory -------------------------------------------------------------


def test_a_document_longer_than_the_limit_is_cut_at_line_breaks(tmp_path: Path, caplog) -> None:
    lines = [f"{i}번째 줄: 서울 백엔드 개발자 채용 공고 내용입니다." for i in range(20_000)]
    path = tmp_path / "no_separators.txt"
    path.write_text("\n".join(lines), encoding="utf-8")  # ~1 MB, one "document"
    with caplog.at_level(logging.INFO, logger="jobgpt.corpus"):
        docs = [d.text for d in iter_documents([str(path)])]
    assert len(docs) > 1 and all(len(d) <= MAX_DOCUMENT_CHARS for d in docs)
    assert "\n".join(docs).splitlines() == lines  # cut only between lines: nothing lost
    assert "1 documents longer than 100,000 characters were cut" in caplog.text


def test_a_50mb_style_one_line_file_trains_a_tokenizer_in_bounded_memory(tmp_path: Path) -> None:
    """One 12 MB line (no line breaks, no separators) took 1.05 GB of RSS in the tokenizer stage
    before long documents were cut (4.3 GB at 50 MB); now ~230 MB. Measured in a child process
    (resource's peak RSS of children), so this test's own memory does not count."""
    path = tmp_path / "one_line.txt"
    words = ["서울", "채용", "개발자", "React", "경력", "우대", "연봉", "판교", "Python"]
    path.write_text(" ".join(words[i % 9] + str(i % 7) for i in range(1_600_000)), "utf-8")
    assert path.stat().st_size > 12_000_000
    run = [sys.executable, "-m", "jobgpt", "tokenizer", "--input", str(path)]
    run += ["--vocab-size", "400", "--out", str(tmp_path / "tok.json")]
    measure = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    peak_kb = int(subprocess.run([sys.executable, "-c", measure, *run], capture_output=True,
                                 text=True, check=True).stdout)  # fmt: skip
    assert peak_kb < 600_000, f"peak RSS {peak_kb / 1000:.0f} MB"


def test_many_input_files_log_a_few_lines_and_a_summary(tmp_path: Path, caplog) -> None:
    for i in range(30):
        (tmp_path / f"posting_{i:02}.txt").write_text(f"{i}번 공고: 서울 개발자 채용", "utf-8")
    with caplog.at_level(logging.INFO, logger="jobgpt.corpus"):
        docs = list(iter_documents([str(tmp_path)]))
    assert len(docs) == 30
    lines = [r.getMessage() for r in caplog.records if r.name == "jobgpt.corpus"]
    assert len(lines) == 11  # 10 files named, then one summary
    assert lines[-1].startswith("read 30 documents from 30 file(s)") and "first 10" in lines[-1]
