"""The built-in demo corpus: deterministic, varied, in the training format, answers from the doc."""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobgpt import demo_postings
from jobgpt.cli import main
from jobgpt.config import DEFAULT_CORPUS, DemoDataConfig
from jobgpt.corpus import iter_documents
from jobgpt.demo_corpus import (
    ensure_default_corpus,
    generate_demo_corpus,
    write_demo_corpus,
)
from jobgpt.demo_postings import roles
from jobgpt.qa import parse_qa_document


@pytest.fixture(scope="module")
def default_corpus() -> list[str]:
    """The corpus `ensure_default_corpus` writes (default n and seed), generated once."""
    cfg = DemoDataConfig()
    return list(generate_demo_corpus(cfg.n, cfg.seed))


def test_same_seed_same_text_other_seed_other_text() -> None:
    first = list(generate_demo_corpus(40, seed=7))
    assert first == list(generate_demo_corpus(40, seed=7))
    assert first[:10] == list(generate_demo_corpus(10, seed=7))  # a smaller n is a prefix
    other = list(generate_demo_corpus(40, seed=8))
    assert not set(first) & set(other)


# sha256 of the corpus bytes (each example + "\n\n", as `write_demo_corpus` writes them), recorded
# from the code BEFORE the tables moved out of demo_corpus.py into jobgpt/data/demo_corpus.toml:
# the move had to be invisible. (1, 1338) is the held-out example `jobgpt demo` shows (seed + 1).
# A mismatch means the data file or the order of the draws changed. If that was intended, record
# the new digests with the expression in `_digest` and say so in the commit: every demo corpus
# written before and after will differ.
CORPUS_SHA256 = {
    (3000, 1337): "d2fd5b12c0dc4630fa61ea454973a6a24bae40501b04db7e4296723dd7048fd1",
    (200, 7): "a1621f4aaefb2cc716fa3a464399f8784cda282621323c17352280b0607808d8",
    (1, 1338): "04eb1f825045563470c96d47a179013a1018e5e107da48088733a80e69c3d703",
}


def _digest(n: int, seed: int) -> str:
    text = "".join(t + "\n\n" for t in generate_demo_corpus(n, seed))
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(("n", "seed"), list(CORPUS_SHA256))
def test_same_seed_gives_the_same_bytes_as_before_the_tables_moved(n: int, seed: int) -> None:
    assert _digest(n, seed) == CORPUS_SHA256[n, seed]


def test_written_file_has_the_recorded_bytes(tmp_path: Path) -> None:
    path = write_demo_corpus(tmp_path / "demo.txt", n=200, seed=7)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CORPUS_SHA256[200, 7]


def test_import_does_not_read_the_data_file() -> None:
    """The tables are parsed on first use: commands that never draw a posting don't pay for it."""
    # The commands import demo_corpus; the tables' cache lives in demo_postings, which it imports.
    code = (
        "import jobgpt.demo_corpus, jobgpt.demo_postings as d; "
        "print(d._tables.cache_info().currsize)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_data_file_is_not_ignored_by_git() -> None:
    """An ignored file is left out of commits and of the wheel (hatchling honours .gitignore)."""
    path = Path(demo_postings.__file__).parent / "data" / demo_postings._DATA_FILE
    assert path.is_file()
    try:
        result = subprocess.run(
            # --no-index: the rules alone decide, as for hatchling (force-adding would not help)
            ["git", "check-ignore", "--no-index", "-v", str(path)],
            cwd=path.parent,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if result.returncode == 128:
        pytest.skip("not in a git checkout")
    assert result.returncode == 1, (
        f"git ignores the packaged data file ({result.stdout.strip()}): "
        "anchor that rule to the repository root (e.g. /data/) or un-ignore src/jobgpt/data/"
    )


def test_default_size_is_fast_and_has_no_duplicates(default_corpus: list[str]) -> None:
    start = time.perf_counter()
    list(generate_demo_corpus(3000, seed=1))
    assert time.perf_counter() - start < 5.0  # ~0.6 s on one slow core; keep the first run snappy
    assert len(default_corpus) == DemoDataConfig().n == 3000
    assert len(set(default_corpus)) == len(default_corpus)
    docs = [parse_qa_document(t).doc for t in default_corpus]
    assert len(set(docs)) > 0.99 * len(docs)  # postings themselves vary, not just the questions


def test_every_example_is_in_the_training_format(default_corpus: list[str]) -> None:
    for text in default_corpus[:300]:
        question, doc, answer = parse_qa_document(text)
        assert question and doc.startswith("=== ") and answer
        assert text.startswith("[QUESTION]\n") and text.endswith("\n[/ANSWER]")


def test_answers_copy_their_facts_from_the_document(default_corpus: list[str]) -> None:
    """A field the answer states (회사, 급여, 마감일, EMAIL...) is written in the doc verbatim."""
    checked = 0
    for text in default_corpus:
        _, doc, answer = parse_qa_document(text)
        for value in re.findall(
            r"^- (?:회사|포지션|위치|고용형태|급여|마감일|근무시간|담당자|TEL|EMAIL|WEB): (.+)$",
            answer,
            flags=re.M,
        ):
            assert value in doc, (value, text)
            checked += 1
        for heading in ("지원 자격:\n", "우대 사항:\n", "복리후생:\n"):
            if heading in answer:
                section = answer.split(heading)[1].split("\n\n")[0]
                for item in re.findall(r"^- (.+)$", section, flags=re.M):
                    assert item in doc, (item, text)
                    checked += 1
    assert checked > 3000


def test_variety_of_roles_places_pay_and_deadlines(default_corpus: list[str]) -> None:
    corpus = "\n".join(default_corpus)
    for role in roles():
        assert role.industry in corpus and any(p in corpus for p in role.positions)
    for word in ("개발", "디자인", "마케팅", "영업", "회계", "간호", "물류", "생산", "교육"):
        assert word in corpus
    for place in ("서울 강남구", "판교", "부산 해운대구", "대전", "제주"):
        assert place in corpus
    for pay in ("연봉 ", "만원~", "월 ", "면접 후 결정"):
        assert pay in corpus
    for term in ("React", "Python", "AWS", "Kubernetes", "상시채용", "정규직", "계약직", "ㆍ"):
        assert term in corpus
    assert re.search(r"마감일: 20\d\d-\d\d-\d\d", corpus)
    assert re.search(r"EMAIL: \w+@[\w.]+\.(co\.kr|com|kr)\n", corpus)
    assert re.search(r"WEB: https://", corpus)
    questions = {parse_qa_document(t).question for t in default_corpus}
    assert len(questions) >= 20


def test_written_corpus_reads_back_through_the_corpus_reader(tmp_path: Path) -> None:
    path = write_demo_corpus(tmp_path / "data" / "demo.txt", n=25, seed=3)
    assert [d.text for d in iter_documents([str(path)])] == list(generate_demo_corpus(25, 3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["demo.txt"]  # no temp file left


def test_ensure_default_corpus_writes_only_the_missing_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog, default_corpus: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    ensure_default_corpus(["elsewhere.txt"])  # a user's own (missing) path is never filled in
    assert not Path(DEFAULT_CORPUS).exists()
    with caplog.at_level(logging.INFO):
        ensure_default_corpus([DEFAULT_CORPUS])
    assert len(caplog.records) == 1 and DEFAULT_CORPUS in caplog.text
    assert [d.text for d in iter_documents([DEFAULT_CORPUS])] == default_corpus

    Path(DEFAULT_CORPUS).write_text("내 말뭉치\n", encoding="utf-8")
    ensure_default_corpus([f"./{DEFAULT_CORPUS}"])  # an existing file is never overwritten
    assert Path(DEFAULT_CORPUS).read_text(encoding="utf-8") == "내 말뭉치\n"


def test_demo_data_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.txt"
    assert main(["demo-data", "--out", str(out), "--n", "12", "--seed", "5"]) == 0
    assert out.read_text(encoding="utf-8") == "".join(
        t + "\n\n" for t in generate_demo_corpus(12, 5)
    )
    assert "12" in capsys.readouterr().out

    assert main(["demo-data", "--out", str(out), "--n", "3"]) == 1  # refuses to overwrite
    assert (
        "already exists" in capsys.readouterr().err and len(list(iter_documents([str(out)]))) == 12
    )
    assert main(["demo-data", "--out", str(out), "--n", "3", "--overwrite"]) == 0
    assert len(list(iter_documents([str(out)]))) == 3
    assert main(["demo-data", "--out", str(out), "--n", "0", "--overwrite"]) == 1
